package pflash

import (
	"bytes"
	"testing"
)

// FuzzCommands drives a writable and a read-only chip with hostile access
// sequences (op, offset, width, value): commands out of order, data past
// the end, wide accesses. Neither may panic; the read-only chip never
// changes; the writable chip's store always equals its contents and keeps
// its size; the mode hook always matches the read mode.
func FuzzCommands(f *testing.F) {
	// OVMF's probe, a variable byte program, a block erase.
	f.Add([]byte{1, 0, 0, cmdClearStatus, 0, 0, 0, 0, 1, 0, 0, cmdReadStatus, 0, 0, 0, 0,
		1, 3, 0, cmdProgram, 1, 3, 0, 0x5a, 1, 0, 0, cmdReadArray,
		1, 9, 0, cmdBlockErase, 1, 9, 0, cmdConfirm, 0, 9, 2, 0})
	// Buffered write, CFI, ID, lock.
	f.Add([]byte{1, 0x20, 0, cmdBufferedWrite, 1, 0x20, 0, 3, 1, 0x20, 2, 7, 1, 0x20, 0, cmdConfirm,
		1, 0, 0, cmdCFIQuery, 0, 0x10, 1, 0, 1, 0, 0, cmdReadID, 0, 1, 0, 0, 1, 0, 0, cmdLockSetup, 1, 0, 0, lockBlock})
	f.Fuzz(func(t *testing.T, ops []byte) {
		size := 2 * BlockSize
		rwData := pattern(size)
		st := &memStore{b: bytes.Clone(rwData)}
		rw, err := New("vars", rwData, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		roData := pattern(size)
		ro, err := New("code", roData, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		arrays := map[*Chip]bool{rw: true, ro: true}
		for _, c := range []*Chip{rw, ro} {
			c.SetModeHook(func(readArray bool) {
				if arrays[c] == readArray {
					t.Fatalf("hook told %v twice", readArray)
				}
				arrays[c] = readArray
			})
		}
		for len(ops) >= 4 {
			op, width, val := ops[0]%4, []int{1, 2, 4, 8}[ops[2]%4], ops[3]
			// Offsets cover the chip, its last bytes and beyond.
			off := uint64(ops[1]) * 67
			if ops[1] >= 0xf0 {
				off = uint64(size) - uint64(ops[1]-0xf0)
			}
			ops = ops[4:]
			data := make([]byte, width)
			c := rw
			if op >= 2 {
				c = ro
			}
			if op%2 == 0 {
				c.Read(off, data)
				continue
			}
			for i := range data {
				data[i] = val + byte(i)
			}
			c.Write(off, data)
			if arrays[c] != (c.mode == modeArray) {
				t.Fatalf("hook says read array %v, mode %v", arrays[c], c.mode)
			}
		}
		if !bytes.Equal(ro.Data(), pattern(size)) {
			t.Fatal("read-only chip changed")
		}
		if !bytes.Equal(st.b, rw.Data()) || len(st.b) != size {
			t.Fatal("store and contents differ")
		}
	})
}
