package images_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/internal/testenv"
)

// TestGrubEFIDiskStructure builds each EFI disk from Debian's GRUB, signed
// GRUB and shim packages (downloaded once into build/images/grub) around
// stand-in kernel and initrd files and reads it back as firmware does:
// the protective MBR, the GPT header and its EFI system partition entry,
// and the FAT32 files, listed and read with mtools (an independent FAT
// reader). Booting them is TestGrubEFIBootTCG's job.
func TestGrubEFIDiskStructure(t *testing.T) {
	ctx, in := grubInputs(t)
	tools, dir, kernel, initrd, kernelData, initrdData := in.tools, in.dir, in.kernel, in.initrd, in.kernelData, in.initrdData
	mcopy, err := exec.LookPath("mcopy")
	if err != nil {
		testenv.Skip(t, "mcopy (mtools) not installed")
	}

	const cmdline = "console=ttyS0 panic=-1 vmm.checks=boot"
	wantCfg, err := grubdisk.EFIGrubConfig(cmdline)
	require.NoError(t, err)
	shim, err := os.ReadFile(tools.Shim)
	require.NoError(t, err)
	signedGrub, err := os.ReadFile(tools.SignedGrub)
	require.NoError(t, err)

	boots := map[grubdisk.EFIBoot][]byte{}
	for _, boot := range []grubdisk.EFIBoot{grubdisk.EFIGrub, grubdisk.EFIShim, grubdisk.EFIUnsigned} {
		t.Run(boot.String(), func(t *testing.T) {
			disk := filepath.Join(dir, boot.String()+".img")
			start := time.Now()
			require.NoError(t, grubdisk.BuildEFI(ctx, tools, grubdisk.Spec{Kernel: kernel, Initrd: initrd, Cmdline: cmdline}, boot, disk))
			t.Logf("built in %v", time.Since(start))
			img, err := os.ReadFile(disk)
			require.NoError(t, err)

			// Protective MBR: one partition of type 0xEE from LBA 1.
			require.Equal(t, []byte{0x55, 0xAA}, img[510:512])
			require.Equal(t, byte(0xEE), img[0x1BE+4], "protective MBR type")
			require.Equal(t, uint32(1), binary.LittleEndian.Uint32(img[0x1BE+8:]))
			// GPT header at LBA 1, entries at LBA 2: the first is the ESP.
			hdr := img[512:1024]
			require.Equal(t, "EFI PART", string(hdr[:8]))
			require.Equal(t, uint64(2), binary.LittleEndian.Uint64(hdr[72:]), "partition entries LBA")
			entry := img[1024 : 1024+128]
			espType := []byte{0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B}
			require.Equal(t, espType, entry[:16], "EFI system partition type GUID")
			first, last := binary.LittleEndian.Uint64(entry[32:]), binary.LittleEndian.Uint64(entry[40:])
			require.Equal(t, uint64(grubdisk.PartitionStart), first)
			require.Less(t, (last+1)*grubdisk.SectorSize, uint64(len(img)), "room for the backup GPT")
			require.Equal(t, "EFI PART", string(img[len(img)-512:len(img)-504]), "backup GPT header in the last sector")
			fat := img[first*grubdisk.SectorSize : (last+1)*grubdisk.SectorSize]
			require.Equal(t, "FAT32   ", string(fat[82:90]), "FAT32 boot sector")

			read := func(name string) []byte {
				out, err := exec.Command(mcopy, "-n", "-i", disk+"@@"+strconv.FormatUint(first*grubdisk.SectorSize, 10), "::"+name, "-").Output()
				require.NoError(t, err, "mcopy %s", name)
				return out
			}
			require.Equal(t, kernelData, read("/boot/vmlinuz"))
			require.Equal(t, initrdData, read("/boot/initrd.img"))
			require.Equal(t, string(wantCfg), string(read(grubdisk.EFIGrubCfgPath)))
			bootx64 := read(grubdisk.EFIBootPath)
			require.Equal(t, "MZ", string(bootx64[:2]), "BOOTX64.EFI is a PE image")
			boots[boot] = bootx64
			if boot == grubdisk.EFIGrub {
				return
			}
			require.Equal(t, signedGrub, read(grubdisk.EFIShimGrub), "grubx64.efi is Debian's signed GRUB")
			if boot == grubdisk.EFIShim {
				require.Equal(t, shim, bootx64, "BOOTX64.EFI is Debian's signed shim")
			}
		})
	}
	require.Len(t, boots, 3)
	require.Equal(t, boots[grubdisk.EFIGrub], boots[grubdisk.EFIUnsigned], "the unsigned variant boots the plain GRUB")
	require.False(t, bytes.Equal(boots[grubdisk.EFIGrub], boots[grubdisk.EFIShim]))
}
