package fwcfg

import (
	"encoding/binary"
	"testing"
)

// FuzzDMA runs guest-chosen descriptors (control, length, address, and the
// descriptor address itself) against a device with read-only and writable
// files over small fake RAM: nothing may panic, the status written back is
// 0 or the error bit, and bytes outside the descriptor and its target never
// change.
func FuzzDMA(f *testing.F) {
	f.Add(uint32(FirstFile)<<16|DMASelect|DMARead, uint32(8), uint64(0x200), uint64(0x100))
	f.Add(uint32(FirstFile+1)<<16|DMASelect|DMAWrite, uint32(4), uint64(0x200), uint64(0x100))
	f.Add(uint32(FirstFile)<<16|DMASelect|DMAWrite, uint32(4), uint64(0x200), uint64(0x100))
	f.Add(uint32(FileDir)<<16|DMASelect|DMASkip|DMARead, uint32(0xffffffff), uint64(0xff0), uint64(0x100))
	f.Add(uint32(0xffffffff), uint32(0xffffffff), ^uint64(0), uint64(0xff8))
	f.Fuzz(func(t *testing.T, control, length uint32, addr, desc uint64) {
		m := &fakeMem{make([]byte, 4096)}
		d := New(m)
		if err := d.AddFile("ro", []byte("read-only data"), false); err != nil {
			t.Fatal(err)
		}
		if err := d.AddFile("rw", make([]byte, 32), true); err != nil {
			t.Fatal(err)
		}
		if desc+DMADescriptorSize <= 4096 {
			descriptor(m, desc, control, length, addr)
		}
		before := append([]byte(nil), m.b...)
		d.Write(offDMA, binary.BigEndian.AppendUint64(nil, desc))
		if desc+4 <= 4096 && desc < 4096 {
			if s := status(m, desc); s != 0 && s != DMAError {
				t.Fatalf("status %#x", s)
			}
		}
		for i := range m.b {
			if m.b[i] == before[i] {
				continue
			}
			inDesc := uint64(i) >= desc && uint64(i) < desc+4
			inTarget := uint64(i) >= addr && uint64(i)-addr < uint64(length)
			if !inDesc && !inTarget {
				t.Fatalf("byte %#x changed outside the descriptor and its target", i)
			}
		}
	})
}
