package vmm

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/layout"
)

// newTestFirmware is a firmware platform over 2 MiB of RAM and a 192 KiB
// image whose bytes are their offset's low byte (no KVM: the slot side is
// not exercised).
func newTestFirmware(t *testing.T) *firmwarePlatform {
	t.Helper()
	mem, err := NewMemory(2 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	rom := make([]byte, 192<<10)
	for i := range rom {
		rom[i] = byte(i)
	}
	fw := &firmwarePlatform{mem: mem, rom: rom, log: slog.New(slog.DiscardHandler), segs: shadowLayout()}
	return fw
}

func TestFirmwareROMAlias(t *testing.T) {
	fw := newTestFirmware(t)
	// The image's last 128 KiB end at 1 MiB: 0xe0000 is image offset 64 KiB.
	r, ok := fw.romAt(0xe0000, 2)
	require.True(t, ok)
	require.Equal(t, []byte{0, 1}, r)
	r, ok = fw.romAt(0xfffff, 1)
	require.True(t, ok)
	require.Equal(t, byte(0xff), r[0])
	_, ok = fw.romAt(0xdfffe, 4)
	require.False(t, ok, "below the alias")
	_, ok = fw.romAt(0xffffe, 4)
	require.False(t, ok, "past 1 MiB")
}

func TestFirmwareLowAreaSemantics(t *testing.T) {
	fw := newTestFirmware(t)
	a := lowArea{fw}
	at := func(gpa uint64) uint64 { return gpa - layout.LegacyVGA }
	read := func(gpa uint64, n int) []byte {
		b := make([]byte, n)
		a.Read(at(gpa), b)
		return b
	}
	// VGA window: all ones, writes vanish.
	a.Write(at(0xb8000), []byte{1, 2})
	require.Equal(t, []byte{0xff, 0xff}, read(0xb8000, 2))
	ram, err := fw.mem.Slice(layout.LegacyVGA, layout.ShadowEnd-layout.LegacyVGA)
	require.NoError(t, err)
	require.False(t, bytes.ContainsAny(ram, "\x01\x02"), "a VGA write reached RAM")

	// At reset (PAM 0): ROM where the image is aliased, else the bus;
	// writes are dropped.
	require.Equal(t, []byte{0x10, 0x11}, read(0xf0010, 2))
	require.Equal(t, []byte{0xff}, read(0xc0000, 1))
	a.Write(at(0xf0010), []byte{0xaa})
	require.Equal(t, []byte{0x10}, read(0xf0010, 1))

	// Write-only shadowing (as firmware copies itself): reads still come
	// from ROM, writes reach RAM.
	bios := fw.segment(0xf0000)
	bios.state = pamWriteRAM
	a.Write(at(0xf0010), []byte{0xaa, 0xbb})
	require.Equal(t, []byte{0x10, 0x11}, read(0xf0010, 2))
	// Read-only RAM (locked after the copy): reads RAM, writes dropped.
	bios.state = pamReadRAM
	require.Equal(t, []byte{0xaa, 0xbb}, read(0xf0010, 2))
	a.Write(at(0xf0010), []byte{0x55})
	require.Equal(t, []byte{0xaa}, read(0xf0010, 1))
	// An access straddling two segments follows each one's state.
	fw.segment(0xc4000).state = pamReadRAM | pamWriteRAM
	a.Write(at(0xc3fff), []byte{1, 2})
	require.Equal(t, []byte{0xff, 2}, read(0xc3fff, 2))
}

func TestPAMRegisterDecoding(t *testing.T) {
	fw := newTestFirmware(t)
	regs := []byte{0x30, 0x01, 0x20, 0, 0, 0, 0x13}
	st := func(gpa uint64) byte { return fw.segment(gpa).decode(regs) }
	require.Equal(t, byte(3), st(0xf0000), "PAM0 high nibble: BIOS segment")
	require.Equal(t, byte(1), st(0xc0000), "PAM1 low nibble: 0xc0000")
	require.Equal(t, byte(0), st(0xc4000), "PAM1 high nibble: 0xc4000")
	require.Equal(t, byte(3), st(0xe8000), "PAM6 low nibble: 0xe8000")
	require.Equal(t, byte(1), st(0xec000), "PAM6 high nibble: 0xec000")
}
