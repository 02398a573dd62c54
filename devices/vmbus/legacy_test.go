package vmbus

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/vmbus/internal/guestdrv"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// TestIPXEConnection runs iPXE's sequence: 3.0, UNLOAD, 0.13 with the
// interrupt page, offers, a one-page ring each way, packets both ways with
// the guest signalling through its page and connection 2 and the host
// through the page's first half and event flag 0; then a reopen.
func TestIPXEConnection(t *testing.T) {
	r := newRig(t, 2, Config{})
	require.NoError(t, r.g.NegotiateIPXE())
	s := r.bus.Stats()
	require.Equal(t, "0.13", s.Version)
	require.Equal(t, uint64(1), s.MessagesIn["UNLOAD"])
	offers, err := r.g.RequestOffers()
	require.NoError(t, err)
	require.Len(t, offers, 2)
	o := offers[1]
	require.False(t, o.Monitored, "iPXE would signal through the monitor page")

	for open := range 2 {
		c, st, err := r.g.Open(o, 2, 2, 0)
		require.NoError(t, err)
		require.Zero(t, st)
		for i := range 40 {
			payload := []byte{byte(i), byte(open), 3, 4, 5}
			require.NoError(t, c.Send(ring.TypeDataInband, ring.FlagCompletionRequest, uint64(i+1), payload))
			require.False(t, r.synic.TestAndClear(0, 2, o.Relid), "no per-channel event flag before 2.4")
			require.True(t, c.Interrupted(), "packet %d: the host signalled through the interrupt page", i)
			p, ok := c.In.Read()
			require.True(t, ok)
			require.Equal(t, uint16(ring.TypeCompletion), p.Type)
			require.Equal(t, uint64(i+1), p.ID)
			require.Equal(t, payload, p.Payload[:len(payload)])
		}
		require.Zero(t, r.g.Mem[r.g.IntPage+guestdrv.PageSize/2], "the host took the guest's bits")
		require.NoError(t, c.Close())
	}
	bs := r.bus.Stats()
	require.True(t, bs.InterruptPage)
	require.Equal(t, uint64(80), bs.SharedSignals)
	st := bs.Channels[1]
	require.Equal(t, uint64(2), st.Opens)
	require.Equal(t, uint64(80), st.Stats.SignalsIn)
	require.Equal(t, uint64(80), st.Stats.SignalsOut)
	require.Equal(t, []string{"open", "opened", "interrupt"}, r.devs[1].Calls()[:3])
}

// TestSharedEventConnection: connection 2 exists only with an interrupt
// page; bits for unknown, closed or out-of-range relids are cleared and
// go nowhere; a new contact forgets the page.
func TestSharedEventConnection(t *testing.T) {
	r := newRig(t, 1, Config{})
	r.connect(t) // 5.3: no interrupt page
	require.Equal(t, uint16(StatusInvalidConnectionID), r.bus.Signal(ConnEvent))

	page := r.g.Alloc(1) * guestdrv.PageSize
	r.g.IntPage = page
	resp := r.g.Contact(Version4_1, 1)
	require.Equal(t, byte(1), resp[8])
	half := []byte(r.g.Mem[page+guestdrv.PageSize/2 : page+guestdrv.PageSize])
	for i := range half {
		half[i] = 0xff // every relid, the closed channel's included
	}
	require.Equal(t, uint16(StatusSuccess), r.bus.Signal(ConnEvent))
	require.Equal(t, make([]byte, (MaxRelid+1)/8), half[:(MaxRelid+1)/8], "relids 0..2047 taken")
	require.Equal(t, byte(0xff), half[len(half)-1], "bits past relid 2047 are not the host's")
	require.Empty(t, r.devs[0].Calls(), "no open channel, no interrupt")

	// 4.1 keeps per-channel flags: the host does not touch the page.
	offers, err := r.g.RequestOffers()
	require.NoError(t, err)
	c, _, err := r.g.Open(offers[0], 2, 2, 0)
	require.NoError(t, err)
	require.NoError(t, c.Send(ring.TypeDataInband, ring.FlagCompletionRequest, 1, []byte("x")))
	require.True(t, r.synic.TestAndClear(0, 2, offers[0].Relid))
	require.Zero(t, r.g.Mem[page], "no host bits in the page at 4.1")

	r.g.IntPage = 0
	r.g.Contact(Version4_1, 1)
	require.Equal(t, uint16(StatusInvalidConnectionID), r.bus.Signal(ConnEvent), "the new contact named no page")
}
