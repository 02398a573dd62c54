package pci

import (
	"encoding/binary"
	"testing"

	"github.com/vmmdev/vmm/devices/bus"
)

type nopSender struct{}

func (nopSender) SendMSI(_ int, lo, hi, data uint32) error { return nil }

// FuzzConfigSpace drives configuration space through both mechanisms with a
// script of guest accesses. Nothing may panic, the identity must survive,
// and every decoded BAR must be registered on the MMIO bus exactly where the
// function says it is.
func FuzzConfigSpace(f *testing.F) {
	f.Add([]byte{0, 0x10, 4, 0xff, 0xff, 0xff, 0xff, 0, 0x04, 2, 0x02, 0})
	f.Add([]byte{1, 0xf8, 4, 0, 0x08, 0, 0x80, 1, 0xfc, 4, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0x42, 2, 0, 0xc0, 2, 0, 0x1c, 4, 1, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		mmio := bus.New("mmio")
		b, err := NewBus(mmio, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := NewMSIX(4, nopSender{})
		fn, err := NewFunction("f", Identity{Vendor: 0x1af4, Device: 0x1041},
			[]BAR{{Index: 0, Size: 0x4000, Dev: msixBAR{m}}, {Index: 1, Size: 0x1000, Dev: msixBAR{m}}, {Index: 2, Kind: BARMem64, Size: 0x2000, Dev: msixBAR{m}}},
			[]Capability{m.Capability(0, 0x1000, 0x1800)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Add(fn); err != nil {
			t.Fatal(err)
		}
		ports, ecam := b.ConfigPorts(), b.ECAM()
		for len(script) >= 3 {
			kind, off, n := script[0], uint64(script[1]), int(script[2]%9)
			script = script[3:]
			data := make([]byte, n)
			copy(data, script)
			script = script[min(n, len(script)):]
			switch kind % 6 {
			case 0:
				ecam.Write(1<<15|off|uint64(kind&0xf0)<<4, data)
			case 1:
				ports.Write(off%8, data)
			case 2:
				ports.Read(off%8, data)
			case 3:
				ecam.Read(1<<15|off, data)
			case 4:
				m.Signal(int(off % 8))
			case 5:
				mmio.Write(0xc0000000|off<<4, data)
			}
		}
		d := make([]byte, 4)
		b.ReadConfig(0, 1, 0, 0, d)
		if binary.LittleEndian.Uint32(d) != 0x10411af4 {
			t.Fatalf("identity changed: % x", d)
		}
		for i := range 6 {
			addr, mapped := fn.BARAddress(i)
			if !mapped {
				continue
			}
			if !mmio.Read(addr, make([]byte, 1)) {
				t.Fatalf("BAR %d decoded at %#x but not on the bus", i, addr)
			}
		}
	})
}
