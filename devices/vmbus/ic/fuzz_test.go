package ic

import (
	"testing"

	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// FuzzAnswers sends the shutdown, heartbeat and time sync services guest answers
// made of fuzzer bytes under transaction ids 1-4 (the ones the host uses
// first): nothing may panic, and a service is ready only with versions
// it offered.
func FuzzAnswers(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 5, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0}, uint8(1), true)
	f.Add([]byte{}, uint8(2), false)
	f.Fuzz(func(t *testing.T, msg []byte, id uint8, shutdown bool) {
		h, s := NewHeartbeat(nil), NewShutdown(nil)
		ts := NewTimeSync(nil, func() uint64 { return 1 })
		r, offers := newRig(t, h, s, ts)
		o := offers[0]
		if shutdown {
			o = offers[1]
		}
		if id%5 == 4 {
			o = offers[2]
		}
		c, _, err := r.g.Open(o, 4, 4, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			c.Send(ring.TypeDataInband, 0, uint64(id%4)+uint64(i), msg)
			h.Beat()
			s.Request(PowerOff, "x")
			ts.Sync()
			for {
				if _, ok := c.In.Read(); !ok {
					break
				}
			}
		}
		for _, st := range []Status{h.Status().Status, s.Status().Status, ts.Status().Status} {
			if st.State == StateReady && (st.Framework != "3.0" && st.Framework != "1.0") {
				t.Fatalf("ready with framework %s", st.Framework)
			}
		}
	})
}
