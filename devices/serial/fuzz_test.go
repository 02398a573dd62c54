package serial

import "testing"

// FuzzRegisters feeds the UART hostile (op, offset, width, value) sequences and
// checks the invariants a driver depends on after every access.
func FuzzRegisters(f *testing.F) {
	// Linux's probe, a loopback overrun, and interrupt setup as seeds.
	f.Add([]byte{1, 7, 0, 0xa5, 0, 7, 0, 0, 1, 4, 0, 0x1a, 0, 6, 0, 0, 1, 2, 0, 0x01, 0, 2, 0, 0})
	f.Add([]byte{1, 4, 0, 0x10, 1, 0, 2, 0x41, 1, 1, 0, 0x0f, 0, 2, 0, 0, 0, 5, 1, 0, 2, 0, 0, 0x61})
	f.Add([]byte{1, 3, 0, 0x80, 1, 0, 1, 0x01, 1, 3, 0, 0x03, 1, 4, 0, 0x0b, 1, 1, 0, 0x03, 2, 0, 0, 0x0d, 0, 2, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		line := &fakeLine{}
		u := New(line, nil)
		for len(ops) >= 4 {
			op, off, width, val := ops[0]%4, uint64(ops[1]%(Size+2)), []int{1, 2, 4}[ops[2]%3], ops[3]
			ops = ops[4:]
			data := make([]byte, width)
			switch op {
			case 0:
				u.Read(off, data)
				if off <= regIIR && regIIR < off+uint64(width) {
					iir := data[regIIR-off]
					if iir&0x30 != 0 || (iir&0xc0 != 0 && iir&0xc0 != 0xc0) {
						t.Fatalf("IIR %#x has invalid bits", iir)
					}
					if id := iir & 0x0f; id != iirNone && id != iirMS && id != iirTHRE && id != iirRDA && id != iirRLS {
						t.Fatalf("IIR id %#x", id)
					}
				}
			case 1:
				for i := range data {
					data[i] = val + byte(i)
				}
				u.Write(off, data)
			case 2:
				u.Input(data)
			case 3:
				select {
				case <-u.InputSpace():
				default:
				}
			}
			u.mu.Lock()
			if u.rxLen < 0 || u.rxLen > FIFOSize || u.rxHead < 0 || u.rxHead >= FIFOSize {
				t.Fatalf("FIFO state head %d len %d", u.rxHead, u.rxLen)
			}
			if u.ier&^ierMask != 0 || u.mcr&^mcrMask != 0 {
				t.Fatalf("IER %#x MCR %#x hold bits that do not exist", u.ier, u.mcr)
			}
			want := u.pendingID() != iirNone && u.mcr&(mcrOUT2|mcrLoop) == mcrOUT2
			u.mu.Unlock()
			if line.high() != want {
				t.Fatalf("irq line %v, want %v", line.high(), want)
			}
		}
	})
}
