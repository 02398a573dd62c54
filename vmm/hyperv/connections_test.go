package hyperv

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// synicOn enables SynIC on VP 0 with SIMP at 0x10000, SIEFP at 0x11000 and
// SINT 2 unmasked on vector 0x50.
func synicOn(t *testing.T, tp testPart) {
	tp.mustWrite(t, 0, MSRSControl, 1)
	tp.mustWrite(t, 0, MSRSIMP, 0x10000|pageEnable)
	tp.mustWrite(t, 0, MSRSIEFP, 0x11000|pageEnable)
	tp.mustWrite(t, 0, MSRSINT0+2, 0x50)
}

func TestMessageConnectionEchoes(t *testing.T) {
	tp := newTestPartition(t, "all", 2)
	synicOn(t, tp)
	require.NoError(t, tp.CreateMessageConnection(0, 2, 7))
	require.ErrorIs(t, tp.CreateMessageConnection(0, 2, 7), ErrRoute, "taken")
	require.ErrorIs(t, tp.CreateMessageConnection(2, 0, 8), ErrRoute, "no VP 2")
	require.ErrorIs(t, tp.CreateMessageConnection(0, 16, 8), ErrRoute, "no SINT 16")

	le := binary.LittleEndian
	in := tp.mem.b[0x7000:]
	le.PutUint32(in[0:], 7)
	le.PutUint32(in[8:], 0x42)
	le.PutUint32(in[12:], 3)
	copy(in[16:], "abc")
	post := func() uint16 { return status(tp.Call(1, input(CallPostMessage, false, 0, 0), 0x7000, 0)) }
	require.Equal(t, uint16(StatusSuccess), post())
	slot := tp.mem.b[0x10000+2*msgSlotSize:]
	require.Equal(t, uint32(0x42), le.Uint32(slot))
	require.Equal(t, byte(3), slot[4])
	require.Equal(t, "abc", string(slot[msgHeaderSize:msgHeaderSize+3]))
	require.Equal(t, []irq{{0, 0x50}}, tp.host.irqs)
	require.Equal(t, uint16(StatusInsufficientBuffers), post(), "slot still full")

	tp.DestroyMessageConnection(7)
	le.PutUint32(slot, 0)
	require.Equal(t, uint16(StatusInvalidConnectionID), post())
}

func TestEventConnectionSetsFlag(t *testing.T) {
	tp := newTestPartition(t, "all", 1)
	synicOn(t, tp)
	require.NoError(t, tp.CreateEventConnection(0, 2, 33))
	require.ErrorIs(t, tp.CreateEventConnection(0, 2, 2048), ErrRoute)
	signal := func() uint16 { return status(tp.Call(0, input(CallSignalEvent, true, 0, 0), 33, 0)) }
	require.Equal(t, uint16(StatusSuccess), signal())
	flags := tp.mem.b[0x11000+2*eventSlotSize:]
	require.Equal(t, uint32(1<<1), binary.LittleEndian.Uint32(flags[4:]), "bit 33")
	require.Equal(t, []irq{{0, 0x50}}, tp.host.irqs)
	require.Equal(t, uint16(StatusSuccess), signal())
	require.Len(t, tp.host.irqs, 1, "flag already pending: no second interrupt")
	tp.DestroyEventConnection(33)
	require.Equal(t, uint16(StatusInvalidConnectionID), signal())
}

func TestSINTRoute(t *testing.T) {
	tp := newTestPartition(t, "all", 1)
	synicOn(t, tp)
	tp.SetSINT(0, 2)
	require.Empty(t, tp.host.irqs, "no route")
	require.NoError(t, tp.CreateSINTRoute(0, 2))
	require.ErrorIs(t, tp.CreateSINTRoute(1, 2), ErrRoute)
	tp.SetSINT(0, 2)
	require.Equal(t, []irq{{0, 0x50}}, tp.host.irqs)
	tp.DestroySINTRoute(0, 2)
	tp.SetSINT(0, 2)
	require.Len(t, tp.host.irqs, 1)
}
