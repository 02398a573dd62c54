package queue

import (
	"encoding/binary"
	"testing"
)

// FuzzWalk lets the fuzzer write the descriptor table, the available ring
// and an indirect table, then drains the queue: Next must never panic, never
// return a buffer outside guest memory, and terminate.
func FuzzWalk(f *testing.F) {
	seed := make([]byte, 0x100)
	binary.LittleEndian.PutUint64(seed[0:], tData)
	binary.LittleEndian.PutUint32(seed[8:], 8)
	binary.LittleEndian.PutUint16(seed[12:], descNext)
	binary.LittleEndian.PutUint16(seed[14:], 1)
	binary.LittleEndian.PutUint64(seed[16:], 0x6000)
	binary.LittleEndian.PutUint32(seed[24:], 32)
	binary.LittleEndian.PutUint16(seed[28:], descIndirect)
	f.Add(seed, uint16(2), uint8(3), true, true)
	f.Add([]byte{}, uint16(1), uint8(0), false, false)
	f.Add(make([]byte, 64), uint16(0xffff), uint8(4), true, false)
	f.Fuzz(func(t *testing.T, desc []byte, availIdx uint16, sizeLog uint8, eventIdx, indirect bool) {
		size := uint16(1) << (sizeLog % 8)
		m := make(flatMem, 0x10000)
		copy(m[tDesc:tDesc+16*int(size)], desc)
		// The tail of the input doubles as the avail ring and an indirect table.
		if len(desc) > 16*int(size) {
			rest := desc[16*int(size):]
			copy(m[tAvail+4:tAvail+4+2*int(size)+2], rest)
			copy(m[0x6000:0x7000], rest)
		}
		binary.LittleEndian.PutUint16(m[tAvail+2:], availIdx)
		q, err := New(m, Config{Size: size, Desc: tDesc, Avail: tAvail, Used: tUsed, EventIdx: eventIdx, Indirect: indirect})
		if err != nil {
			t.Fatal(err)
		}
		for range int(size) + 1 {
			c, ok, err := q.Next()
			if err != nil || !ok {
				break
			}
			if len(c.Readable)+len(c.Writable) > int(size)+MaxSize {
				t.Fatalf("chain of %d buffers", len(c.Readable)+len(c.Writable))
			}
			for _, b := range append(c.Readable, c.Writable...) {
				if len(b) == 0 {
					t.Fatal("zero-length buffer returned")
				}
			}
			if err := q.Push(c.Head, uint32(c.WritableLen())); err != nil {
				t.Fatal(err)
			}
			q.NeedInterrupt()
		}
		q.EnableNotify()
	})
}
