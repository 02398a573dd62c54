package ring

import (
	"encoding/binary"
	"testing"
)

// FuzzReader lets the guest write anything into a 3-page ring (header and
// two data pages, so packets wrap) and moves the write index: the reader
// must never panic, never return more bytes than the ring holds, and stop.
func FuzzReader(f *testing.F) {
	seed := make([]byte, 64)
	binary.LittleEndian.PutUint16(seed[0:], TypeDataInband)
	binary.LittleEndian.PutUint16(seed[2:], 2)
	binary.LittleEndian.PutUint16(seed[4:], 4)
	f.Add(seed, uint32(40), uint32(0))
	f.Add(seed, uint32(8184), uint32(8160))
	f.Add([]byte{}, uint32(0xffffffff), uint32(0))
	f.Fuzz(func(t *testing.T, data []byte, write, read uint32) {
		m := make(flatMem, 3*PageSize)
		copy(m[PageSize:], data)
		binary.LittleEndian.PutUint32(m[offRead:], read)
		r, err := NewReader(m, pfns(0, 3))
		if err != nil {
			return
		}
		binary.LittleEndian.PutUint32(m[offWrite:], write)
		binary.LittleEndian.PutUint32(m[offFeatures:], 1)
		binary.LittleEndian.PutUint32(m[offPendingSnd:], write^read)
		total := 0
		for range 2 * PageSize {
			p, ok, err := r.Next(nil)
			if err != nil || !ok {
				break
			}
			total += DescriptorSize + len(p.Header) + len(p.Payload) + trailerSize
			if total > int(r.Size()) {
				t.Fatalf("read %d bytes from a %d-byte ring", total, r.Size())
			}
		}
		r.Done()
	})
}

// FuzzWriter lets the guest set the host->guest ring's read index and
// interrupt mask between writes of fuzzer-sized packets.
func FuzzWriter(f *testing.F) {
	f.Add(uint32(0), uint16(100), uint16(8), uint32(0))
	f.Add(uint32(4096), uint16(9000), uint16(0), uint32(1))
	f.Fuzz(func(t *testing.T, read uint32, plen, hlen uint16, mask uint32) {
		m := make(flatMem, 3*PageSize)
		w, err := NewWriter(m, pfns(0, 3))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			binary.LittleEndian.PutUint32(m[offRead:], read+uint32(i)*8)
			binary.LittleEndian.PutUint32(m[offIntMask:], mask)
			if _, err := w.Write(TypeDataInband, 0, 1, make([]byte, hlen%64), make([]byte, plen)); err != nil && w.Err() != nil {
				return
			}
		}
	})
}
