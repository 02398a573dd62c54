package kvm

import (
	"encoding/binary"
	"testing"
)

func TestCPUIDGetSet(t *testing.T) {
	c := &CPUID{}
	c.Set(CPUIDEntry{Function: 1, EAX: 0x10})
	c.Set(CPUIDEntry{Function: 7, Index: 0, Flags: CPUIDFlagSignificantIndex, EBX: 0x70})
	c.Set(CPUIDEntry{Function: 7, Index: 1, Flags: CPUIDFlagSignificantIndex, EAX: 0x71})
	if len(c.Entries) != 3 {
		t.Fatalf("%d entries after three distinct Sets, want 3", len(c.Entries))
	}
	// Index is ignored for leaves without the significant-index flag.
	if e := c.Get(1, 5); e == nil || e.EAX != 0x10 {
		t.Errorf("Get(1, 5) = %+v, want leaf 1", e)
	}
	if e := c.Get(7, 1); e == nil || e.EAX != 0x71 {
		t.Errorf("Get(7, 1) = %+v, want sub-leaf 1", e)
	}
	if e := c.Get(7, 2); e != nil {
		t.Errorf("Get(7, 2) = %+v, want nil", e)
	}
	if e := c.Get(0x40000000, 0); e != nil {
		t.Errorf("Get of absent leaf = %+v, want nil", e)
	}
	c.Set(CPUIDEntry{Function: 1, EAX: 0x11})
	c.Set(CPUIDEntry{Function: 7, Index: 1, Flags: CPUIDFlagSignificantIndex, EAX: 0x72})
	if len(c.Entries) != 3 || c.Get(1, 0).EAX != 0x11 || c.Get(7, 1).EAX != 0x72 {
		t.Fatalf("Set did not replace in place: %+v", c.Entries)
	}
	// Get aliases the slice so callers can edit a leaf.
	c.Get(7, 0).EBX = 0x77
	if c.Entries[1].EBX != 0x77 {
		t.Errorf("edit through Get did not stick")
	}
}

func TestCPUID2RoundTrip(t *testing.T) {
	in := &CPUID{Entries: []CPUIDEntry{
		{Function: 0, EAX: 0xd, EBX: 1, ECX: 2, EDX: 3},
		{Function: 4, Index: 2, Flags: CPUIDFlagSignificantIndex, EAX: 0xaa},
	}}
	buf := encodeCPUID2(in)
	if buf[0] != 2 || len(buf) != 2+2*10 {
		t.Fatalf("encoded header nent %d len %d words", buf[0], len(buf))
	}
	if buf[2] != 0 || buf[5] != 0xd || buf[12] != 4 || buf[13] != 2 {
		t.Errorf("entries not at kvm_cpuid2 offsets: %#x", buf)
	}
	out, err := decodeCPUID2(buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Entries) != 2 || out.Entries[0] != in.Entries[0] || out.Entries[1] != in.Entries[1] {
		t.Fatalf("round trip = %+v, want %+v", out.Entries, in.Entries)
	}
	if empty := encodeCPUID2(&CPUID{}); len(empty) != 2 || empty[0] != 0 {
		t.Errorf("empty CPUID encodes to %v", empty)
	}
}

func TestDecodeCPUID2Rejects(t *testing.T) {
	if _, err := decodeCPUID2([]uint32{1}); err == nil {
		t.Error("short header accepted")
	}
	buf := newCPUID2Buf(2)
	buf[0] = 3
	if _, err := decodeCPUID2(buf); err == nil {
		t.Error("nent beyond the buffer accepted")
	}
	buf[0] = 0xffffffff
	if _, err := decodeCPUID2(buf); err == nil {
		t.Error("huge nent accepted")
	}
}

// FuzzDecodeCPUID2 feeds arbitrary kvm_cpuid2 buffers to the decoder: it must
// never panic, and what it accepts must re-encode to the same entries.
func FuzzDecodeCPUID2(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 8))
	f.Add(append([]byte{1, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 40)...))
	f.Add(append([]byte{2, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 40)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		buf := make([]uint32, len(raw)/4)
		for i := range buf {
			buf[i] = binary.LittleEndian.Uint32(raw[4*i:])
		}
		c, err := decodeCPUID2(buf)
		if err != nil {
			return
		}
		if uint64(len(c.Entries)) != uint64(buf[0]) {
			t.Fatalf("decoded %d entries, nent %d", len(c.Entries), buf[0])
		}
		again, err := decodeCPUID2(encodeCPUID2(c))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		for i := range c.Entries {
			if again.Entries[i] != c.Entries[i] {
				t.Fatalf("entry %d changed in round trip", i)
			}
		}
	})
}
