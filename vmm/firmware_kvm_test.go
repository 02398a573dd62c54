package vmm

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/internal/testenv"
)

// These tests run Debian's SeaBIOS on the host's /dev/kvm: its real- and
// protected-mode code runs under PVM's emulator (a few seconds).

func requireSeaBIOS(t *testing.T) {
	t.Helper()
	kvmtest.Require(t)
	if _, err := os.Stat(SeaBIOSPath); err != nil {
		testenv.Skip(t, "Debian's seabios package is not installed ("+SeaBIOSPath+"): scripts/setup.sh installs it")
	}
}

func TestKVMSeaBIOSNoBootableDevice(t *testing.T) {
	requireSeaBIOS(t)
	g := runGuest(t, Config{Firmware: "seabios", Timeout: 60 * time.Second})
	require.Contains(t, string(g.console), "SeaBIOS (version", "banner on the serial console")
	require.Equal(t, StopNoBoot, g.res.Reason.Kind, "reason: %v\nconsole: %q", g.res.Reason, g.console)
	require.Equal(t, ExitNoBoot, g.res.Reason.ExitCode())
	require.Contains(t, g.res.Reason.Detail, "No bootable device")
	require.Contains(t, string(g.console), "No bootable device")
}

// bootSector is a 512-byte MBR: code at 0x7c00, the 0x55AA signature.
func bootSector(t *testing.T, code []byte) string {
	t.Helper()
	require.LessOrEqual(t, len(code), 446)
	disk := make([]byte, 1<<20)
	copy(disk, code)
	disk[510], disk[511] = 0x55, 0xaa
	path := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(path, disk, 0o644))
	return path
}

// printAndExit prints msg on COM1 and writes exitValue to the debug-exit port.
func printAndExit(msg string, exitValue byte) []byte {
	code := []byte{
		0xfa,       // cli
		0x31, 0xc0, // xor ax, ax
		0x8e, 0xd8, // mov ds, ax
		0xbe, 0x18, 0x7c, // mov si, 0x7c18 (msg)
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xac,       // loop: lodsb
		0x84, 0xc0, // test al, al
		0x74, 0x03, // jz done
		0xee,       // out dx, al
		0xeb, 0xf8, // jmp loop
		0xb0, exitValue, // done: mov al, exitValue
		0xe6, 0xf4, // out 0xf4, al
		0xf4, // hlt
	}
	return append(append(code, msg...), 0)
}

func TestKVMSeaBIOSBootsVirtioBlk(t *testing.T) {
	requireSeaBIOS(t)
	disk := bootSector(t, printAndExit("MBR-BOOTED\n", 5))
	g := runGuest(t, Config{Firmware: "seabios", Timeout: 60 * time.Second, Disks: []Disk{{Path: disk, ReadOnly: true}}})
	require.Equal(t, StopDebugExit, g.res.Reason.Kind, "reason: %v\nconsole: %q", g.res.Reason, g.console)
	require.EqualValues(t, 5, g.res.Reason.Value)
	require.Contains(t, string(g.console), "MBR-BOOTED")
	require.Contains(t, string(g.console), "SeaBIOS (version")
}

// TestKVMSeaBIOSBootsAHCIAndNVMe boots the same boot sector from a SATA
// disk and from an NVMe namespace: SeaBIOS's own drivers (ahci.c, nvme.c)
// find the drive, match its bootorder line and read the MBR.
func TestKVMSeaBIOSBootsAHCIAndNVMe(t *testing.T) {
	requireSeaBIOS(t)
	for _, iface := range []DiskInterface{DiskAHCI, DiskNVMe} {
		t.Run(iface.String(), func(t *testing.T) {
			disk := bootSector(t, printAndExit("MBR-BOOTED\n", 6))
			g := runGuest(t, Config{Firmware: "seabios", Timeout: 60 * time.Second,
				Disks: []Disk{{Path: disk, ReadOnly: true, Interface: iface}}})
			require.Equal(t, StopDebugExit, g.res.Reason.Kind, "reason: %v\nconsole: %q", g.res.Reason, g.console)
			require.EqualValues(t, 6, g.res.Reason.Value)
			require.Contains(t, string(g.console), "MBR-BOOTED")
		})
	}
}

// elToritoImage returns an ISO image path that holds only what SeaBIOS's
// El Torito code reads: the boot record volume descriptor at sector 17
// pointing at a boot catalog whose default entry loads code (no
// emulation, 4 512-byte sectors at 07C0:0000) from sector 20.
func elToritoImage(t *testing.T, code []byte) string {
	t.Helper()
	const sector = 2048
	img := make([]byte, 32*sector)
	brvd := img[17*sector:]
	brvd[0] = 0
	copy(brvd[1:], "CD001\x01EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(brvd[0x47:], 19)
	term := img[18*sector:]
	term[0] = 0xff
	copy(term[1:], "CD001\x01")
	cat := img[19*sector:]
	cat[0] = 1 // validation entry, platform 0 (x86)
	cat[0x1e], cat[0x1f] = 0x55, 0xaa
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(cat[i:])
	}
	binary.LittleEndian.PutUint16(cat[0x1c:], -sum)
	entry := cat[32:]
	entry[0] = 0x88                                 // bootable
	entry[1] = 0                                    // no emulation
	binary.LittleEndian.PutUint16(entry[2:], 0x7c0) // load segment
	binary.LittleEndian.PutUint16(entry[6:], 4)     // 512-byte sectors to load
	binary.LittleEndian.PutUint32(entry[8:], 20)
	copy(img[20*sector:], code)
	path := filepath.Join(t.TempDir(), "boot.iso")
	require.NoError(t, os.WriteFile(path, img, 0o644))
	return path
}

// TestKVMSeaBIOSBootsCDROM boots an El Torito image from the AHCI CD-ROM
// through SeaBIOS's ATAPI path (READ CAPACITY, READ(10) of 2048-byte
// sectors).
func TestKVMSeaBIOSBootsCDROM(t *testing.T) {
	requireSeaBIOS(t)
	iso := elToritoImage(t, printAndExit("CD-BOOTED\n", 7))
	g := runGuest(t, Config{Firmware: "seabios", Timeout: 60 * time.Second, CDROMs: []string{iso}})
	require.Equal(t, StopDebugExit, g.res.Reason.Kind, "reason: %v\nconsole: %q", g.res.Reason, g.console)
	require.EqualValues(t, 7, g.res.Reason.Value)
	require.Contains(t, string(g.console), "CD-BOOTED")
}

// hostileBootSector toggles the PAM registers with pseudo-random values,
// then points an fw_cfg DMA descriptor at memory outside RAM and reports
// the descriptor's status byte (1: error bit) through the debug-exit port.
func hostileBootSector() []byte {
	var c []byte
	emit := func(b ...byte) { c = append(c, b...) }
	emit(0xfa, 0x31, 0xc0, 0x8e, 0xd8) // cli; xor ax, ax; mov ds, ax
	emit(0xb9, 0xd0, 0x07)             // mov cx, 2000
	emit(0xbb, 0x34, 0x12)             // mov bx, 0x1234
	loop := len(c)
	emit(0x81, 0xc3, 0x37, 0x9e) // add bx, 0x9e37
	emit(0xc1, 0xc3, 0x05)       // rol bx, 5
	for _, reg := range []byte{0x58, 0x5c} {
		emit(0x66, 0xb8, reg, 0x00, 0x00, 0x80) // mov eax, 0x800000reg
		emit(0xba, 0xf8, 0x0c, 0x66, 0xef)      // mov dx, 0xcf8; out dx, eax
		emit(0x89, 0xd8, 0x35, reg, 0x5a)       // mov ax, bx; xor ax, 0x5aXX
		emit(0x66, 0xc1, 0xe0, 0x10)            // shl eax, 16
		emit(0x89, 0xd8)                        // mov ax, bx
		emit(0xba, 0xfc, 0x0c, 0x66, 0xef)      // mov dx, 0xcfc; out dx, eax
	}
	emit(0xe2, byte(loop-(len(c)+2))) // loop
	// Descriptor at 0x7e00: select the first file and read 4 GiB into
	// 0xf_0000_0000, far outside RAM (all big-endian).
	dword := func(addr uint16, v uint32) {
		emit(0x66, 0xc7, 0x06, byte(addr), byte(addr>>8))
		emit(binary.LittleEndian.AppendUint32(nil, v)...)
	}
	dword(0x7e00, binary.LittleEndian.Uint32([]byte{0x00, 0x20, 0x00, 0x0a}))
	dword(0x7e04, 0xffffffff)
	dword(0x7e08, binary.LittleEndian.Uint32([]byte{0, 0, 0, 0x0f}))
	dword(0x7e0c, 0)
	emit(0x66, 0x31, 0xc0, 0xba, 0x14, 0x05, 0x66, 0xef) // xor eax, eax; mov dx, 0x514; out dx, eax
	// A descriptor outside RAM first: nothing to do, nothing may break.
	emit(0x66, 0xb8, 0xf0, 0xff, 0xff, 0xff, 0xba, 0x18, 0x05, 0x66, 0xef) // mov eax, BE 0xf0ffffff; mov dx, 0x518; out
	emit(0x66, 0x31, 0xc0, 0xba, 0x14, 0x05, 0x66, 0xef)
	emit(0x66, 0xb8, 0x00, 0x00, 0x7e, 0x00, 0xba, 0x18, 0x05, 0x66, 0xef) // mov eax, BE 0x7e00; out
	emit(0xa0, 0x03, 0x7e)                                                 // mov al, [0x7e03] (the status's low byte)
	emit(0xe6, 0xf4, 0xf4)                                                 // out 0xf4, al; hlt
	return c
}

func TestKVMSeaBIOSHostileBootSector(t *testing.T) {
	requireSeaBIOS(t)
	disk := bootSector(t, hostileBootSector())
	g := runGuest(t, Config{Firmware: "seabios", Timeout: 90 * time.Second, Disks: []Disk{{Path: disk, ReadOnly: true}}})
	require.Equal(t, StopDebugExit, g.res.Reason.Kind, "reason: %v\nconsole: %q", g.res.Reason, g.console)
	require.EqualValues(t, 1, g.res.Reason.Value, "the DMA descriptor's status has the error bit")
}

func TestFirmwareConfigErrors(t *testing.T) {
	dir := t.TempDir()
	odd := filepath.Join(dir, "odd.bin")
	require.NoError(t, os.WriteFile(odd, make([]byte, 1000), 0o644))
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Firmware: odd}, "multiple of 64 KiB"},
		{Config{Firmware: filepath.Join(dir, "missing")}, "no such file"},
		{Config{Firmware: SeaBIOSPath, Kernel: odd}, "mutually exclusive"},
	} {
		c.cfg.CPUs, c.cfg.Memory = 1, 64<<20
		err := c.cfg.Validate()
		require.ErrorIs(t, err, ErrInvalidConfig)
		require.Contains(t, err.Error(), c.want)
	}
	require.Equal(t, "/usr/share/seabios/bios-256k.bin", FirmwarePath("seabios"))
}

// TestKVMSeaBIOSInstallsACPIAndSMBIOS checks what SeaBIOS made of fw_cfg's
// table-loader script and SMBIOS files: an RSDP in the BIOS area whose
// XSDT leads to vmm's tables, every checksum valid, and the SMBIOS 3.0
// entry point.
func TestKVMSeaBIOSInstallsACPIAndSMBIOS(t *testing.T) {
	requireSeaBIOS(t)
	m, err := New(Config{Firmware: "seabios", CPUs: 2, Memory: testMemory, Timeout: 60 * time.Second}, nil)
	require.NoError(t, err)
	defer m.Close()
	res := m.Run(context.Background())
	require.Equal(t, StopNoBoot, res.Reason.Kind, "reason: %v", res.Reason)

	bios := make([]byte, 0x20000)
	_, err = m.Memory().ReadAt(bios, 0xe0000)
	require.NoError(t, err)
	sum := func(b []byte) (s byte) {
		for _, c := range b {
			s += c
		}
		return s
	}
	rsdp := -1
	for off := 0; off+36 <= len(bios); off += 16 {
		if string(bios[off:off+8]) == "RSD PTR " && sum(bios[off:off+20]) == 0 {
			rsdp = off
			break
		}
	}
	require.GreaterOrEqual(t, rsdp, 0, "no RSDP in 0xe0000-0xfffff")
	r := bios[rsdp:]
	require.EqualValues(t, 2, r[15], "ACPI 2.0+ RSDP")
	require.Zero(t, sum(r[:36]), "extended checksum")
	table := func(addr uint64) []byte {
		hdr := make([]byte, 36)
		_, err := m.Memory().ReadAt(hdr, int64(addr))
		require.NoError(t, err)
		b := make([]byte, binary.LittleEndian.Uint32(hdr[4:]))
		_, err = m.Memory().ReadAt(b, int64(addr))
		require.NoError(t, err)
		require.Zero(t, sum(b), "checksum of %s", b[:4])
		return b
	}
	xsdt := table(binary.LittleEndian.Uint64(r[24:]))
	require.Equal(t, "XSDT", string(xsdt[:4]))
	seen := map[string]bool{}
	for off := 36; off+8 <= len(xsdt); off += 8 {
		tb := table(binary.LittleEndian.Uint64(xsdt[off:]))
		seen[string(tb[:4])] = true
		if string(tb[:4]) == "FACP" {
			dsdt := table(binary.LittleEndian.Uint64(tb[140:]))
			require.Equal(t, "DSDT", string(dsdt[:4]))
		}
		if string(tb[:4]) == "APIC" {
			// Two local APIC entries (type 0) for two vCPUs.
			n := 0
			for e := 44; e+2 <= len(tb) && tb[e+1] > 0; e += int(tb[e+1]) {
				if tb[e] == 0 {
					n++
				}
			}
			require.Equal(t, 2, n, "MADT local APICs")
		}
	}
	require.True(t, seen["FACP"] && seen["APIC"] && seen["MCFG"], "tables %v", seen)
	require.True(t, bytes.Contains(bios, []byte("_SM3_")), "SMBIOS 3.0 entry point in the BIOS area")
}
