package i8042

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
)

// op is one port access: a write of val, or a read expecting want.
type op struct {
	write     bool
	off       uint64
	val, want byte
}

func w(off uint64, v byte) op    { return op{write: true, off: off, val: v} }
func r(off uint64, want byte) op { return op{off: off, want: want} }

const statusIdle = stUnlocked | stSYS

func TestCommands(t *testing.T) {
	tests := []struct {
		name   string
		ops    []op
		resets int
	}{
		{"power-on status", []op{r(offCommand, statusIdle)}, 0},
		{"self test", []op{
			w(offCommand, cmdSelfTest), r(offCommand, statusIdle|stCMD|stOBF), r(offData, selfTestOK),
			r(offCommand, statusIdle|stCMD), r(offData, selfTestOK), // drained: the last byte again
		}, 0},
		{"read command byte", []op{w(offCommand, cmdReadCTR), r(offData, ctrDefault)}, 0},
		{"write command byte", []op{
			w(offCommand, cmdWriteCTR), w(offData, 0x03), r(offCommand, stUnlocked), // SYS follows CTR bit 2
			w(offCommand, cmdReadCTR), r(offData, 0x03),
			w(offCommand, cmdSelfTest), r(offData, selfTestOK), r(offCommand, statusIdle|stCMD),
		}, 0},
		{"aux and keyboard enable bits", []op{
			w(offCommand, cmdDisableAux), w(offCommand, cmdDisableKbd), w(offCommand, cmdReadCTR),
			r(offData, ctrDefault|ctrAuxDis|ctrKbdDis),
			w(offCommand, cmdEnableAux), w(offCommand, cmdReadCTR), r(offData, ctrDefault|ctrKbdDis),
			w(offCommand, cmdEnableKbd), w(offCommand, cmdReadCTR), r(offData, ctrDefault),
		}, 0},
		{"keyboard interface test", []op{w(offCommand, cmdTestKbd), r(offData, portTestOK)}, 0},
		{"output port", []op{
			w(offCommand, cmdReadOutPort), r(offData, outPortReset|outPortA20),
			w(offCommand, cmdWriteOutPort), w(offData, outPortReset), // A20 off, no reset
			w(offCommand, cmdReadOutPort), r(offData, outPortReset),
		}, 0},
		{"output port reset", []op{w(offCommand, cmdWriteOutPort), w(offData, outPortA20)}, 1},
		{"pulse reset", []op{w(offCommand, cmdPulseReset)}, 1},
		{"pulse with reset masked", []op{w(offCommand, 0xff), w(offCommand, 0xf1)}, 0},
		{"pulse other form", []op{w(offCommand, 0xf0)}, 1},
		{"keyboard output echo", []op{w(offCommand, cmdWriteKbdOut), w(offData, 0x1c), r(offCommand, statusIdle|stOBF), r(offData, 0x1c)}, 0},
		{"keyboard reset: ACK, then self test passed", []op{
			w(offData, kbdReset), r(offCommand, statusIdle|stOBF), r(offData, kbdAck),
			r(offCommand, statusIdle|stOBF), r(offData, kbdSelfTestOK), r(offCommand, statusIdle),
			w(offCommand, cmdReadCTR), r(offCommand, statusIdle|stCMD|stOBF), r(offData, ctrDefault),
		}, 0},
		{"keyboard enable (OVMF's probe) is acknowledged", []op{w(offData, 0xf4), r(offCommand, statusIdle|stOBF), r(offData, kbdAck), r(offCommand, statusIdle)}, 0},
		{"keyboard ID", []op{w(offData, kbdGetID), r(offData, kbdAck), r(offData, 0xab), r(offData, 0x83), r(offCommand, statusIdle)}, 0},
		{"keyboard echo", []op{w(offData, kbdEcho), r(offData, kbdEcho), r(offCommand, statusIdle)}, 0},
		{"keyboard parameters are acknowledged", []op{
			w(offData, kbdSetLEDs), r(offData, kbdAck), w(offData, 0x07), r(offData, kbdAck),
			w(offData, kbdScanSet), r(offData, kbdAck), w(offData, 0x02), r(offData, kbdAck), r(offCommand, statusIdle),
			w(offData, kbdScanSet), r(offData, kbdAck), w(offData, 0x00), r(offData, kbdAck), r(offData, kbdScanSet2),
			w(offData, kbdTypematic), w(offData, kbdReset), r(offData, kbdAck), r(offCommand, statusIdle), // a parameter, not a reset
		}, 0},
		{"a new keyboard byte drops the rest of an answer", []op{
			w(offData, kbdReset), w(offData, kbdEcho), r(offData, kbdEcho), r(offCommand, statusIdle),
		}, 0},
		{"absent mouse answers with a time-out on the aux port", []op{
			w(offCommand, cmdWriteAux), w(offData, 0xf4), r(offCommand, statusIdle|stOBF|stAuxData|stTimeout),
			r(offData, noDevice),
		}, 0},
		{"mouse output echo", []op{w(offCommand, cmdWriteAuxOut), w(offData, 0x08), r(offCommand, statusIdle|stOBF|stAuxData), r(offData, 0x08)}, 0},
		{"command cancels pending data", []op{
			w(offCommand, cmdWriteCTR), w(offCommand, cmdReadCTR), w(offData, 0x00), // keyboard data now
			r(offData, kbdAck), w(offCommand, cmdReadCTR), r(offData, ctrDefault),
		}, 0},
		{"other ports", []op{r(1, 0xff), r(2, 0xff), r(3, 0xff), w(1, 0), w(3, 0), r(offCommand, statusIdle)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resets := 0
			c := New(func() { resets++ })
			for i, o := range tt.ops {
				b := []byte{o.val}
				if o.write {
					c.Write(o.off, b)
					continue
				}
				c.Read(o.off, b)
				if b[0] != o.want {
					t.Fatalf("op %d: read port %d = %#02x, want %#02x", i, o.off, b[0], o.want)
				}
			}
			if resets != tt.resets {
				t.Fatalf("resets %d, want %d", resets, tt.resets)
			}
		})
	}
}

func TestWideAccess(t *testing.T) {
	c := New(nil) // a nil reset is allowed
	c.Write(offCommand, []byte{cmdPulseReset, 0})
	c.Write(offCommand, []byte{cmdSelfTest, 0, 0, 0})
	got := make([]byte, 2)
	c.Read(offData, got)
	if !bytes.Equal(got, []byte{selfTestOK, 0xff}) {
		t.Fatalf("wide data read %x", got)
	}
	c.Read(offCommand, got)
	if !bytes.Equal(got, []byte{statusIdle | stCMD, 0xff}) {
		t.Fatalf("wide status read %x", got)
	}
	c.Read(^uint64(0), got)
	if !bytes.Equal(got, []byte{0xff, 0xff}) {
		t.Fatalf("wrapping read %x", got)
	}
}

// TestResetOutsideLock checks reset may call back into the controller.
func TestResetOutsideLock(t *testing.T) {
	var c *Controller
	var status byte
	c = New(func() {
		b := []byte{0}
		c.Read(offCommand, b)
		status = b[0]
	})
	c.Write(offCommand, []byte{cmdPulseReset})
	if status != statusIdle|stCMD {
		t.Fatalf("status seen from reset %#x", status)
	}
}

func TestConcurrentAccess(t *testing.T) {
	var resets atomic.Int32
	c := New(func() { resets.Add(1) })
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			b := []byte{0}
			for range 500 {
				c.Write(offCommand, []byte{cmdReadCTR})
				c.Read(offData, b)
				c.Read(offCommand, b)
			}
		})
	}
	wg.Wait()
	if resets.Load() != 0 {
		t.Fatal("spurious reset")
	}
}
