package vmbus

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/vmbus/gpadl"
	"github.com/vmmdev/vmm/devices/vmbus/internal/guestdrv"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

var (
	classEcho = MustGUID("12345678-9abc-def0-1122-334455667788")
	classTwo  = MustGUID("57164f39-9115-4e78-ab55-382f3bd5422d")
)

// echo is a test device: it answers every guest packet with a completion
// carrying the same payload, and records the bus's calls.
type echo struct {
	mu       sync.Mutex
	offer    Offer
	calls    []string
	ch       *Channel
	refuse   error
	sendOpen bool // write a packet in Opened
}

func (e *echo) Offer() Offer { return e.offer }
func (e *echo) Open(c *Channel) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, "open")
	if e.refuse != nil {
		return e.refuse
	}
	e.ch = c
	return nil
}
func (e *echo) Opened(c *Channel) {
	e.mu.Lock()
	e.calls = append(e.calls, "opened")
	e.mu.Unlock()
	if e.sendOpen {
		c.Send(ring.TypeDataInband, 0, 99, nil, []byte("hello"))
	}
}
func (e *echo) Interrupt(c *Channel) {
	e.mu.Lock()
	e.calls = append(e.calls, "interrupt")
	e.mu.Unlock()
	for {
		p, ok, err := c.Recv(nil)
		if err != nil || !ok {
			break
		}
		c.Complete(p.TransID, p.Payload)
	}
	c.RecvDone()
}
func (e *echo) Close(c *Channel) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, "close")
	e.ch = nil
}
func (e *echo) Calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.calls...)
}

type rig struct {
	bus   *Bus
	synic *guestdrv.SynIC
	g     *guestdrv.Guest
	devs  []*echo
}

func newRig(t *testing.T, ndev int, cfg Config) *rig {
	t.Helper()
	return newRigHost(t, ndev, cfg, func(s *guestdrv.SynIC) Host { return s })
}

// newRigHost is newRig with the bus's Host made from the guest's SynIC.
func newRigHost(t *testing.T, ndev int, cfg Config, host func(*guestdrv.SynIC) Host) *rig {
	t.Helper()
	synic := guestdrv.NewSynIC()
	mem := make(guestdrv.Mem, 16<<20)
	cfg.Mem, cfg.Host = mem, host(synic)
	if cfg.VPs == 0 {
		cfg.VPs = 2
	}
	b := New(cfg)
	g := guestdrv.New(0, b, synic)
	g.Mem = mem
	r := &rig{bus: b, synic: synic, g: g}
	for i := range ndev {
		e := &echo{offer: Offer{Class: classEcho, Instance: GUID{byte(i + 1)}}}
		if i == 1 {
			e.offer.Class = classTwo
		}
		relid, err := b.Add(e)
		require.NoError(t, err)
		require.Equal(t, uint32(i+1), relid)
		r.devs = append(r.devs, e)
	}
	return r
}

// connect negotiates like Linux and collects the offers.
func (r *rig) connect(t *testing.T) []guestdrv.Offer {
	t.Helper()
	v, err := r.g.Negotiate()
	require.NoError(t, err)
	require.Equal(t, uint32(Version5_3), v)
	offers, err := r.g.RequestOffers()
	require.NoError(t, err)
	return offers
}

func TestGUID(t *testing.T) {
	g := MustGUID("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f")
	require.Equal(t, GUID{0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d, 0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f}, g)
	require.Equal(t, "ba6163d9-04a1-4d29-b605-72e2ffb1dc7f", g.String())
	for _, bad := range []string{"", "ba6163d9-04a1-4d29-b605-72e2ffb1dc7", "ba6163d9x04a1-4d29-b605-72e2ffb1dc7f", "zz6163d9-04a1-4d29-b605-72e2ffb1dc7f"} {
		_, err := ParseGUID(bad)
		require.Error(t, err, bad)
	}
}

func TestVersionNegotiation(t *testing.T) {
	cases := []struct {
		name     string
		version  uint32
		conn     uint32
		page     uint64 // interrupt page GPA
		accepted bool
	}{
		{"5.3 on 4", Version5_3, 4, 0, true},
		{"5.0 on 4", Version5_0, 4, 0, true},
		{"4.1 on 1", Version4_1, 1, 0x10000, true},
		{"4.0 on 1", Version4_0, 1, 0, true},
		{"5.3 on 1", Version5_3, 1, 0, false},
		{"4.1 on 4", Version4_1, 4, 0, false},
		{"5.4 on 4", 5<<16 | 4, 4, 0, false},
		{"3.0 on 1", 3 << 16, 1, 0x10000, true},
		{"3.0 on 4", 3 << 16, 4, 0x10000, false},
		{"3.0 with a page outside RAM", 3 << 16, 1, 1 << 40, true},
		{"2.4 on 1", 2<<16 | 4, 1, 0, true},
		{"1.1 on 1", 1<<16 | 1, 1, 0x10000, true},
		{"0.13 on 1", 13, 1, 0x10000, true},
		{"0.13 without an interrupt page", 13, 1, 0, false},
		{"0.13 with a page outside RAM", 13, 1, 1 << 40, false},
		{"0.13 with an unaligned page", 13, 1, 0x10008, false},
		{"1.1 without an interrupt page", 1<<16 | 1, 1, 0, false},
		{"0.12", 12, 1, 0x10000, false},
		{"2.3", 2<<16 | 3, 1, 0x10000, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, 0, Config{})
			r.g.IntPage = c.page
			resp := r.g.Contact(c.version, c.conn)
			require.Equal(t, uint32(msgVersionResponse), guestdrv.Type(resp))
			require.Len(t, resp, sizeVersionResp)
			require.Equal(t, c.accepted, resp[8] == 1)
			require.Zero(t, resp[9], "connection_state")
			want := uint32(0)
			if c.accepted {
				want = c.version
				if c.version >= Version5_0 {
					want = ConnMessage // the connection to use from now on
				}
			}
			require.Equal(t, want, binary.LittleEndian.Uint32(resp[12:]))
			require.Equal(t, c.accepted, r.bus.Stats().Connected)
		})
	}
	t.Run("Linux 6.1 lands on 5.3", func(t *testing.T) {
		r := newRig(t, 0, Config{})
		v, err := r.g.Negotiate()
		require.NoError(t, err)
		require.Equal(t, uint32(Version5_3), v)
		require.Equal(t, "5.3", r.bus.Stats().Version)
	})
	t.Run("5.x names its SINT and VP", func(t *testing.T) {
		r := newRig(t, 0, Config{VPs: 4})
		r.g.VP, r.g.SINT = 3, 5
		resp := r.g.Contact(Version5_2, 4)
		require.Equal(t, byte(1), resp[8], "the answer came to VP 3 SINT 5")
	})
	t.Run("target VP out of range", func(t *testing.T) {
		r := newRig(t, 0, Config{VPs: 1})
		r.g.VP = 1
		m := guestdrv.Msg(msgInitiateContact, 40, Version5_3, 1)
		m[16] = 2
		require.Equal(t, uint16(0), r.bus.Post(4, m))
		require.Nil(t, r.synic.Take(1, 2))
		resp := r.synic.Take(0, 2)
		require.Equal(t, uint32(msgVersionResponse), guestdrv.Type(resp))
		require.Zero(t, resp[8], "refused on VP 0")
	})
	t.Run("other connections", func(t *testing.T) {
		r := newRig(t, 0, Config{})
		require.Equal(t, uint16(StatusInvalidConnectionID), r.bus.Post(2, guestdrv.Msg(msgInitiateContact, 40, Version5_3)))
		require.Equal(t, uint16(StatusInvalidParameter), r.bus.Post(1, make([]byte, 241)))
	})
}

func TestOffers(t *testing.T) {
	r := newRig(t, 2, Config{})
	offers := r.connect(t)
	require.Len(t, offers, 2)
	for i, o := range offers {
		require.Equal(t, [16]byte(r.devs[i].offer.Class), o.Class)
		require.Equal(t, [16]byte(r.devs[i].offer.Instance), o.Instance)
		require.Equal(t, uint32(i+1), o.Relid)
		require.Equal(t, uint32(eventConnBase+i+1), o.Conn)
		require.True(t, o.Dedicated)
		require.False(t, o.Monitored)
	}
	s := r.bus.Stats()
	require.Equal(t, uint64(2), s.MessagesOut["OFFERCHANNEL"])
	require.Equal(t, uint64(1), s.MessagesOut["ALLOFFERS_DELIVERED"])
	require.Len(t, s.Channels, 2)
	require.Equal(t, "57164f39-9115-4e78-ab55-382f3bd5422d", s.Channels[1].Class)
}

func TestOpenEchoClose(t *testing.T) {
	r := newRig(t, 1, Config{})
	o := r.connect(t)[0]
	// A ring GPADL of 40 pages: header and one body.
	c, st, err := r.g.Open(o, 20, 20, 1)
	require.NoError(t, err)
	require.Zero(t, st)
	require.Equal(t, []string{"open", "opened"}, r.devs[0].Calls())
	for i := range 500 {
		payload := make([]byte, 1+i%700)
		payload[0] = byte(i)
		require.NoError(t, c.Send(ring.TypeDataInband, ring.FlagCompletionRequest, uint64(i), payload))
		require.True(t, c.Interrupted(), "packet %d: the host signalled its completion", i)
		p, ok := c.In.Read()
		require.True(t, ok)
		require.Equal(t, uint16(ring.TypeCompletion), p.Type)
		require.Equal(t, uint64(i), p.ID)
		require.Equal(t, payload, p.Payload[:len(payload)])
	}
	st2 := r.bus.Stats().Channels[0]
	require.True(t, st2.Open)
	require.Equal(t, uint64(500), st2.Stats.PacketsIn)
	require.Equal(t, uint64(500), st2.Stats.PacketsOut)
	require.Equal(t, uint64(500), st2.Stats.SignalsIn)

	require.NoError(t, c.Close())
	require.Equal(t, "close", r.devs[0].Calls()[len(r.devs[0].Calls())-1])
	require.Equal(t, uint16(StatusSuccess), r.bus.Signal(o.Conn), "a closed channel's signal goes nowhere")
	s := r.bus.Stats()
	require.Zero(t, s.GPADLs)
	require.False(t, s.Channels[0].Open)
	require.Equal(t, uint64(500), s.Channels[0].Stats.PacketsIn, "counts survive the close")

	// Reopen, as iPXE and module reloads do.
	c, st, err = r.g.Open(o, 2, 2, 0)
	require.NoError(t, err)
	require.Zero(t, st)
	require.NoError(t, c.Send(ring.TypeDataInband, 0, 1, []byte("x")))
	require.True(t, c.Interrupted())
	require.Equal(t, uint64(2), r.bus.Stats().Channels[0].Opens)
}

func TestNoInterruptBeforeOpenResult(t *testing.T) {
	r := newRig(t, 1, Config{})
	r.devs[0].sendOpen = true
	o := r.connect(t)[0]
	pfn := r.g.Alloc(4)
	id, st, err := r.g.CreateGPADL(o.Relid, []uint64{pfn, pfn + 1, pfn + 2, pfn + 3})
	require.NoError(t, err)
	require.Zero(t, st)
	// The guest has not emptied its slot: OPENCHANNEL_RESULT must wait.
	require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgUnload+100, 8)))
	r.synic.PostMessage(0, 2, []byte{9, 9, 9, 9, 0, 0, 0, 0})
	require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgOpenChannel, 148, o.Relid, 7, id, 0, 2)))
	require.Equal(t, []string{"open"}, r.devs[0].Calls())
	require.False(t, r.synic.TestAndClear(0, 2, o.Relid), "no interrupt before the result is in the guest's slot")
	r.synic.Take(0, 2)
	r.bus.EOM()
	res := r.synic.Take(0, 2)
	require.Equal(t, uint32(msgOpenChannelResult), guestdrv.Type(res))
	require.Equal(t, []string{"open", "opened"}, r.devs[0].Calls())
	require.True(t, r.synic.TestAndClear(0, 2, o.Relid), "the first packet's interrupt followed the result")
	in := &guestdrv.Ring{Mem: r.g.Mem, Hdr: (pfn + 2) * 4096, Size: 4096}
	p, ok := in.Read()
	require.True(t, ok)
	require.Equal(t, "hello", string(p.Payload[:5]))
}

func TestBackPressure(t *testing.T) {
	r := newRig(t, 3, Config{InQueue: 4})
	_, err := r.g.Negotiate()
	require.NoError(t, err)
	// The guest does not read: REQUESTOFFERS fills the slot (one offer)
	// and queues the rest.
	require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgRequestOffers, 8)))
	s := r.bus.Stats()
	require.Equal(t, 3, s.Queued, "two offers and ALLOFFERS_DELIVERED wait for the slot")
	var got []uint32
	for m := r.g.Recv(); m != nil; m = r.g.Recv() {
		got = append(got, guestdrv.Type(m))
	}
	require.Equal(t, []uint32{1, 1, 1, 4}, got, "EOM brought each in order")

	// With the outbound queue full, guest posts queue up to InQueue,
	// then the post is refused with INSUFFICIENT_BUFFERS, never dropped.
	r.synic.Off = true
	for range outSoftLimit / 4 {
		require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgRequestOffers, 8)))
	}
	require.GreaterOrEqual(t, r.bus.Stats().Queued, outSoftLimit)
	for range 4 {
		require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgRequestOffers, 8)))
	}
	require.Equal(t, uint16(StatusInsufficientBuffers), r.g.Post(guestdrv.Msg(msgRequestOffers, 8)))
	require.Equal(t, uint64(1), r.bus.Stats().Busy)
	require.Equal(t, 4, r.bus.Stats().Pending)
	r.synic.Off = false
	r.bus.EOM() // the guest's EOM (or its next post) restarts delivery
	n := 0
	for m := r.g.Recv(); m != nil; m = r.g.Recv() {
		n++
	}
	require.Equal(t, (outSoftLimit/4+4)*4, n, "every queued answer arrived")
	require.Zero(t, r.bus.Stats().Pending)
}

func TestContactResetsEverything(t *testing.T) {
	r := newRig(t, 2, Config{})
	offers := r.connect(t)
	_, st, err := r.g.Open(offers[0], 2, 2, 0)
	require.NoError(t, err)
	require.Zero(t, st)
	// A pending GPADL too.
	for _, m := range guestdrv.GPADLMessages(2, 0x99, make([]uint64, 40))[:1] {
		require.Equal(t, uint16(0), r.g.Post(m))
	}
	require.Equal(t, 2, r.bus.Stats().GPADLs)
	r.g.Conn = 1
	_, err = r.g.Negotiate()
	require.NoError(t, err)
	s := r.bus.Stats()
	require.Zero(t, s.GPADLs)
	require.False(t, s.Channels[0].Open)
	require.Equal(t, []string{"open", "opened", "close"}, r.devs[0].Calls())
	offers = r.connect(t)
	require.Len(t, offers, 2)
	_, st, err = r.g.Open(offers[0], 2, 2, 0)
	require.NoError(t, err)
	require.Zero(t, st)
}

func TestUnload(t *testing.T) {
	r := newRig(t, 2, Config{})
	offers := r.connect(t)
	_, _, err := r.g.Open(offers[1], 2, 2, 0)
	require.NoError(t, err)
	// Messages still queued for the guest are dropped for the answer.
	require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgRequestOffers, 8)))
	require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgUnload, 8)))
	r.synic.Take(0, 2) // the first offer, still in the slot
	r.bus.EOM()
	require.Equal(t, uint32(msgUnloadResponse), guestdrv.Type(r.g.Recv()))
	require.Nil(t, r.g.Recv())
	s := r.bus.Stats()
	require.False(t, s.Connected)
	require.False(t, s.Channels[1].Open)
	require.Zero(t, s.GPADLs)
	// Before contact, only INITIATE_CONTACT and UNLOAD count.
	require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgRequestOffers, 8)))
	require.Nil(t, r.g.Recv())
	require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgUnload, 8)))
	require.Equal(t, uint32(msgUnloadResponse), guestdrv.Type(r.g.Recv()))
}

func TestRescind(t *testing.T) {
	r := newRig(t, 2, Config{})
	offers := r.connect(t)
	_, _, err := r.g.Open(offers[0], 2, 2, 0)
	require.NoError(t, err)
	r.bus.Remove(r.devs[0])
	m := r.g.Recv()
	require.Equal(t, uint32(msgRescindOffer), guestdrv.Type(m))
	require.Equal(t, uint32(1), binary.LittleEndian.Uint32(m[8:]))
	require.Equal(t, "close", r.devs[0].Calls()[2])
	require.Equal(t, uint16(StatusInvalidConnectionID), r.bus.Signal(offers[0].Conn))
	// The relid is held until the guest releases it.
	e := &echo{offer: Offer{Class: classEcho}}
	relid, err := r.bus.Add(e)
	require.NoError(t, err)
	require.Equal(t, uint32(3), relid)
	o := guestdrv.ParseOffer(r.g.Recv())
	require.Equal(t, uint32(3), o.Relid, "hot-added device offered at once")
	require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgRelidReleased, 12, 1)))
	r.bus.Remove(e)
	require.Equal(t, uint32(msgRescindOffer), guestdrv.Type(r.g.Recv()))
	relid, err = r.bus.Add(&echo{})
	require.NoError(t, err)
	require.Equal(t, uint32(1), relid)
	// A device removed before the guest connected is simply gone.
	r2 := newRig(t, 1, Config{})
	r2.bus.Remove(r2.devs[0])
	require.Empty(t, r2.connect(t))
}

func TestModifyChannel(t *testing.T) {
	r := newRig(t, 1, Config{VPs: 2})
	o := r.connect(t)[0]
	c, _, err := r.g.Open(o, 2, 2, 0)
	require.NoError(t, err)
	require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgModifyChannel, 16, o.Relid, 1)))
	m := r.g.Recv()
	require.Equal(t, uint32(msgModifyChannelResult), guestdrv.Type(m))
	require.Zero(t, binary.LittleEndian.Uint32(m[12:]))
	c.VP = 1
	require.NoError(t, c.Send(ring.TypeDataInband, 0, 1, []byte("x")))
	require.True(t, c.Interrupted(), "interrupt on the new VP")
	require.Equal(t, uint16(0), r.g.Post(guestdrv.Msg(msgModifyChannel, 16, o.Relid, 2)))
	m = r.g.Recv()
	require.NotZero(t, binary.LittleEndian.Uint32(m[12:]), "VP 2 does not exist")
}

func TestHostileGuest(t *testing.T) {
	r := newRig(t, 2, Config{})
	offers := r.connect(t)
	o := offers[0]
	g := r.g
	status := func(m []byte) uint32 { return binary.LittleEndian.Uint32(m[16:]) }

	t.Run("GPADL over MMIO or beyond RAM", func(t *testing.T) {
		for _, pfn := range []uint64{0xfee00, 16 << 20 >> 12, 1 << 40} {
			_, st, err := g.CreateGPADL(o.Relid, []uint64{pfn})
			require.NoError(t, err)
			require.NotZero(t, st, "pfn %#x", pfn)
		}
	})
	t.Run("GPADL for an unknown channel", func(t *testing.T) {
		_, st, err := g.CreateGPADL(77, []uint64{g.Alloc(1)})
		require.NoError(t, err)
		require.NotZero(t, st)
	})
	t.Run("GPADL body with too many PFNs", func(t *testing.T) {
		msgs := guestdrv.GPADLMessages(o.Relid, 0x500, make([]uint64, 30))
		body := append(msgs[1], make([]byte, 8)...)
		require.Equal(t, uint16(0), g.Post(msgs[0]))
		require.Equal(t, uint16(0), g.Post(body))
		m := g.Recv()
		require.Equal(t, uint32(msgGPADLCreated), guestdrv.Type(m))
		require.Equal(t, o.Relid, binary.LittleEndian.Uint32(m[8:]))
		require.NotZero(t, status(m))
	})
	t.Run("open errors", func(t *testing.T) {
		pfn := g.Alloc(4)
		pfns := []uint64{pfn, pfn + 1, pfn + 2, pfn + 3}
		id, st, err := g.CreateGPADL(o.Relid, pfns)
		require.NoError(t, err)
		require.Zero(t, st)
		other, _, err := g.CreateGPADL(offers[1].Relid, pfns) // overlapping
		require.NoError(t, err)
		for name, args := range map[string][4]uint32{
			"unknown relid":         {99, id, 0, 2},
			"unknown GPADL":         {o.Relid, 0x7777, 0, 2},
			"another channel's":     {o.Relid, other, 0, 2},
			"no VP":                 {o.Relid, id, 2, 2},
			"split at 0":            {o.Relid, id, 0, 0},
			"split leaves 1 page":   {o.Relid, id, 0, 3},
			"split beyond the list": {o.Relid, id, 0, 0xffffffff},
		} {
			st, err := g.OpenRaw(args[0], 7, args[1], args[2], args[3])
			require.NoError(t, err, name)
			require.NotZero(t, st, name)
		}
		// Out-of-range indices in the ring headers.
		binary.LittleEndian.PutUint32(g.Mem[pfn*4096+4:], 4097)
		st, err = g.OpenRaw(o.Relid, 7, id, 0, 2)
		require.NoError(t, err)
		require.NotZero(t, st)
		binary.LittleEndian.PutUint32(g.Mem[pfn*4096+4:], 0)
		st, err = g.OpenRaw(o.Relid, 7, id, 0, 2)
		require.NoError(t, err)
		require.Zero(t, st)
		st, err = g.OpenRaw(o.Relid, 8, id, 0, 2)
		require.NoError(t, err)
		require.NotZero(t, st, "opened twice")
		require.Equal(t, []string{"open", "opened"}, r.devs[0].Calls(), "the first open stands")

		// A ring index out of range breaks the channel, not the VMM.
		binary.LittleEndian.PutUint32(g.Mem[pfn*4096:], 0xfffffff0)
		require.Equal(t, uint16(0), r.bus.Signal(o.Conn))
		ch := r.devs[0].ch
		_, _, err = ch.Recv(nil)
		require.ErrorIs(t, err, ErrClosed)
		require.ErrorIs(t, ch.Send(ring.TypeDataInband, 0, 1, nil, []byte("x")), ErrClosed)

		// Tearing the ring GPADL down under the open channel closes it.
		require.Equal(t, uint16(0), g.Post(guestdrv.Msg(msgGPADLTeardown, 16, o.Relid, id)))
		require.Equal(t, uint32(msgGPADLTorndown), guestdrv.Type(g.Recv()))
		calls := r.devs[0].Calls()
		require.Equal(t, []string{"open", "opened", "interrupt", "close"}, calls)
	})
	t.Run("device refuses", func(t *testing.T) {
		r.devs[1].refuse = errors.New("no")
		_, st, err := g.Open(offers[1], 2, 2, 0)
		require.NoError(t, err)
		require.NotZero(t, st)
	})
	t.Run("junk messages", func(t *testing.T) {
		before := r.bus.Stats().Dropped
		for _, m := range [][]byte{
			{1, 2, 3},
			guestdrv.Msg(msgOpenChannel, 100, o.Relid),
			guestdrv.Msg(msgOfferChannel, 196),   // host->guest type
			guestdrv.Msg(0xffffffff, 8),          // unknown
			guestdrv.Msg(msgGPADLBody, 24, 1, 5), // unknown GPADL
			guestdrv.Msg(msgCloseChannel, 12, 1234),
			guestdrv.Msg(msgRelidReleased, 12, 1),
		} {
			require.Equal(t, uint16(0), g.Post(m))
		}
		require.Nil(t, g.Recv(), "no answer to junk")
		require.Equal(t, before+5, r.bus.Stats().Dropped)
		require.Equal(t, uint16(StatusInvalidConnectionID), r.bus.Signal(5))
		require.Equal(t, uint16(StatusInvalidConnectionID), r.bus.Signal(eventConnBase+1234))
		// Teardown of an unknown GPADL is still answered.
		require.Equal(t, uint16(0), g.Post(guestdrv.Msg(msgGPADLTeardown, 16, 1, 0x4242)))
		require.Equal(t, uint32(msgGPADLTorndown), guestdrv.Type(g.Recv()))
	})
	t.Run("EOM storm", func(t *testing.T) {
		for range 10000 {
			r.bus.EOM()
		}
		require.Nil(t, g.Recv())
	})
}

func TestGPADLLimitsReachGuest(t *testing.T) {
	r := newRig(t, 1, Config{GPADL: gpadl.Limits{Count: 2, TotalPages: 8}})
	o := r.connect(t)[0]
	for i := range 3 {
		_, st, err := r.g.CreateGPADL(o.Relid, []uint64{r.g.Alloc(1)})
		require.NoError(t, err)
		require.Equal(t, i == 2, st != 0, "GPADL %d", i)
	}
	require.Equal(t, uint64(1), r.bus.Stats().GPADLFailures)
}

// The report's field names are snake_case, as the rest of vmm's report.
func TestStatsJSON(t *testing.T) {
	r := newRig(t, 1, Config{})
	r.connect(t)
	b, err := json.Marshal(r.bus.Stats())
	require.NoError(t, err)
	for _, k := range []string{`"connected":true`, `"version":"5.3"`, `"messages_in":`, `"dropped":0`, `"busy":0`,
		`"last_in":"REQUESTOFFERS"`, `"last_out":"ALLOFFERS_DELIVERED"`, `"gpadl_pages":0`, `"channels":[{"relid":1`} {
		require.Contains(t, string(b), k)
	}
}

// TestSubChannels: sub-channels of an open primary are offered with the
// primary's class and instance and their index, open and carry packets on
// their own relid; closing the primary rescinds them; a reset forgets them.
func TestSubChannels(t *testing.T) {
	r := newRig(t, 1, Config{})
	e := r.devs[0]
	_, err := r.bus.AddSubChannel(e, 1)
	require.Error(t, err, "sub-channel before the primary is open")
	offers := r.connect(t)
	prim, st, err := r.g.Open(offers[0], 4, 4, 0)
	require.NoError(t, err)
	require.Zero(t, st)
	_, err = r.bus.AddSubChannel(e, 0)
	require.Error(t, err)
	var subs []guestdrv.Offer
	for i := uint16(1); i <= 2; i++ {
		relid, err := r.bus.AddSubChannel(e, i)
		require.NoError(t, err)
		m := r.g.Recv()
		require.Equal(t, uint32(1), guestdrv.Type(m))
		o := guestdrv.ParseOffer(m)
		require.Equal(t, relid, o.Relid)
		require.Equal(t, i, o.SubIndex)
		require.Equal(t, offers[0].Class, o.Class)
		require.Equal(t, offers[0].Instance, o.Instance)
		require.NotEqual(t, offers[0].Conn, o.Conn)
		subs = append(subs, o)
	}
	_, err = r.bus.AddSubChannel(e, 2)
	require.Error(t, err, "index offered twice")
	sc, st, err := r.g.Open(subs[0], 4, 4, 1)
	require.NoError(t, err)
	require.Zero(t, st)
	e.mu.Lock()
	require.Equal(t, uint16(1), e.ch.SubChannelIndex())
	e.mu.Unlock()
	require.NoError(t, sc.Send(ring.TypeDataInband, ring.FlagCompletionRequest, 5, []byte("sub-channel")))
	p, ok := sc.In.Read()
	require.True(t, ok)
	require.Equal(t, uint64(5), p.ID)
	require.True(t, sc.Interrupted())
	_, ok = prim.In.Read()
	require.False(t, ok, "the answer went to the sub-channel only")

	// Closing the primary closes and rescinds both sub-channels.
	require.Zero(t, r.g.Post(guestdrv.Msg(7, 12, prim.Relid)))
	rescinded := map[uint32]bool{}
	for range 2 {
		m := r.g.Recv()
		require.Equal(t, uint32(2), guestdrv.Type(m), "%x", m)
		rescinded[binary.LittleEndian.Uint32(m[8:])] = true
	}
	require.Equal(t, map[uint32]bool{subs[0].Relid: true, subs[1].Relid: true}, rescinded)
	require.Error(t, sc.Send(ring.TypeDataInband, 0, 6, []byte("x")), "signal on a rescinded channel")
	for _, o := range subs {
		require.Zero(t, r.g.Post(guestdrv.Msg(13, 12, o.Relid)))
	}
	st2 := r.bus.Stats()
	require.Len(t, st2.Channels, 1)

	// Reopen, offer again, then a new contact forgets the sub-channels.
	_, _, err = r.g.Open(offers[0], 4, 4, 0)
	require.NoError(t, err)
	_, err = r.bus.AddSubChannel(e, 1)
	require.NoError(t, err)
	require.Equal(t, uint32(1), guestdrv.Type(r.g.Recv()))
	require.Len(t, r.bus.Stats().Channels, 2)
	offers = r.connect(t)
	require.Len(t, offers, 1)
	require.Len(t, r.bus.Stats().Channels, 1)
}

// routedHost is a Host with signal routes, as vmm's ioeventfds: the test
// fires a route as KVM would.
type routedHost struct {
	*guestdrv.SynIC
	mu     sync.Mutex
	routes map[uint32]func()
}

func (h *routedHost) RouteSignal(conn uint32, signal func()) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.routes[conn] != nil {
		panic("connection routed twice")
	}
	h.routes[conn] = signal
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.routes, conn)
	}
}

func (h *routedHost) route(conn uint32) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.routes[conn]
}

func TestSignalRoutes(t *testing.T) {
	var h *routedHost
	r := newRigHost(t, 2, Config{}, func(s *guestdrv.SynIC) Host {
		h = &routedHost{SynIC: s, routes: map[uint32]func(){}}
		return h
	})
	offers := r.connect(t)
	require.Empty(t, h.routes, "offered channels are not routed")
	c, st, err := r.g.Open(offers[0], 2, 2, 0)
	require.NoError(t, err)
	require.Zero(t, st)
	require.Len(t, h.routes, 1)
	fire := h.route(offers[0].Conn)
	require.NotNil(t, fire, "the open channel's connection is routed")

	// A signal through the route reaches the device as the hypercall's.
	_, err = c.Out.Write(ring.TypeDataInband, ring.FlagCompletionRequest, 7, []byte("ping"))
	require.NoError(t, err)
	fire()
	require.True(t, c.Interrupted())
	p, ok := c.In.Read()
	require.True(t, ok)
	require.Equal(t, uint64(7), p.ID)
	require.Equal(t, uint64(1), r.bus.Stats().Channels[0].Stats.SignalsIn)

	// Closed: unrouted; a late signal is harmless.
	require.NoError(t, c.Close())
	require.Empty(t, h.routes)
	fire()
	require.Equal(t, []string{"open", "opened", "interrupt", "close"}, r.devs[0].Calls())

	// Reopened, then the guest reconnects: the reset unroutes too.
	_, _, err = r.g.Open(offers[1], 2, 2, 0)
	require.NoError(t, err)
	require.NotNil(t, h.route(offers[1].Conn))
	r.g.Conn = 1
	_, err = r.g.Negotiate()
	require.NoError(t, err)
	require.Empty(t, h.routes)

	// Close (the VM stopped) unroutes open channels.
	offers = r.connect(t)
	_, _, err = r.g.Open(offers[0], 2, 2, 0)
	require.NoError(t, err)
	require.Len(t, h.routes, 1)
	r.bus.Close()
	require.Empty(t, h.routes)
}

func TestMaskSignals(t *testing.T) {
	r := newRig(t, 1, Config{})
	c, _, err := r.g.Open(r.connect(t)[0], 2, 2, 0)
	require.NoError(t, err)
	host := r.devs[0].ch
	host.MaskSignals(true)
	require.Equal(t, uint32(1), c.Out.Get(guestdrv.MaskOff))
	require.NoError(t, c.Send(ring.TypeDataInband, 0, 1, []byte("a")))
	require.Zero(t, r.bus.Stats().Channels[0].Stats.SignalsIn, "no signal while masked")
	host.MaskSignals(false)
	require.Zero(t, c.Out.Get(guestdrv.MaskOff))
	// The host drains what came unsignalled, then the guest signals again.
	r.devs[0].Interrupt(host)
	require.NoError(t, c.Send(ring.TypeDataInband, 0, 2, []byte("b")))
	require.Equal(t, uint64(1), r.bus.Stats().Channels[0].Stats.SignalsIn)
	require.Equal(t, uint64(2), r.bus.Stats().Channels[0].Stats.PacketsIn)
	// A closed channel's mask is left alone.
	require.NoError(t, c.Close())
	host.MaskSignals(true)
	require.Zero(t, c.Out.Get(guestdrv.MaskOff))
}
