package vmbus

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/vmbus/internal/guestdrv"
)

// A guest that asks for a GPADL while its message slot is still full
// waits: the bus has the answer queued, Stats and Stalled say what the
// guest waits for, and the wait ends when the answer reaches the slot.
// The trace has one line per control message each way.
func TestWaitsAndTrace(t *testing.T) {
	now := time.Unix(1000, 0)
	var trace []string
	r := newRig(t, 2, Config{Now: func() time.Time { return now },
		Trace: func(dir, msg, detail string) { trace = append(trace, dir+" "+detail) }})
	offers := r.connect(t)
	require.Empty(t, r.bus.Stats().Waiting)
	require.Equal(t, []string{classEcho.String(), classTwo.String()}, r.bus.Stats().NeverOpened)
	require.Contains(t, trace, "in INITIATE_CONTACT version 5.3 vp 0")
	require.Contains(t, trace, "out VERSION_RESPONSE supported 1")
	require.Contains(t, trace, "out OFFERCHANNEL relid 2 class "+classTwo.String())
	require.Contains(t, trace, "out ALLOFFERS_DELIVERED")

	// Fill the guest's slot with something it does not take.
	require.True(t, r.synic.PostMessage(0, 2, []byte{99, 0, 0, 0, 0, 0, 0, 0}))
	for _, m := range guestdrv.GPADLMessages(offers[0].Relid, 0x77, []uint64{300, 301, 302, 303}) {
		require.Zero(t, r.g.Post(m))
	}
	s := r.bus.Stats()
	require.Len(t, s.Waiting, 1)
	w := s.Waiting[0]
	require.Equal(t, "GPADL_CREATED", w.For)
	require.Equal(t, "GPADL_HEADER relid 1 gpadl 0x77", w.Request)
	require.True(t, w.Queued, "the answer waits for the guest's slot")
	require.Equal(t, now, w.Since)
	require.Empty(t, r.bus.Stalled(now.Add(time.Second), 5*time.Second))
	st := r.bus.Stalled(now.Add(10*time.Second), 5*time.Second)
	require.Len(t, st, 1)
	require.Equal(t, "GPADL_CREATED", st[0].For)

	// The guest frees its slot: the answer goes out, the wait ends.
	require.NotNil(t, r.synic.Take(0, 2))
	r.bus.EOM()
	m := r.g.Recv()
	require.Equal(t, uint32(msgGPADLCreated), guestdrv.Type(m))
	require.Empty(t, r.bus.Stats().Waiting)
	require.Contains(t, trace, "in GPADL_HEADER relid 1 gpadl 0x77")
	require.Contains(t, trace, "out GPADL_CREATED relid 1 gpadl 0x77 status 0x0")

	// Opening the channel takes it off the never-opened list.
	_, _, err := r.g.Open(offers[1], 2, 2, 0)
	require.NoError(t, err)
	s = r.bus.Stats()
	require.Equal(t, []string{classEcho.String()}, s.NeverOpened)
	require.Empty(t, s.Waiting)
	require.True(t, s.Channels[1].Offered)
}

// A flood of unanswerable waits keeps only the newest maxWaits.
func TestWaitsBounded(t *testing.T) {
	r := newRig(t, 1, Config{InQueue: 1000})
	offers := r.connect(t)
	require.True(t, r.synic.PostMessage(0, 2, []byte{99, 0, 0, 0, 0, 0, 0, 0}))
	for i := range 3 * maxWaits {
		require.Zero(t, r.g.Post(guestdrv.GPADLMessages(offers[0].Relid, uint32(0x1000+i), []uint64{400})[0]))
	}
	require.Len(t, r.bus.Stats().Waiting, maxWaits)
}
