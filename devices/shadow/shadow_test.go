package shadow

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/layout"
)

// fakeRAM is guest memory from 0.
type fakeRAM []byte

func (r fakeRAM) Slice(gpa, n uint64) ([]byte, error) {
	if gpa+n > uint64(len(r)) {
		return nil, fmt.Errorf("[%#x, %#x) outside RAM", gpa, gpa+n)
	}
	return r[gpa : gpa+n], nil
}

func (r fakeRAM) ReadAt(p []byte, gpa int64) (int, error) { return copy(p, r[gpa:]), nil }

func (r fakeRAM) WriteAt(p []byte, gpa int64) (int, error) { return copy(r[gpa:], p), nil }

// mapping is what a fake slot holds.
type mapping struct {
	gpa      uint64
	host     []byte
	readOnly bool
}

// fakeSlots records the slots as KVM would hold them.
type fakeSlots map[uint32]mapping

func (f fakeSlots) MapSlot(slot uint32, gpa uint64, host []byte, readOnly bool) error {
	if host == nil {
		delete(f, slot)
		return nil
	}
	if _, busy := f[slot]; busy {
		return fmt.Errorf("slot %d is mapped; KVM cannot move it in place", slot)
	}
	f[slot] = mapping{gpa, host, readOnly}
	return nil
}

const firstSlot = 4

// newTest is shadow RAM over 2 MiB of RAM and a 192 KiB image whose bytes
// are their offset's low byte.
func newTest(t *testing.T) (*Shadow, fakeRAM, fakeSlots) {
	t.Helper()
	ram := make(fakeRAM, 2<<20)
	rom := make([]byte, 192<<10)
	for i := range rom {
		rom[i] = byte(i)
	}
	slots := fakeSlots{}
	s := New(slots, ram, rom, firstSlot, slog.New(slog.DiscardHandler))
	require.NoError(t, s.Map())
	return s, ram, slots
}

func TestROMAlias(t *testing.T) {
	s, _, _ := newTest(t)
	// The image's last 128 KiB end at 1 MiB: 0xe0000 is image offset 64 KiB.
	r, ok := s.romAt(0xe0000, 2)
	require.True(t, ok)
	require.Equal(t, []byte{0, 1}, r)
	r, ok = s.romAt(0xfffff, 1)
	require.True(t, ok)
	require.Equal(t, byte(0xff), r[0])
	_, ok = s.romAt(0xdfffe, 4)
	require.False(t, ok, "below the alias")
	_, ok = s.romAt(0xffffe, 4)
	require.False(t, ok, "past 1 MiB")
}

// TestMapAtReset: at reset the segments the ROM alias covers are mapped
// read-only onto the image, the others not at all.
func TestMapAtReset(t *testing.T) {
	_, _, slots := newTest(t)
	require.Equal(t, 5, len(slots), "the alias 0xe0000-0xfffff: four 16 KiB segments and the BIOS segment")
	bios := slots[firstSlot+12]
	require.Equal(t, uint64(0xf0000), bios.gpa)
	require.True(t, bios.readOnly)
	require.Equal(t, byte(0x00), bios.host[0], "image offset 128 KiB")
	require.Equal(t, 64<<10, len(bios.host))
	_, mapped := slots[firstSlot]
	require.False(t, mapped, "0xc0000 is below the alias")
}

func TestAreaSemantics(t *testing.T) {
	s, ram, _ := newTest(t)
	a := s.Area()
	at := func(gpa uint64) uint64 { return gpa - AreaBase }
	read := func(gpa uint64, n int) []byte {
		b := make([]byte, n)
		a.Read(at(gpa), b)
		return b
	}
	// VGA window: all ones, writes vanish.
	a.Write(at(0xb8000), []byte{1, 2})
	require.Equal(t, []byte{0xff, 0xff}, read(0xb8000, 2))
	require.False(t, bytes.ContainsAny(ram[layout.LegacyVGA:layout.ShadowEnd], "\x01\x02"), "a VGA write reached RAM")

	// At reset (PAM 0): ROM where the image is aliased, else the bus;
	// writes are dropped.
	require.Equal(t, []byte{0x10, 0x11}, read(0xf0010, 2))
	require.Equal(t, []byte{0xff}, read(0xc0000, 1))
	a.Write(at(0xf0010), []byte{0xaa})
	require.Equal(t, []byte{0x10}, read(0xf0010, 1))

	// Write-only shadowing (as firmware copies itself): reads still come
	// from ROM, writes reach RAM.
	bios := s.segment(0xf0000)
	bios.state = writeRAM
	a.Write(at(0xf0010), []byte{0xaa, 0xbb})
	require.Equal(t, []byte{0x10, 0x11}, read(0xf0010, 2))
	// Read-only RAM (locked after the copy): reads RAM, writes dropped.
	bios.state = readRAM
	require.Equal(t, []byte{0xaa, 0xbb}, read(0xf0010, 2))
	a.Write(at(0xf0010), []byte{0x55})
	require.Equal(t, []byte{0xaa}, read(0xf0010, 1))
	// An access straddling two segments follows each one's state.
	s.segment(0xc4000).state = readRAM | writeRAM
	a.Write(at(0xc3fff), []byte{1, 2})
	require.Equal(t, []byte{0xff, 2}, read(0xc3fff, 2))
}

// TestPAMWritten: register writes decode per nibble and remap exactly the
// segments whose state changed, with the mapping each state calls for.
func TestPAMWritten(t *testing.T) {
	s, ram, slots := newTest(t)
	regs := []byte{0x30, 0x01, 0x20, 0, 0, 0, 0x13}
	s.PAMWritten(regs, 0, len(regs))
	st := func(gpa uint64) byte { return s.segment(gpa).state }
	require.Equal(t, byte(3), st(0xf0000), "PAM0 high nibble: BIOS segment")
	require.Equal(t, byte(1), st(0xc0000), "PAM1 low nibble: 0xc0000")
	require.Equal(t, byte(0), st(0xc4000), "PAM1 high nibble: 0xc4000")
	require.Equal(t, byte(3), st(0xe8000), "PAM6 low nibble: 0xe8000")
	require.Equal(t, byte(1), st(0xec000), "PAM6 high nibble: 0xec000")

	bios := slots[firstSlot+12]
	require.False(t, bios.readOnly, "read-write RAM")
	require.Equal(t, &ram[0xf0000], &bios.host[0], "mapped onto guest RAM")
	c0 := slots[firstSlot]
	require.True(t, c0.readOnly, "read-only RAM")
	require.Equal(t, &ram[0xc0000], &c0.host[0])
	_, mapped := slots[firstSlot+1]
	require.False(t, mapped, "0xc4000: neither RAM nor ROM")

	// Locking the BIOS segment (read RAM, no writes) remaps it read-only.
	regs[0] = 0x10
	s.PAMWritten(regs, 0, 1)
	require.True(t, slots[firstSlot+12].readOnly)
	require.Equal(t, &ram[0xf0000], &slots[firstSlot+12].host[0])
}
