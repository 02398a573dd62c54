// Package debdisk lays out an installed Debian root tree as a raw GPT disk
// that both a legacy BIOS and UEFI firmware boot, the way a distribution's
// cloud image is laid out, without root's loop devices or mounts:
//
//	partition 1  BIOS boot   GRUB's i386-pc core.img (boot.img in the MBR points at it)
//	partition 2  ESP, FAT32  \EFI\BOOT\BOOTX64.EFI, GRUB for x86_64-efi (go-diskfs)
//	partition 3  ext4 root   the tree, made with `mke2fs -d`, with /boot/grub/grub.cfg
//
// Both GRUBs are built by grub-mkimage with the same early configuration
// (serial console) and the prefix (,gpt3)/boot/grub, so one grub.cfg on the
// root filesystem serves both firmwares.
package debdisk

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/vmmdev/vmm/images/grubdisk"
)

const (
	sectorSize = grubdisk.SectorSize
	mib        = 1 << 20

	// BIOSBootStart is the BIOS boot partition's first LBA (1 MiB, 1 MiB long).
	BIOSBootStart = 2048
	biosBootEnd   = 2*2048 - 1
	// ESPStart is the EFI system partition's first LBA.
	ESPStart = 2 * 2048
	// espSectors is 64 MiB less 31 sectors: FAT32 needs 65525 clusters
	// (go-diskfs uses one sector a cluster below 260 MiB), and go-diskfs
	// v1.9.4 miscounts its FAT when sectors-32 is 0 or 129 modulo 130.
	espSectors = 64*2048 - 31
	// RootStart is the root partition's first LBA: the MiB after the ESP.
	RootStart = (ESPStart + espSectors + 2047) / 2048 * 2048

	// Fixed identifiers: the kernel command line names the root filesystem
	// by UUID, and equal inputs give equal partition tables.
	DiskGUID     = "766D6D00-4445-4249-414E-000000000000"
	BIOSBootGUID = "766D6D00-4445-4249-414E-000000000001"
	ESPGUID      = "766D6D00-4445-4249-414E-000000000002"
	RootGUID     = "766D6D00-4445-4249-414E-000000000003"
	RootUUID     = "766d6d00-6465-6269-616e-726f6f740000"
	RootLabel    = "debian-root"
	espLabel     = "ESP"

	// signature is the MBR disk signature.
	signature = 0x6e626564 // "debn" on disk

	// Prefix is where both GRUBs find grub.cfg: the boot disk's third
	// partition. GrubCfgPath is that file in the root tree.
	Prefix      = "(,gpt3)/boot/grub"
	GrubCfgPath = "boot/grub/grub.cfg"
	// EFIBootPath is the removable-media path UEFI firmware boots with no
	// boot entries (UEFI 2.10, 3.5.1.1).
	EFIBootPath = "/EFI/BOOT/BOOTX64.EFI"
)

// BIOSModules and EFIModules are linked into the two core images: disk,
// GPT and ext4 access, the Linux loader, the serial terminal and what
// grub.cfg uses (grub-mkimage adds dependencies).
func BIOSModules() []string {
	return []string{"biosdisk", "part_gpt", "ext2", "linux", "normal", "serial", "terminal", "configfile", "echo", "test"}
}

// EFIModules: see BIOSModules.
func EFIModules() []string {
	return []string{"part_gpt", "ext2", "fat", "linux", "normal", "serial", "terminal", "configfile", "echo", "test"}
}

// Cmdline is the kernel command line grub.cfg passes: the root filesystem
// by UUID, read-only until systemd remounts it from fstab, and the console
// on the first serial port, where systemd also starts a getty.
func Cmdline() string { return "root=UUID=" + RootUUID + " ro console=ttyS0" }

// Fstab is the root tree's /etc/fstab.
func Fstab() string {
	return "UUID=" + RootUUID + " / ext4 errors=remount-ro 0 1\n"
}

// GrubConfig returns grub.cfg: grubdisk's markers, then one entry run at
// once that boots kernel and initrd (paths on the root filesystem) with
// Cmdline.
func GrubConfig(kernel, initrd string) ([]byte, error) {
	for _, p := range []string{kernel, initrd} {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "' \n\r\x00") {
			return nil, fmt.Errorf("debdisk: bad boot file path %q", p)
		}
	}
	return []byte("set timeout=0\nset default=0\necho '" + grubdisk.MenuMarker + "'\n" +
		"menuentry 'Debian GNU/Linux' {\n" +
		"\techo '" + grubdisk.LinuxMarker + "'\n" +
		"\tlinux " + kernel + " " + Cmdline() + "\n" +
		"\tinitrd " + initrd + "\n" +
		"}\n"), nil
}

// Spec is what Build lays out.
type Spec struct {
	// Root is the installed tree; Build writes GrubCfgPath into it.
	Root string
	// Kernel and Initrd are the boot files' paths inside Root
	// ("/boot/vmlinuz-6.1.0-28-amd64").
	Kernel, Initrd string
	// BootImg is GRUB's i386-pc boot.img; CoreImg the i386-pc core image
	// and EFIImg the x86_64-efi one, both made with grub-mkimage -p Prefix
	// and grubdisk.EarlyConfig.
	BootImg, CoreImg, EFIImg string
	// Size is the disk's size in bytes (whole MiB); the root partition
	// takes what the others leave.
	Size int64
	// Mke2fs is mke2fs from e2fsprogs (1.43+ for -d).
	Mke2fs string
}

// Build writes the raw disk to out.
func Build(ctx context.Context, s Spec, out string) error {
	if s.Size%mib != 0 || s.Size < (RootStart+2048)*sectorSize+64*mib {
		return fmt.Errorf("debdisk: disk size %d is not a whole number of MiB of at least %d MiB", s.Size, RootStart/2048+2+64)
	}
	cfg, err := GrubConfig(s.Kernel, s.Initrd)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(s.Root, GrubCfgPath)
	if err := os.MkdirAll(filepath.Dir(cfgPath), 0o755); err != nil {
		return fmt.Errorf("debdisk: %w", err)
	}
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return fmt.Errorf("debdisk: %w", err)
	}
	bootImg, err := os.ReadFile(s.BootImg)
	if err != nil {
		return fmt.Errorf("debdisk: %w", err)
	}
	core, err := os.ReadFile(s.CoreImg)
	if err != nil {
		return fmt.Errorf("debdisk: %w", err)
	}
	core, err = grubdisk.PatchCore(core, BIOSBootStart, biosBootEnd+1)
	if err != nil {
		return err
	}
	efi, err := os.ReadFile(s.EFIImg)
	if err != nil {
		return fmt.Errorf("debdisk: %w", err)
	}
	// The backup GPT takes the last 33 sectors; the root ends 1 MiB short.
	rootEnd := uint64(s.Size/sectorSize) - 2048 - 1
	// boot.img as the MBR with the protective partition GPT requires
	// (UEFI 2.10, 5.2.3): it covers the whole disk, capped at 2^32-1.
	mbr, err := grubdisk.MBR(bootImg, BIOSBootStart, signature, grubdisk.Partition{
		Type: 0xEE, StartLBA: 1, Sectors: uint32(min(uint64(s.Size/sectorSize)-1, 0xFFFFFFFF)),
	})
	if err != nil {
		return err
	}

	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("debdisk: %w", err)
	}
	err = f.Truncate(s.Size)
	if err == nil {
		err = writeTables(f, s.Size, rootEnd, efi)
	}
	if err == nil {
		_, err = f.WriteAt(mbr, 0)
	}
	if err == nil {
		_, err = f.WriteAt(core, BIOSBootStart*sectorSize)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("debdisk: %s: %w", out, err)
	}
	// mke2fs writes the filesystem into the disk at the partition's
	// offset; -d copies the tree with its owners, modes, links and xattrs.
	rootBytes := (rootEnd + 1 - RootStart) * sectorSize
	return run(ctx, s.Mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", "-L", RootLabel, "-U", RootUUID,
		"-E", "offset="+strconv.FormatUint(RootStart*sectorSize, 10)+",hash_seed="+RootUUID,
		"-d", s.Root, out, strconv.FormatUint(rootBytes>>10, 10)+"k")
}

// writeTables writes the GPT and the ESP with efi as its boot loader.
func writeTables(f *os.File, size int64, rootEnd uint64, efi []byte) error {
	b := file.New(f, false)
	w, err := b.Writable()
	if err != nil {
		return err
	}
	table := &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		ProtectiveMBR:      true,
		GUID:               DiskGUID,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: BIOSBootStart, End: biosBootEnd, Type: gpt.BIOSBoot, Name: "BIOS boot", GUID: BIOSBootGUID},
			{Index: 2, Start: ESPStart, End: ESPStart + espSectors - 1, Type: gpt.EFISystemPartition, Name: "EFI system partition", GUID: ESPGUID},
			{Index: 3, Start: RootStart, End: rootEnd, Type: gpt.LinuxFilesystem, Name: "root", GUID: RootGUID},
		},
	}
	if err := table.Write(w, size); err != nil {
		return fmt.Errorf("partition: %w", err)
	}
	fsys, err := fat32.Create(b, espSectors*sectorSize, ESPStart*sectorSize, sectorSize, espLabel, true)
	if err != nil {
		return fmt.Errorf("ESP: %w", err)
	}
	for _, dir := range []string{"/EFI", "/EFI/BOOT"} {
		if err := fsys.Mkdir(dir); err != nil {
			return fmt.Errorf("ESP: mkdir %s: %w", dir, err)
		}
	}
	bf, err := fsys.OpenFile(EFIBootPath, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("ESP: %s: %w", EFIBootPath, err)
	}
	_, err = bf.Write(efi)
	if cerr := bf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ESP: %s: %w", EFIBootPath, err)
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	var outBuf bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debdisk: %s: %w: %s", filepath.Base(name), err, bytes.TrimSpace(outBuf.Bytes()))
	}
	return nil
}
