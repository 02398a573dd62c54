package pci

import (
	"errors"
	"testing"
)

func TestAddRegisters(t *testing.T) {
	b, err := NewBus(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	hb := b.HostBridge()
	var seen []byte
	if err := hb.AddRegisters(0x59, []byte{0, 0}, []byte{0xf0, 0x33}, func(regs []byte, o, n int) {
		seen = append([]byte(nil), regs...)
	}); err != nil {
		t.Fatal(err)
	}
	// A dword write around the registers changes only their writable bits.
	b.WriteConfig(0, 0, 0, 0x58, []byte{0xff, 0xff, 0xff, 0xff})
	got := make([]byte, 4)
	b.ReadConfig(0, 0, 0, 0x58, got)
	if got[0] != 0 || got[1] != 0xf0 || got[2] != 0x33 || got[3] != 0 {
		t.Fatalf("config after write: % x", got)
	}
	if len(seen) != 2 || seen[0] != 0xf0 || seen[1] != 0x33 {
		t.Fatalf("callback saw % x", seen)
	}
	for _, c := range []struct{ off, n int }{{0x30, 2}, {0xff, 2}, {0x5a, 1}} {
		if err := hb.AddRegisters(c.off, make([]byte, c.n), make([]byte, c.n), nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("registers at %#x+%d: %v", c.off, c.n, err)
		}
	}
}
