package netvsc

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/internal/guestdrv"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// ipxeMTU is the most iPXE's netvsc takes in one host packet (NETVSC_MTU:
// descriptor, payload and trailer).
const ipxeMTU = 512

// newIPXENIC connects as iPXE's vmbus.c and netvsc.c do: VMBus 3.0, UNLOAD,
// 0.13 with the interrupt page; the receive buffer's GPADL (16 pages,
// here not page-aligned) before the ring's, one page of ring each way.
func newIPXENIC(t *testing.T) *guestNIC {
	t.Helper()
	synic := guestdrv.NewSynIC()
	g := guestdrv.New(4<<20, nil, synic)
	bus := vmbus.New(vmbus.Config{Mem: g.Mem, Host: synic, VPs: 1})
	g.Bus = bus
	tap := newFakeTap()
	dev, err := New(Config{Mem: g.Mem, Tap: tap, TapName: "fake0", MAC: testMAC, Instance: vmbus.MustGUID("f8615163-0000-1000-8000-000000000002")})
	require.NoError(t, err)
	t.Cleanup(dev.Stop)
	_, err = bus.Add(dev)
	require.NoError(t, err)
	require.NoError(t, g.NegotiateIPXE())
	offers, err := g.RequestOffers()
	require.NoError(t, err)
	require.Len(t, offers, 1)
	n := &guestNIC{t: t, g: g, dev: dev, tap: tap, nextID: 1, reqID: 1, recvOff: 0x80, pageset: 0xbead,
		emptyComplete: true, recvSize: 16 * pageSize}
	n.recvPFN = g.Alloc(17)
	id, st, err := g.CreateRange(offers[0].Relid, uint32(n.recvOff), uint32(n.recvSize), pfnRange(n.recvPFN, 17))
	require.NoError(t, err)
	require.Zero(t, st)
	c, st, err := g.Open(offers[0], 2, 2, 0)
	require.NoError(t, err)
	require.Zero(t, st)
	n.c = c

	r := n.request(nvsp(msgInit, nvspV1, nvspV1))
	require.Equal(t, uint32(msgInitComplete), u32at(r, 0))
	require.Equal(t, uint32(nvspV1), u32at(r, 4))
	require.Equal(t, uint32(statusSuccess), u32at(r, 12))
	// iPXE waits for a completion of its NDIS version.
	r = n.request(nvsp(msgSendNDISVersion, 6, 1))
	require.Equal(t, uint32(msgSendNDISVersion), u32at(r, 0))
	r = n.request(nvsp(msgSendRecvBuf, id, 0xbead))
	require.Equal(t, uint32(msgSendRecvBufDone), u32at(r, 0))
	require.Equal(t, uint32(statusSuccess), u32at(r, 4))
	require.Equal(t, uint32(1), u32at(r, 8), "one section")
	return n
}

// ipxeSend sends one RNDIS message as netvsc_transmit does: GPA_DIRECT,
// one range over the message's pages, completion requested; control
// messages on the control channel type.
func (n *guestNIC) ipxeSend(msg []byte, start int) {
	t := n.t
	t.Helper()
	pages := (start + len(msg) + pageSize - 1) / pageSize
	pfn := n.g.Alloc(pages)
	copy(n.g.Mem[pfn*pageSize+uint64(start):], msg)
	le := binary.LittleEndian
	hdr := le.AppendUint32(nil, 0)
	hdr = le.AppendUint32(hdr, 1)
	hdr = le.AppendUint32(hdr, uint32(len(msg)))
	hdr = le.AppendUint32(hdr, uint32(start))
	for i := range pages {
		hdr = le.AppendUint64(hdr, pfn+uint64(i))
	}
	chanType := uint32(channelControl)
	if le.Uint32(msg) == rndisPacket {
		chanType = channelData
	}
	id := n.nextID
	n.nextID++
	require.NoError(t, n.c.SendHdr(ring.TypeDataGPADirect, ring.FlagCompletionRequest, id, hdr, nvsp(msgSendRNDIS, chanType, invalidSection, 0)))
	p := n.next()
	require.Equal(t, uint16(ring.TypeCompletion), p.Type)
	require.Equal(t, id, p.ID)
	require.Equal(t, uint32(statusSuccess), u32at(p.Payload, 4))
}

func TestIPXESession(t *testing.T) {
	n := newIPXENIC(t)
	// rndis_initialise, rndis_describe's queries, the filter.
	n.ipxeSend(n.rndisRequest(rndisInit, 1, 0, 2048), 100)
	resp := n.recvRNDIS()
	require.Equal(t, uint32(rndisInit|rndisCompletion), u32at(resp, 0))
	require.Equal(t, uint32(rndisStatusOK), u32at(resp, 12))
	for _, oid := range []uint32{oidPermanentAddress, oidCurrentAddress, oidMediaConnectStatus} {
		n.ipxeSend(n.rndisRequest(rndisQuery, oid, 0, 20, 0), 4000) // straddles a page
		resp = n.recvRNDIS()
		require.Equal(t, uint32(rndisQuery|rndisCompletion), u32at(resp, 0))
		require.Equal(t, uint32(rndisStatusOK), u32at(resp, 12), "OID %#x", oid)
		if oid != oidMediaConnectStatus {
			require.Equal(t, []byte(testMAC), resp[8+u32at(resp, 20):][:6])
		}
	}
	set := n.rndisRequest(rndisSet, oidPacketFilter, 4, 20, 0)
	set = binary.LittleEndian.AppendUint32(set, 0x0f)
	binary.LittleEndian.PutUint32(set[4:], uint32(len(set)))
	n.ipxeSend(set, 0)
	resp = n.recvRNDIS()
	require.Equal(t, uint32(rndisSet|rndisCompletion), u32at(resp, 0))
	require.Equal(t, uint32(rndisStatusOK), u32at(resp, 12))

	// Frames each way; every host packet fits iPXE's 512 bytes.
	f := testFrame(342, 7) // a DHCP request's size
	n.ipxeSend(ipxeFrameMessage(f), 3000)
	require.Equal(t, f, n.tapOut())
	for i := range 60 { // more than the 37 sub-allocations: completions free them
		f := testFrame(1514, byte(i))
		n.tap.in <- f
		p := n.next()
		require.LessOrEqual(t, 16+len(p.Header)+len(p.Payload)+8, ipxeMTU)
		require.Equal(t, uint16(ring.TypeDataXferPages), p.Type)
		require.Equal(t, uint16(0xbead), binary.LittleEndian.Uint16(p.Header))
		off, size := u32at(p.Header, 12), u32at(p.Header, 8)
		base := n.recvPFN*pageSize + n.recvOff + uint64(off)
		data, _, err := parsePacket(n.g.Mem[base : base+uint64(size)])
		require.NoError(t, err)
		require.Equal(t, f, data)
		require.NoError(t, n.c.Send(ring.TypeCompletion, 0, p.ID, nil))
	}
	s := n.dev.Status()
	require.Equal(t, "1", s.NVSP)
	require.Equal(t, "6.1", s.NDIS)
	require.Equal(t, uint64(60), s.RxPackets)
	require.Zero(t, s.Bad)

	// netvsc_close: revoke (completion awaited), close, tear down.
	r := n.request(nvsp(msgRevokeRecvBuf, 0xbead))
	require.Equal(t, uint32(msgRevokeRecvBuf), u32at(r, 0))
	require.NoError(t, n.c.Close())
}

// ipxeFrameMessage is rndis_tx_data's packet message: iPXE's struct
// rndis_packet_message has no VcHandle, so the data starts at byte 40.
func ipxeFrameMessage(frame []byte) []byte {
	m := make([]byte, 40+len(frame))
	le := binary.LittleEndian
	le.PutUint32(m[0:], rndisPacket)
	le.PutUint32(m[4:], uint32(len(m)))
	le.PutUint32(m[8:], 32)
	le.PutUint32(m[12:], uint32(len(frame)))
	copy(m[40:], frame)
	return m
}
