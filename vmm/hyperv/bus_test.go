package hyperv

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/ic"
)

// TestVMBusOverSynIC runs the VMBus control protocol through the real
// hypercall and SynIC paths: posts reach the bus, its answers land in the
// message page, a busy slot holds them until the guest's EOM, and channel
// interrupts set event flags.
func TestVMBusOverSynIC(t *testing.T) {
	tp := newTestPartition(t, "all", 2)
	synicOn(t, tp)
	le := binary.LittleEndian
	post := func(gpa uint64, conn uint32, msg []byte) uint16 {
		in := tp.mem.b[gpa:]
		le.PutUint32(in[0:], conn)
		le.PutUint32(in[8:], 1)
		le.PutUint32(in[12:], uint32(len(msg)))
		copy(in[16:], msg)
		return status(tp.Call(0, input(CallPostMessage, false, 0, 0), gpa, 0))
	}
	contact := make([]byte, 40)
	le.PutUint32(contact, 14)
	le.PutUint32(contact[8:], vmbus.Version5_3)
	contact[16] = 2
	require.Equal(t, uint16(StatusInvalidConnectionID), post(0x7000, 4, contact), "no bus attached")

	b := vmbus.New(vmbus.Config{Mem: tp.mem, Host: tp.BusHost(), VPs: 2})
	hb := ic.NewHeartbeat(nil)
	_, err := b.Add(hb)
	require.NoError(t, err)
	_, err = b.Add(ic.NewShutdown(nil))
	require.NoError(t, err)
	tp.AttachBus(b)

	// A 40-byte message ending at the page's end is valid input.
	require.Equal(t, uint16(StatusSuccess), post(0x8000-16-40, 4, contact))
	slot := tp.mem.b[0x10000+2*msgSlotSize:]
	require.Equal(t, uint32(1), le.Uint32(slot), "VMBus message type")
	require.Equal(t, byte(16), slot[4])
	require.Equal(t, uint32(15), le.Uint32(slot[msgHeaderSize:]), "VERSION_RESPONSE")
	require.Equal(t, byte(1), slot[msgHeaderSize+8], "5.3 accepted")
	require.Len(t, tp.host.takeIRQs(), 1)

	// REQUESTOFFERS while the slot is still full: nothing is lost.
	require.Equal(t, uint16(StatusSuccess), post(0x7000, 1, []byte{3, 0, 0, 0, 0, 0, 0, 0}))
	require.Equal(t, byte(1), slot[5]&1, "message pending")
	var types []uint32
	for range 4 {
		// The guest empties the slot and, seeing msg_pending, writes EOM.
		le.PutUint32(slot, 0)
		tp.mustWrite(t, 0, MSREOM, 0)
		if le.Uint32(slot) != 0 {
			types = append(types, le.Uint32(slot[msgHeaderSize:]))
		}
	}
	require.Equal(t, []uint32{1, 1, 4}, types, "two offers, then ALLOFFERS_DELIVERED")

	// An unknown connection still answers INVALID_CONNECTION_ID.
	require.Equal(t, uint16(StatusInvalidConnectionID), post(0x7000, 9, contact))
	require.Equal(t, uint16(StatusInvalidConnectionID), status(tp.Call(0, input(CallSignalEvent, true, 0, 0), 99, 0)))

	// Channel interrupts: flag 5 in SINT 2's event slot of VP 0, once.
	tp.host.takeIRQs()
	h := tp.BusHost()
	h.SignalEvent(0, 2, 5)
	h.SignalEvent(0, 2, 5)
	flags := tp.mem.b[0x11000+2*eventSlotSize:]
	require.Equal(t, uint32(1<<5), le.Uint32(flags))
	require.Len(t, tp.host.takeIRQs(), 1)
	h.SignalEvent(1, 2, 5) // VP 1 has no SynIC on: nothing
	h.SignalEvent(7, 2, 5) // no VP 7
	require.False(t, h.PostMessage(7, 2, []byte{1}))
	require.Empty(t, tp.host.takeIRQs())
}
