package ic

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/internal/guestdrv"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// guestIC is the guest's util driver, written from hv_util.c's behaviour:
// it answers NEGOTIATE with the first of its framework and service
// versions that the host offered (counts 1/1, or 0/0 for none), passes
// other requests to handle, and sends each buffer back with the host's
// transaction id and the response flags.
type guestIC struct {
	c      *guestdrv.Channel
	fw     []uint32
	srv    []uint32
	handle func(typ uint16, msg []byte) // may rewrite msg[HeaderSize:] and status
	seen   []uint16
}

func (g *guestIC) poll(t *testing.T) int {
	t.Helper()
	n := 0
	for {
		p, ok := g.c.In.Read()
		if !ok {
			return n
		}
		n++
		require.Equal(t, uint16(ring.TypeDataInband), p.Type)
		require.NotZero(t, p.ID, "host transaction ids are non-zero")
		msg := p.Payload
		require.GreaterOrEqual(t, len(msg), HeaderSize)
		le := binary.LittleEndian
		typ := le.Uint16(msg[offType:])
		require.Equal(t, byte(flagTransaction|flagRequest), msg[offFlags])
		g.seen = append(g.seen, typ)
		if typ == TypeNegotiate {
			body := msg[HeaderSize:]
			nfw, nsrv := int(le.Uint16(body[0:])), int(le.Uint16(body[2:]))
			ver := func(i int) uint32 { return Version(le.Uint16(body[8+4*i:]), le.Uint16(body[10+4*i:])) }
			pick := func(mine []uint32, from, n int) (uint32, bool) {
				for _, v := range mine {
					for j := from; j < from+n; j++ {
						if ver(j) == v {
							return v, true
						}
					}
				}
				return 0, false
			}
			fw, ok1 := pick(g.fw, 0, nfw)
			srv, ok2 := pick(g.srv, nfw, nsrv)
			if ok1 && ok2 {
				le.PutUint16(body[0:], 1)
				le.PutUint16(body[2:], 1)
			} else {
				le.PutUint16(body[0:], 0)
				le.PutUint16(body[2:], 0)
			}
			le.PutUint16(body[8:], uint16(fw>>16))
			le.PutUint16(body[10:], uint16(fw))
			le.PutUint16(body[12:], uint16(srv>>16))
			le.PutUint16(body[14:], uint16(srv))
		} else {
			g.handle(typ, msg)
		}
		msg[offFlags] = flagTransaction | flagResponse
		require.NoError(t, g.c.Send(ring.TypeDataInband, 0, p.ID, msg))
	}
}

type rig struct {
	bus *vmbus.Bus
	g   *guestdrv.Guest
}

func newRig(t *testing.T, devs ...vmbus.Device) (*rig, []guestdrv.Offer) {
	t.Helper()
	synic := guestdrv.NewSynIC()
	mem := make(guestdrv.Mem, 8<<20)
	b := vmbus.New(vmbus.Config{Mem: mem, Host: synic, VPs: 1})
	for _, d := range devs {
		_, err := b.Add(d)
		require.NoError(t, err)
	}
	g := guestdrv.New(0, b, synic)
	g.Mem = mem
	_, err := g.Negotiate()
	require.NoError(t, err)
	offers, err := g.RequestOffers()
	require.NoError(t, err)
	return &rig{b, g}, offers
}

var linuxFW = []uint32{Version(3, 0), Version(1, 0)}

func TestHeartbeat(t *testing.T) {
	now := time.Unix(1000, 0)
	h := NewHeartbeat(func() time.Time { return now })
	r, offers := newRig(t, h)
	require.Equal(t, [16]byte(HeartbeatClass), offers[0].Class)
	require.Equal(t, StateClosed, h.Status().State)
	require.ErrorIs(t, h.Beat(), ErrNotReady)

	// Linux's util ring: 3 pages each way plus headers.
	c, st, err := r.g.Open(offers[0], 4, 4, 0)
	require.NoError(t, err)
	require.Zero(t, st)
	require.True(t, c.Interrupted(), "NEGOTIATE arrived with an interrupt")
	require.Equal(t, StateNegotiating, h.Status().State)
	require.ErrorIs(t, h.Beat(), ErrNotReady, "no beats before the versions are agreed")
	var got []uint64
	var agreed []string
	h.OnNegotiated(func(svc, fw, ver string) { agreed = append(agreed, svc+" "+fw+" "+ver) })
	g := &guestIC{c: c, fw: linuxFW, srv: []uint32{Version(3, 0), Version(1, 0)}, handle: func(typ uint16, msg []byte) {
		require.Equal(t, uint16(TypeHeartbeat), typ)
		seq := binary.LittleEndian.Uint64(msg[HeaderSize:])
		got = append(got, seq)
		require.GreaterOrEqual(t, len(msg), HeaderSize+heartbeatBody)
		binary.LittleEndian.PutUint64(msg[HeaderSize:], seq+1)
	}}
	require.Equal(t, 1, g.poll(t))
	s := h.Status()
	require.Equal(t, StateReady, s.State)
	require.Equal(t, "3.0", s.Framework)
	require.Equal(t, "3.0", s.Version)
	require.Equal(t, []string{"heartbeat 3.0 3.0"}, agreed)

	for i := range 5 {
		now = now.Add(time.Second)
		require.NoError(t, h.Beat())
		require.ErrorIs(t, h.Beat(), ErrBusy, "one beat at a time")
		require.True(t, c.Interrupted())
		require.Equal(t, 1, g.poll(t))
		require.Equal(t, uint64(i+1), h.Status().Beats)
		require.Equal(t, now, h.Status().LastBeat)
	}
	require.Equal(t, []uint64{1, 2, 3, 4, 5}, got)

	// A wrong sequence number is no beat.
	g.handle = func(_ uint16, msg []byte) { binary.LittleEndian.PutUint64(msg[HeaderSize:], 77) }
	require.NoError(t, h.Beat())
	g.poll(t)
	require.Equal(t, uint64(5), h.Status().Beats)
	require.Equal(t, uint64(1), h.Status().Ignored)

	// Close and reopen: negotiation starts over; the beat count stays.
	require.NoError(t, c.Close())
	require.Equal(t, StateClosed, h.Status().State)
	c, _, err = r.g.Open(offers[0], 4, 4, 0)
	require.NoError(t, err)
	g.c = c
	g.poll(t)
	require.Equal(t, StateReady, h.Status().State)
	require.Equal(t, uint64(2), h.Status().Opens)
}

func TestNegotiationFailsWithoutCommonVersion(t *testing.T) {
	h := NewHeartbeat(nil)
	r, offers := newRig(t, h)
	c, _, err := r.g.Open(offers[0], 4, 4, 0)
	require.NoError(t, err)
	g := &guestIC{c: c, fw: linuxFW, srv: []uint32{Version(9, 9)}}
	g.poll(t)
	require.Equal(t, StateFailed, h.Status().State)
	require.ErrorIs(t, h.Beat(), ErrNotReady)
}

func TestShutdown(t *testing.T) {
	var answers []bool
	s := NewShutdown(func(ok bool) { answers = append(answers, ok) })
	r, offers := newRig(t, NewHeartbeat(nil), s)
	require.Equal(t, [16]byte(ShutdownClass), offers[1].Class)
	c, _, err := r.g.Open(offers[1], 4, 4, 0)
	require.NoError(t, err)
	var flags []uint32
	g := &guestIC{c: c, fw: linuxFW, srv: []uint32{Version(3, 2), Version(3, 1), Version(3, 0), Version(1, 0)},
		handle: func(typ uint16, msg []byte) {
			require.Equal(t, uint16(TypeShutdown), typ)
			require.GreaterOrEqual(t, len(msg), HeaderSize+shutdownBody, "Linux drops shorter requests")
			f := binary.LittleEndian.Uint32(msg[HeaderSize+8:])
			flags = append(flags, f)
			st := uint32(StatusOK)
			if f > 3 {
				st = StatusFail // no hibernation
			}
			binary.LittleEndian.PutUint32(msg[offStatus:], st)
		}}
	g.poll(t)
	require.Equal(t, "3.2", s.Status().Version)

	require.NoError(t, s.Request(Hibernate, "test"))
	g.poll(t)
	require.Equal(t, ShutdownStatus{Status: s.Status().Status, Requested: true, Answered: true, Accepted: false}, s.Status())
	require.NoError(t, s.Request(PowerOff|Forced, "vmm: SIGTERM"))
	require.True(t, c.Interrupted())
	g.poll(t)
	require.True(t, s.Status().Accepted)
	require.Equal(t, []uint32{Hibernate, PowerOff | Forced}, flags)
	require.Equal(t, []bool{false, true}, answers)
}

func TestHostileAnswers(t *testing.T) {
	h := NewHeartbeat(nil)
	r, offers := newRig(t, h)
	c, _, err := r.g.Open(offers[0], 4, 4, 0)
	require.NoError(t, err)
	p, ok := c.In.Read()
	require.True(t, ok)
	for _, junk := range []struct {
		typ uint16
		id  uint64
		msg []byte
	}{
		{ring.TypeDataInband, p.ID, []byte{1, 2, 3}},                                       // short
		{ring.TypeDataInband, p.ID + 5, p.Payload},                                         // unknown transaction
		{ring.TypeCompletion, p.ID, p.Payload},                                             // wrong packet type
		{ring.TypeDataInband, p.ID, append(p.Payload[:HeaderSize:HeaderSize], 1, 0, 1, 0)}, // negotiate body cut short
	} {
		require.NoError(t, c.Send(junk.typ, 0, junk.id, junk.msg))
	}
	s := h.Status()
	require.Equal(t, uint64(3), s.Ignored)
	require.Equal(t, StateFailed, s.State, "a cut-short negotiate answer agrees on nothing")
}

func TestTimeSync(t *testing.T) {
	host := time.Date(2026, 12, 7, 5, 0, 0, 123456700, time.UTC)
	ref := uint64(5_000_000)
	ts := NewTimeSync(func() time.Time { return host }, func() uint64 { return ref })
	r, offers := newRig(t, ts)
	require.Equal(t, [16]byte(TimeSyncClass), offers[0].Class)
	c, _, err := r.g.Open(offers[0], 4, 4, 0)
	require.NoError(t, err)
	var got []time.Time
	var refs []uint64
	g := &guestIC{c: c, fw: linuxFW, srv: []uint32{Version(4, 0), Version(3, 0), Version(1, 0)},
		handle: func(typ uint16, msg []byte) {
			require.Equal(t, uint16(TypeTimeSync), typ)
			require.GreaterOrEqual(t, len(msg), HeaderSize+timeSyncRefBody)
			b := msg[HeaderSize:]
			parent := binary.LittleEndian.Uint64(b)
			// hv_util.c: Unix time = (parenttime - WLTIMEDELTA) * 100 ns.
			got = append(got, time.Unix(0, int64(parent-116444736000000000)*100).UTC())
			refs = append(refs, binary.LittleEndian.Uint64(b[8:]))
			require.Equal(t, byte(TimeSyncFlagSync), b[16])
		}}
	g.poll(t) // NEGOTIATE; its answer makes the host send SYNC at once
	require.Equal(t, "4.0", ts.Status().Version)
	require.True(t, c.Interrupted())
	g.poll(t)
	require.Equal(t, []time.Time{host}, got)
	require.Equal(t, []uint64{ref}, refs)
	require.Equal(t, TimeSyncStatus{Status: ts.Status().Status, Sent: 1, Answered: 1}, ts.Status())

	host, ref = host.Add(time.Minute), ref+600_000_000
	require.NoError(t, ts.Sync())
	g.poll(t)
	require.Equal(t, host, got[1])
	require.Equal(t, ref, refs[1])
}

func TestTimeSyncV3(t *testing.T) {
	host := time.Unix(1_800_000_000, 0)
	ts := NewTimeSync(func() time.Time { return host }, func() uint64 { return 0 })
	r, offers := newRig(t, ts)
	c, _, err := r.g.Open(offers[0], 4, 4, 0)
	require.NoError(t, err)
	require.ErrorIs(t, ts.Sync(), ErrNotReady)
	var flags []byte
	g := &guestIC{c: c, fw: linuxFW, srv: []uint32{Version(3, 0)}, handle: func(_ uint16, msg []byte) {
		require.GreaterOrEqual(t, len(msg), HeaderSize+timeSyncBody)
		require.Equal(t, uint64(host.UnixNano()/100+116444736000000000), binary.LittleEndian.Uint64(msg[HeaderSize:]))
		flags = append(flags, msg[HeaderSize+24])
	}}
	g.poll(t)
	g.poll(t)
	require.Equal(t, []byte{TimeSyncFlagSync}, flags)
}

// A request made while the versions are being negotiated (a SIGTERM just
// after the guest opened the channel) goes out once they are agreed; one
// made with the channel closed is refused.
func TestShutdownRequestWhileNegotiating(t *testing.T) {
	var answers []bool
	s := NewShutdown(func(ok bool) { answers = append(answers, ok) })
	r, offers := newRig(t, s)
	require.ErrorIs(t, s.Request(PowerOff|Forced, "x"), ErrNotReady, "channel not open")
	require.False(t, s.Status().Requested)
	c, _, err := r.g.Open(offers[0], 4, 4, 0)
	require.NoError(t, err)
	require.NoError(t, s.Request(PowerOff|Forced, "vmm: SIGTERM"))
	require.True(t, s.Status().Requested)
	var flags []uint32
	g := &guestIC{c: c, fw: linuxFW, srv: []uint32{Version(3, 0)}, handle: func(typ uint16, msg []byte) {
		require.Equal(t, uint16(TypeShutdown), typ)
		flags = append(flags, binary.LittleEndian.Uint32(msg[HeaderSize+8:]))
	}}
	// The guest's NEGOTIATE answer makes the host send the request.
	require.Equal(t, 2, g.poll(t))
	require.Equal(t, []uint16{TypeNegotiate, TypeShutdown}, g.seen)
	require.Equal(t, []uint32{PowerOff | Forced}, flags)
	require.Equal(t, []bool{true}, answers)
	require.True(t, s.Status().Accepted)
}
