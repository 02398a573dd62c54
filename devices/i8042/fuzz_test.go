package i8042

import "testing"

// FuzzPorts feeds the controller hostile (op, offset, width, value) sequences:
// it must never panic, never report an input buffer busy (commands complete at
// once), keep OBF in step with its output buffer, and reset only on writes.
func FuzzPorts(f *testing.F) {
	f.Add([]byte{1, 4, 0, cmdSelfTest, 0, 0, 0, 0, 1, 4, 0, cmdWriteCTR, 1, 0, 0, 0x47, 0, 4, 0, 0})
	f.Add([]byte{1, 4, 0, cmdWriteOutPort, 1, 0, 0, 0x02, 1, 4, 1, cmdPulseReset})
	f.Add([]byte{1, 4, 0, cmdWriteKbdOut, 1, 0, 2, 0x1c, 0, 0, 2, 0, 0, 3, 2, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		resets := 0
		c := New(func() { resets++ })
		for len(ops) >= 4 {
			isWrite, off, width, val := ops[0]&1 == 1, uint64(ops[1]%(Size+2)), []int{1, 2, 4}[ops[2]%3], ops[3]
			ops = ops[4:]
			data := make([]byte, width)
			before := resets
			if isWrite {
				for i := range data {
					data[i] = val
				}
				c.Write(off, data)
			} else {
				c.Read(off, data)
				if resets != before {
					t.Fatal("a read reset the machine")
				}
			}
			c.mu.Lock()
			full := c.outFull
			c.mu.Unlock()
			st := []byte{0}
			c.Read(offCommand, st)
			if st[0]&0x02 != 0 {
				t.Fatalf("status %#x reports input buffer full", st[0])
			}
			if (st[0]&stOBF != 0) != full {
				t.Fatalf("status %#x disagrees with output buffer full=%v", st[0], full)
			}
		}
	})
}
