// Package grubdisk lays out a legacy-BIOS bootable raw disk the way
// grub-install/grub-bios-setup would, without root or loop devices: GRUB's
// boot.img as the MBR (pointing at core.img), core.img in the gap after the
// MBR (its first blocklist pointing at the rest of itself), and one
// bootable partition holding an ext2 filesystem made with `mke2fs -d`,
// with /boot/vmlinuz, /boot/initrd.img and /boot/grub/grub.cfg.
//
// The layout and patching are pure functions; Build runs the two external
// tools (grub-mkimage from Debian's grub-common, mke2fs). BuildISO lays out
// the same boot as an El Torito CD, BuildEFI as a GPT disk with an EFI
// system partition for UEFI firmware, with or without Secure Boot.
package grubdisk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// SectorSize is the only sector size BIOS disks and GRUB's i386-pc images use.
const SectorSize = 512

// PartitionStart is the first partition's LBA: 1 MiB, as partitioning tools
// align it, which leaves GRUB the whole first MiB for core.img.
const PartitionStart = 2048

// MenuMarker is the line GRUB prints on the serial console once it has read
// grub.cfg and reached its menu: the "time to GRUB menu" benchmark and the
// e2e scenario wait for it. LinuxMarker follows once the menu entry runs.
const (
	MenuMarker  = "vmm-grub: menu reached"
	LinuxMarker = "vmm-grub: loading linux"
)

// Offsets in boot.img (GRUB's include/grub/i386/pc/boot.h) that
// grub-bios-setup patches, and in the first sector of core.img
// (diskboot.img) whose last 12 bytes are the first blocklist.
const (
	bootKernelSector = 0x5C  // u64: LBA of core.img's first sector
	bootDrive        = 0x64  // u8: 0xFF = use the drive the BIOS passes in DL
	bootDriveCheck   = 0x66  // 2-byte jmp; NOPs on hard disks
	diskSignature    = 0x1B8 // u32, "Windows NT magic"
	partitionTable   = 0x1BE
	bootSignature    = 0x1FE
	blocklistSize    = 12
	firstBlocklist   = SectorSize - blocklistSize // u64 start, u16 sectors, u16 segment
	coreSegment      = 0x820                      // where diskboot loads the rest: 0x8000 + one sector
)

// Errors callers can branch on.
var (
	ErrBadBootImage = errors.New("grubdisk: boot.img is not a 512-byte GRUB boot sector")
	ErrBadCoreImage = errors.New("grubdisk: core.img is not a GRUB i386-pc core image")
	ErrCoreTooLarge = errors.New("grubdisk: core.img does not fit before the first partition")
	ErrBadCmdline   = errors.New("grubdisk: kernel command line cannot be quoted for grub.cfg")
)

// Partition is one MBR partition table entry.
type Partition struct {
	Bootable bool
	Type     byte // 0x83: Linux
	StartLBA uint32
	Sectors  uint32
}

// encode writes the 16-byte entry.
func (p Partition) encode(b []byte) {
	if p.Bootable {
		b[0] = 0x80
	}
	copy(b[1:4], chs(uint64(p.StartLBA)))
	b[4] = p.Type
	copy(b[5:8], chs(uint64(p.StartLBA)+uint64(p.Sectors)-1))
	binary.LittleEndian.PutUint32(b[8:], p.StartLBA)
	binary.LittleEndian.PutUint32(b[12:], p.Sectors)
}

// DecodePartition reads entry i (0-3) of an MBR.
func DecodePartition(mbr []byte, i int) Partition {
	b := mbr[partitionTable+16*i:]
	return Partition{
		Bootable: b[0] == 0x80,
		Type:     b[4],
		StartLBA: binary.LittleEndian.Uint32(b[8:]),
		Sectors:  binary.LittleEndian.Uint32(b[12:]),
	}
}

// chs encodes an LBA as the MBR's cylinder/head/sector triple for the
// usual 255-head, 63-sector geometry, saturating at 1023/254/63 as
// partitioning tools do for addresses beyond it (the LBA fields rule).
func chs(lba uint64) []byte {
	const heads, sectors = 255, 63
	c, h, s := lba/(heads*sectors), (lba/sectors)%heads, lba%sectors+1
	if c > 1023 {
		c, h, s = 1023, 254, 63
	}
	return []byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

// MBR returns boot.img patched as grub-bios-setup patches it for a hard
// disk: the LBA of core.img, the drive check turned into NOPs (some BIOSes
// pass a bogus DL), the disk signature and the partition table, which
// replaces the floppy-probe code boot.img keeps in that area.
func MBR(bootImg []byte, coreLBA uint64, sig uint32, parts ...Partition) ([]byte, error) {
	if len(bootImg) != SectorSize || bootImg[bootSignature] != 0x55 || bootImg[bootSignature+1] != 0xAA ||
		bootImg[bootDriveCheck] != 0xEB {
		return nil, ErrBadBootImage
	}
	if len(parts) > 4 {
		return nil, fmt.Errorf("grubdisk: %d partitions, an MBR holds 4", len(parts))
	}
	mbr := append([]byte(nil), bootImg...)
	binary.LittleEndian.PutUint64(mbr[bootKernelSector:], coreLBA)
	mbr[bootDrive] = 0xFF
	mbr[bootDriveCheck], mbr[bootDriveCheck+1] = 0x90, 0x90
	binary.LittleEndian.PutUint32(mbr[diskSignature:], sig)
	mbr[diskSignature+4], mbr[diskSignature+5] = 0, 0
	clear(mbr[partitionTable:bootSignature])
	for i, p := range parts {
		p.encode(mbr[partitionTable+16*i:])
	}
	return mbr, nil
}

// CoreSectors returns the sectors core.img occupies.
func CoreSectors(core []byte) uint64 {
	return (uint64(len(core)) + SectorSize - 1) / SectorSize
}

// PatchCore returns core.img (padded to whole sectors) with its first
// blocklist pointing at its own sectors after the first, as placed at
// coreLBA, and checks that it ends before limitLBA. The blocklist
// before it must be empty: diskboot reads lists until a zero length.
func PatchCore(core []byte, coreLBA, limitLBA uint64) ([]byte, error) {
	n := CoreSectors(core)
	if n < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadCoreImage, len(core))
	}
	if coreLBA+n > limitLBA {
		return nil, fmt.Errorf("%w: %d sectors at LBA %d, limit %d", ErrCoreTooLarge, n, coreLBA, limitLBA)
	}
	if n-1 > 0xFFFF {
		return nil, fmt.Errorf("%w: %d sectors", ErrCoreTooLarge, n)
	}
	out := make([]byte, n*SectorSize)
	copy(out, core)
	bl := out[firstBlocklist:SectorSize]
	if seg := binary.LittleEndian.Uint16(bl[10:]); seg != coreSegment {
		return nil, fmt.Errorf("%w: blocklist segment %#x, want %#x", ErrBadCoreImage, seg, coreSegment)
	}
	if next := out[firstBlocklist-blocklistSize : firstBlocklist]; binary.LittleEndian.Uint16(next[8:]) != 0 {
		return nil, fmt.Errorf("%w: second blocklist is not empty", ErrBadCoreImage)
	}
	binary.LittleEndian.PutUint64(bl[0:], coreLBA+1)
	binary.LittleEndian.PutUint16(bl[8:], uint16(n-1))
	return out, nil
}

// EarlyConfig is embedded in core.img: it moves GRUB's terminal to COM1
// before anything else is printed, since the guest has no display.
func EarlyConfig() []byte {
	return []byte("serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n")
}

// Prefix is where core.img looks for its modules and grub.cfg: the first
// partition of the disk it was loaded from.
const Prefix = "(,msdos1)/boot/grub"

// Modules are linked into core.img (dependencies are added by
// grub-mkimage): disk and filesystem access, the Linux loader, the serial
// terminal and what grub.cfg uses.
func Modules() []string {
	return []string{"biosdisk", "part_msdos", "ext2", "linux", "normal", "serial", "terminal", "configfile", "echo", "test"}
}

// GrubConfig returns grub.cfg: the menu marker, then one menu entry run at
// once (timeout 0) that loads /boot/vmlinuz with cmdline and
// /boot/initrd.img. Each argument is single-quoted, which GRUB's script
// language takes literally, so cmdline may not contain a quote or newline.
func GrubConfig(cmdline string) ([]byte, error) {
	if strings.ContainsAny(cmdline, "'\n\r\x00") {
		return nil, fmt.Errorf("%w: %q", ErrBadCmdline, cmdline)
	}
	args := ""
	for _, f := range strings.Fields(cmdline) {
		args += " '" + f + "'"
	}
	return []byte("set timeout=0\nset default=0\necho '" + MenuMarker + "'\n" +
		"menuentry 'vmm' {\n" +
		"\techo '" + LinuxMarker + "'\n" +
		"\tlinux /boot/vmlinuz" + args + "\n" +
		"\tinitrd /boot/initrd.img\n" +
		"}\n"), nil
}
