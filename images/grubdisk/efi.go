package grubdisk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// EFIBoot says what the EFI system partition boots.
type EFIBoot int

const (
	// EFIGrub: \EFI\BOOT\BOOTX64.EFI is GRUB built by grub-mkimage
	// (unsigned), for firmware without Secure Boot.
	EFIGrub EFIBoot = iota
	// EFIShim: the Secure Boot chain as Debian installs it:
	// BOOTX64.EFI is shim signed by Microsoft, which loads grubx64.efi
	// beside it, GRUB signed by Debian, which verifies the (signed) kernel
	// through shim.
	EFIShim
	// EFIUnsigned: EFIShim's partition whose BOOTX64.EFI is EFIGrub's
	// unsigned GRUB: firmware with Secure Boot must refuse to start it.
	EFIUnsigned
)

func (b EFIBoot) String() string {
	switch b {
	case EFIGrub:
		return "grub"
	case EFIShim:
		return "shim"
	case EFIUnsigned:
		return "unsigned"
	}
	return fmt.Sprintf("EFIBoot(%d)", int(b))
}

// Paths on the EFI system partition. The removable-media path is what
// firmware boots with no boot entries (UEFI 2.10, 3.5.1.1). Debian's signed
// GRUB is built with prefix /EFI/debian and reads $prefix/grub.cfg; the
// unsigned one is built with the same prefix, so one grub.cfg serves both.
const (
	EFIBootPath    = "/EFI/BOOT/BOOTX64.EFI"
	EFIShimGrub    = "/EFI/BOOT/grubx64.efi"
	EFIPrefix      = "/EFI/debian"
	EFIGrubCfgPath = EFIPrefix + "/grub.cfg"
)

// EFIModules are linked into the unsigned GRUB: GPT and FAT, the Linux
// loader, the serial terminal and what grub.cfg uses. Debian's signed GRUB
// is monolithic and has all of these.
func EFIModules() []string {
	return []string{"part_gpt", "fat", "linux", "normal", "serial", "terminal", "configfile", "echo", "test"}
}

// EFIGrubConfig is the grub.cfg of the EFI disk: EarlyConfig first, since
// Debian's signed GRUB has its own embedded configuration and starts on
// the firmware's console, then GrubConfig.
func EFIGrubConfig(cmdline string) ([]byte, error) {
	cfg, err := GrubConfig(cmdline)
	if err != nil {
		return nil, err
	}
	return append(EarlyConfig(), cfg...), nil
}

// Fixed GUIDs and a fixed volume ID (go-diskfs' reproducible FAT) so equal
// inputs give equal disks.
const (
	efiDiskGUID = "766D6D00-4546-4944-4953-4B0000000001"
	efiPartGUID = "766D6D00-4546-4944-4953-4B0000000002"
	efiLabel    = "VMMESP"
	mib         = 1 << 20
	// efiMinFAT32 keeps the partition FAT32: go-diskfs uses 512-byte
	// clusters up to 260 MiB, and FAT32 needs at least 65525 clusters.
	efiMinFAT32 = 64 * mib
	// efiMaxSize keeps go-diskfs at one sector a cluster (fat32Size).
	efiMaxSize = 260 * mib
)

// fat32Size returns size, or slightly less, so that go-diskfs v1.9.4's
// FAT32 layout is valid: it sizes each FAT as ceil(4*(sectors-32)/520)
// sectors at one sector a cluster, forgetting the FAT's two reserved
// entries, which leaves the FAT two entries short of the clusters when
// sectors-32 is 0 or 129 modulo 130 (mtools then refuses the filesystem).
func fat32Size(size int64) int64 {
	sectors := size / SectorSize
	for r := (sectors - 32) % 130; r == 0 || r == 129; r = (sectors - 32) % 130 {
		sectors--
	}
	return sectors * SectorSize
}

// BuildEFI writes a raw GPT disk to out with one EFI system partition
// (FAT32) that UEFI firmware boots from its removable-media path through
// GRUB (boot says which chain) into s's kernel, with /boot/vmlinuz,
// /boot/initrd.img and EFIGrubCfgPath as the BIOS disk has them.
func BuildEFI(ctx context.Context, t Tools, s Spec, boot EFIBoot, out string) error {
	grubCfg, err := EFIGrubConfig(s.Cmdline)
	if err != nil {
		return err
	}
	srcs := map[string]string{"/boot/vmlinuz": s.Kernel, "/boot/initrd.img": s.Initrd}
	if boot == EFIShim || boot == EFIUnsigned {
		srcs[EFIShimGrub] = t.SignedGrub
	}
	switch boot {
	case EFIShim:
		srcs[EFIBootPath] = t.Shim
	case EFIGrub, EFIUnsigned:
		work, err := os.MkdirTemp(filepath.Dir(out), ".grubefi-")
		if err != nil {
			return fmt.Errorf("grubdisk: %w", err)
		}
		defer os.RemoveAll(work)
		grub, err := coreImage(ctx, t, t.EFIModDir, work, "x86_64-efi", EFIPrefix, EFIModules())
		if err != nil {
			return err
		}
		srcs[EFIBootPath] = grub
	default:
		return fmt.Errorf("grubdisk: unknown EFI boot %d", int(boot))
	}
	files, err := readFiles(srcs)
	if err != nil {
		return err
	}
	files[EFIGrubCfgPath] = grubCfg
	return writeESPDisk(out, files)
}

// writeESPDisk writes a GPT disk holding files on one FAT32 EFI system
// partition from 1 MiB, sized for them.
func writeESPDisk(out string, files map[string][]byte) error {
	var total int64
	for _, b := range files {
		total += int64(len(b))
	}
	size := max((total+total/4+8*mib+mib-1)/mib*mib, efiMinFAT32)
	if size > efiMaxSize {
		return fmt.Errorf("grubdisk: %d bytes of files do not fit a %d MiB EFI system partition", total, efiMaxSize/mib)
	}
	size = fat32Size(size)
	// The backup GPT takes the last 33 sectors; 1 MiB leaves room.
	diskSize := PartitionStart*SectorSize + size + mib
	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("grubdisk: %w", err)
	}
	err = f.Truncate(diskSize)
	if err == nil {
		err = fillESPDisk(file.New(f, false), diskSize, size, files)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("grubdisk: %s: %w", out, err)
	}
	return nil
}

// fillESPDisk writes the GPT to b, diskSize bytes long, and files to its FAT32
// partition of size bytes.
func fillESPDisk(b backend.Storage, diskSize, size int64, files map[string][]byte) error {
	w, err := b.Writable()
	if err != nil {
		return err
	}
	table := &gpt.Table{
		LogicalSectorSize:  SectorSize,
		PhysicalSectorSize: SectorSize,
		ProtectiveMBR:      true,
		GUID:               efiDiskGUID,
		Partitions: []*gpt.Partition{{
			Index: 1, Start: PartitionStart, End: PartitionStart + uint64(size)/SectorSize - 1, Type: gpt.EFISystemPartition,
			Name: "EFI system partition", GUID: efiPartGUID,
		}},
	}
	if err := table.Write(w, diskSize); err != nil {
		return fmt.Errorf("partition: %w", err)
	}
	fsys, err := fat32.Create(b, size, PartitionStart*SectorSize, SectorSize, efiLabel, true)
	if err != nil {
		return fmt.Errorf("FAT32: %w", err)
	}
	return writeFiles(fsys, files)
}

// BuildEFIApp writes a GPT disk to out whose EFI system partition holds
// only app, a UEFI application (Debian's iPXE), at the removable-media
// path: firmware starts it with no boot entries.
func BuildEFIApp(app, out string) error {
	files, err := readFiles(map[string]string{EFIBootPath: app})
	if err != nil {
		return err
	}
	return writeESPDisk(out, files)
}
