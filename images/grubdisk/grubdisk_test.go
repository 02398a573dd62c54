package grubdisk

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeBootImg has what MBR checks of a real boot.img: the drive check jmp,
// the boot signature and code bytes in the partition table area.
func fakeBootImg() []byte {
	b := make([]byte, SectorSize)
	for i := range b {
		b[i] = 0xCC
	}
	b[bootDriveCheck], b[bootDriveCheck+1] = 0xEB, 0x05
	b[bootSignature], b[bootSignature+1] = 0x55, 0xAA
	return b
}

func TestCHS(t *testing.T) {
	require.Equal(t, []byte{0, 1, 0}, chs(0))
	require.Equal(t, []byte{32, 33, 0}, chs(2048), "LBA 2048 = C0 H32 S33")
	// C=1023 fits: 1023*255*63 = 16434495; high cylinder bits in the sector byte.
	require.Equal(t, []byte{0, 1 | 3<<6, 0xFF}, chs(16434495))
	require.Equal(t, []byte{254, 63 | 3<<6, 0xFF}, chs(1<<32), "saturates beyond 1023 cylinders")
}

func TestMBR(t *testing.T) {
	boot := fakeBootImg()
	p := Partition{Bootable: true, Type: 0x83, StartLBA: PartitionStart, Sectors: 40960}
	mbr, err := MBR(boot, 1, 0x216d6d76, p)
	require.NoError(t, err)
	require.Len(t, mbr, SectorSize)
	require.Equal(t, byte(0xCC), boot[partitionTable], "input untouched")

	require.Equal(t, uint64(1), binary.LittleEndian.Uint64(mbr[bootKernelSector:]), "core.img LBA")
	require.Equal(t, byte(0xFF), mbr[bootDrive])
	require.Equal(t, []byte{0x90, 0x90}, mbr[bootDriveCheck:bootDriveCheck+2], "drive check NOPed for a hard disk")
	require.Equal(t, "vmm!", string(mbr[diskSignature:diskSignature+4]))
	require.Equal(t, []byte{0x55, 0xAA}, mbr[bootSignature:])
	require.Equal(t, p, DecodePartition(mbr, 0))
	require.Equal(t, []byte{0x80, 32, 33, 0, 0x83}, mbr[partitionTable:partitionTable+5])
	for i := 1; i < 4; i++ {
		require.Equal(t, Partition{}, DecodePartition(mbr, i), "entry %d empty", i)
	}
	require.Equal(t, byte(0xCC), mbr[0x70], "boot code kept")

	_, err = MBR(boot[:511], 1, 0, p)
	require.ErrorIs(t, err, ErrBadBootImage)
	bad := fakeBootImg()
	bad[bootSignature] = 0
	_, err = MBR(bad, 1, 0, p)
	require.ErrorIs(t, err, ErrBadBootImage)
	_, err = MBR(boot, 1, 0, p, p, p, p, p)
	require.Error(t, err)
}

// fakeCore is a core.img whose first sector ends in diskboot's default
// blocklist (start 2, segment 0x820) and which spans n bytes.
func fakeCore(n int) []byte {
	c := make([]byte, n)
	binary.LittleEndian.PutUint64(c[firstBlocklist:], 2)
	binary.LittleEndian.PutUint16(c[firstBlocklist+10:], coreSegment)
	return c
}

func TestPatchCore(t *testing.T) {
	core := fakeCore(143764) // 281 sectors, the size Debian 12's GRUB gives
	out, err := PatchCore(core, 1, PartitionStart)
	require.NoError(t, err)
	require.Len(t, out, 281*SectorSize, "padded to whole sectors")
	require.Equal(t, uint64(2), binary.LittleEndian.Uint64(out[firstBlocklist:]), "rest starts after the first sector")
	require.Equal(t, uint16(280), binary.LittleEndian.Uint16(out[firstBlocklist+8:]), "sectors after the first")
	require.Equal(t, uint16(coreSegment), binary.LittleEndian.Uint16(out[firstBlocklist+10:]))

	out, err = PatchCore(core, 100, 1000)
	require.NoError(t, err)
	require.Equal(t, uint64(101), binary.LittleEndian.Uint64(out[firstBlocklist:]))

	_, err = PatchCore(core, 1, 200)
	require.ErrorIs(t, err, ErrCoreTooLarge)
	_, err = PatchCore(core[:SectorSize], 1, PartitionStart)
	require.ErrorIs(t, err, ErrBadCoreImage)
	bad := fakeCore(4096)
	binary.LittleEndian.PutUint16(bad[firstBlocklist+10:], 0x1000)
	_, err = PatchCore(bad, 1, PartitionStart)
	require.ErrorIs(t, err, ErrBadCoreImage)
	bad = fakeCore(4096)
	binary.LittleEndian.PutUint16(bad[firstBlocklist-blocklistSize+8:], 3)
	_, err = PatchCore(bad, 1, PartitionStart)
	require.ErrorIs(t, err, ErrBadCoreImage, "a second blocklist would be read too")
}

func TestGrubConfig(t *testing.T) {
	cfg, err := GrubConfig("console=ttyS0  vmm.checks=boot,cpus panic=-1")
	require.NoError(t, err)
	text := string(cfg)
	require.Contains(t, text, "set timeout=0\n")
	require.Contains(t, text, "echo '"+MenuMarker+"'\n")
	require.Contains(t, text, "\tlinux /boot/vmlinuz 'console=ttyS0' 'vmm.checks=boot,cpus' 'panic=-1'\n")
	require.Contains(t, text, "\tinitrd /boot/initrd.img\n")
	require.Less(t, strings.Index(text, MenuMarker), strings.Index(text, "menuentry"), "marker before the menu")
	require.Less(t, strings.Index(text, LinuxMarker), strings.Index(text, "linux /boot"))

	cfg, err = GrubConfig("")
	require.NoError(t, err)
	require.Contains(t, string(cfg), "\tlinux /boot/vmlinuz\n")

	for _, bad := range []string{"a='b'", "a\nboot", "x\x00"} {
		_, err := GrubConfig(bad)
		require.True(t, errors.Is(err, ErrBadCmdline), "%q: %v", bad, err)
	}
}

func TestEarlyConfigUsesSerial(t *testing.T) {
	require.Equal(t, "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n", string(EarlyConfig()))
	require.Contains(t, Modules(), "serial")
	require.Contains(t, Modules(), "biosdisk")
	require.Contains(t, Modules(), "ext2")
}

func TestFSSize(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a"), make([]byte, 8<<20), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b"), make([]byte, 1), 0o644))
	size, err := FSSize(dir)
	require.NoError(t, err)
	require.Zero(t, size%(1<<20), "whole MiB")
	require.GreaterOrEqual(t, size, uint64(8<<20+4096+4<<20), "files plus metadata room")
	require.Less(t, size, uint64(16<<20))
	_, err = FSSize(filepath.Join(dir, "missing"))
	require.Error(t, err)
}
