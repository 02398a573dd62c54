package ic

import (
	"encoding/binary"
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

// FuzzKVPEnumerate parses fuzzer bytes as a guest's KVP ENUMERATE answer,
// and sends them to a negotiated KVP service as the answer to each of its
// requests: nothing may panic, a parsed key is never empty, and key and
// value stay within what their sizes allow.
func FuzzKVPEnumerate(f *testing.F) {
	ok := make([]byte, kvpBody)
	ok[0] = KVPOpEnumerate
	ok[8], ok[12], ok[16] = regSZ, 4, 2
	ok[20], ok[20+KVPMaxKey] = 'k', 'v'
	f.Add(ok, uint32(0))
	f.Add(ok[:30], uint32(kvpNoMore))
	f.Add([]byte{3, 2, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0xff, 0xff, 0, 0}, uint32(0))
	f.Fuzz(func(t *testing.T, body []byte, status uint32) {
		if k, v, err := ParseKVPEnumerate(body); err == nil {
			if k == "" || len(k) > 3*KVPMaxKey/2 || len(v) > 3*KVPMaxValue/2 {
				t.Fatalf("key %q value %q", k, v)
			}
		}
		kvp, err := NewKVP([]KV{{"a", "b"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r, offers := newRig(t, kvp)
		c, _, err := r.g.Open(offers[0], 4, 4, 0)
		if err != nil {
			t.Fatal(err)
		}
		g := &guestIC{c: c, fw: linuxFW, srv: []uint32{Version(4, 0)}, handle: func(_ uint16, msg []byte) {
			binary.LittleEndian.PutUint32(msg[offStatus:], status)
			copy(msg[HeaderSize:], body)
		}}
		for range 4 {
			g.poll(t)
			kvp.Poll()
		}
		if st := kvp.Status(); len(st.Auto) > kvpMaxEntries || len(st.Guest) > kvpMaxEntries {
			t.Fatalf("pools of %d and %d entries", len(st.Auto), len(st.Guest))
		}
	})
}
