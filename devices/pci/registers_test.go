package pci

import (
	"errors"
	"testing"
)

func TestAddRegisters(t *testing.T) {
	b, err := NewBus(nil, nil, nil)
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

func TestAddFunction(t *testing.T) {
	b, err := NewBus(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f0, err := NewFunction("isa", Identity{Vendor: 0x8086, Device: 0x7000, Class: 0x060100}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f3, err := NewFunction("pm", Identity{Vendor: 0x8086, Device: 0x7113, Class: 0x068000}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddFunction(1, 3, f3); !errors.Is(err, ErrBusFull) {
		t.Fatalf("function 3 before function 0: %v", err)
	}
	if err := b.AddAt(1, f0); err != nil {
		t.Fatal(err)
	}
	if err := b.AddFunction(1, 3, f3); err != nil {
		t.Fatal(err)
	}
	if err := b.AddFunction(1, 8, f3); !errors.Is(err, ErrInvalid) {
		t.Fatalf("function 8: %v", err)
	}
	id := make([]byte, 4)
	b.ReadConfig(0, 1, 3, 0, id)
	if id[2] != 0x13 || id[3] != 0x71 {
		t.Fatalf("01.3 reads % x", id)
	}
	hdr := []byte{0}
	b.ReadConfig(0, 1, 0, regHeaderType, hdr)
	if hdr[0]&headerMultiFunction == 0 {
		t.Fatal("function 0 does not say multi-function")
	}
	b.ReadConfig(0, 1, 2, 0, id)
	if id[0] != 0xff || id[1] != 0xff {
		t.Fatalf("absent 01.2 reads % x", id)
	}
	// Through the ports: 0x80000000 | dev 1 << 11 | fn 3 << 8.
	ports := b.ConfigPorts()
	ports.Write(0, []byte{0x00, 0x0b, 0x00, 0x80})
	ports.Read(4, id)
	if id[0] != 0x86 || id[2] != 0x13 {
		t.Fatalf("01.3 through 0xcf8 reads % x", id)
	}
}
