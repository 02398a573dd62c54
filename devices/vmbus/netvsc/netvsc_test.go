package netvsc

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/internal/guestdrv"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// fakeTap is the host side of the link: frames the guest sent arrive on
// out, frames put on in reach the guest.
type fakeTap struct {
	in, out chan []byte
	// inRaw are frames with their virtio-net header, as the tap gives them.
	inRaw chan []byte
	stop  chan struct{}
	once  sync.Once
}

func newFakeTap() *fakeTap {
	return &fakeTap{in: make(chan []byte, 16), inRaw: make(chan []byte, 16), out: make(chan []byte, 64), stop: make(chan struct{})}
}

func (f *fakeTap) Read(buf []byte) (int, error) {
	select {
	case fr := <-f.in:
		clear(buf[:tapHeader])
		return tapHeader + copy(buf[tapHeader:], fr), nil
	case fr := <-f.inRaw:
		return copy(buf, fr), nil
	case <-f.stop:
		return 0, os.ErrDeadlineExceeded
	}
}

func (f *fakeTap) Writev(bufs [][]byte) (int, error) {
	b := bytes.Join(bufs, nil)
	f.out <- b
	return len(b), nil
}

func (f *fakeTap) Interrupt() error {
	f.once.Do(func() { close(f.stop) })
	return nil
}

var testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

// guestNIC is the guest's hv_netvsc, written from netvsc.c and
// rndis_filter.c's behaviour: NVSP requests with completion requested,
// RNDIS control in send-buffer sections, frames in GPA ranges, and a
// completion for every transfer-page packet.
type guestNIC struct {
	t      *testing.T
	g      *guestdrv.Guest
	c      *guestdrv.Channel
	dev    *Device
	tap    *fakeTap
	nextID uint64
	// recv and send are the buffers' first PFNs and sizes.
	recvPFN, sendPFN   uint64
	recvSize, sendSize int
	reqID              uint32
}

const (
	testRecvPages = 64
	testSendPages = 8
)

func newGuestNIC(t *testing.T) *guestNIC {
	t.Helper()
	return newGuestNICOffloads(t, false)
}

// newGuestNICOffloads is newGuestNIC on a tap that takes offloads or not.
func newGuestNICOffloads(t *testing.T, offloads bool) *guestNIC {
	t.Helper()
	synic := guestdrv.NewSynIC()
	// RAM from 1 MiB for the rings, buffers and test pages.
	g := guestdrv.New(4<<20, nil, synic)
	bus := vmbus.New(vmbus.Config{Mem: g.Mem, Host: synic, VPs: 2})
	g.Bus = bus
	tap := newFakeTap()
	dev, err := New(Config{Mem: g.Mem, Tap: tap, TapName: "fake0", MAC: testMAC,
		Instance: vmbus.MustGUID("f8615163-0000-1000-8000-000000000001"), Offloads: offloads})
	require.NoError(t, err)
	t.Cleanup(dev.Stop)
	_, err = bus.Add(dev)
	require.NoError(t, err)
	_, err = g.Negotiate()
	require.NoError(t, err)
	offers, err := g.RequestOffers()
	require.NoError(t, err)
	require.Len(t, offers, 1)
	require.Equal(t, [16]byte(Class), offers[0].Class)
	c, st, err := g.Open(offers[0], 17, 17, 0)
	require.NoError(t, err)
	require.Zero(t, st)
	return &guestNIC{t: t, g: g, c: c, dev: dev, tap: tap, nextID: 1, reqID: 1}
}

// next waits for the host's next packet.
func (n *guestNIC) next() guestdrv.Packet {
	n.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if p, ok := n.c.In.Read(); ok {
			return p
		}
		require.True(n.t, time.Now().Before(deadline), "no packet from the host")
		time.Sleep(time.Millisecond)
	}
}

// none checks that the host sends nothing more for what the guest sent so
// far: the first packet after a barrier request is the barrier's answer.
func (n *guestNIC) none() {
	n.t.Helper()
	p := n.barrier()
	require.Equal(n.t, uint64(barrierID), p.ID, "unexpected packet from the host")
}

const barrierID = 0xba771e7

// barrier sends an unknown NVSP message asking for completion, which the
// host refuses in order, after everything sent before; it returns the
// first packet the host sends from now on.
func (n *guestNIC) barrier() guestdrv.Packet {
	n.t.Helper()
	require.NoError(n.t, n.c.Send(ring.TypeDataInband, ring.FlagCompletionRequest, barrierID, nvsp(9999)))
	return n.next()
}

// sync waits until the host has handled everything sent so far, dropping
// what it answered.
func (n *guestNIC) sync() {
	n.t.Helper()
	for p := n.barrier(); p.ID != barrierID; p = n.next() {
	}
}

func nvsp(typ uint32, fields ...uint32) []byte {
	m := make([]byte, nvspSize)
	binary.LittleEndian.PutUint32(m, typ)
	for i, f := range fields {
		binary.LittleEndian.PutUint32(m[4+4*i:], f)
	}
	return m
}

// request sends an NVSP message with completion requested and returns the
// completion's payload.
func (n *guestNIC) request(m []byte) []byte {
	n.t.Helper()
	id := n.nextID
	n.nextID++
	require.NoError(n.t, n.c.Send(ring.TypeDataInband, ring.FlagCompletionRequest, id, m))
	p := n.next()
	require.Equal(n.t, uint16(ring.TypeCompletion), p.Type)
	require.Equal(n.t, id, p.ID)
	require.GreaterOrEqual(n.t, len(p.Payload), nvspSize)
	return p.Payload
}

func u32at(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }

// connect negotiates as Linux 6.1 does and shares both buffers.
func (n *guestNIC) connect() {
	t := n.t
	r := n.request(nvsp(msgInit, nvspV61, nvspV61))
	require.Equal(t, uint32(msgInitComplete), u32at(r, 0))
	require.Equal(t, uint32(nvspV61), u32at(r, 4))
	require.Equal(t, uint32(statusSuccess), u32at(r, 12))
	require.NoError(t, n.c.Send(ring.TypeDataInband, 0, 50, nvsp(msgSendNDISConfig, 1514, 0, 0, 0)))
	require.NoError(t, n.c.Send(ring.TypeDataInband, 0, 51, nvsp(msgSendNDISVersion, 6, 30)))

	n.recvPFN = n.g.Alloc(testRecvPages)
	n.recvSize = testRecvPages * pageSize
	id, st, err := n.g.CreateGPADL(n.c.Relid, pfnRange(n.recvPFN, testRecvPages))
	require.NoError(t, err)
	require.Zero(t, st)
	r = n.request(nvsp(msgSendRecvBuf, id, 0xcafe))
	require.Equal(t, uint32(msgSendRecvBufDone), u32at(r, 0))
	require.Equal(t, uint32(statusSuccess), u32at(r, 4))
	require.Equal(t, uint32(1), u32at(r, 8), "one section")
	require.Zero(t, u32at(r, 12), "section at offset 0")
	require.Equal(t, uint32(recvSubAlloc), u32at(r, 16))
	subs := u32at(r, 20)
	require.Equal(t, uint32(n.recvSize/recvSubAlloc), subs)
	require.Equal(t, subs*recvSubAlloc, u32at(r, 24))

	n.sendPFN = n.g.Alloc(testSendPages)
	n.sendSize = testSendPages * pageSize
	id, st, err = n.g.CreateGPADL(n.c.Relid, pfnRange(n.sendPFN, testSendPages))
	require.NoError(t, err)
	require.Zero(t, st)
	r = n.request(nvsp(msgSendSendBuf, id, 0))
	require.Equal(t, uint32(msgSendSendBufDone), u32at(r, 0))
	require.Equal(t, uint32(statusSuccess), u32at(r, 4))
	require.Equal(t, uint32(sendSectionSize), u32at(r, 8))
}

func pfnRange(first uint64, n int) []uint64 {
	p := make([]uint64, n)
	for i := range p {
		p[i] = first + uint64(i)
	}
	return p
}

// rndisSend puts msg in send-buffer section 0 and sends SEND_RNDIS_PKT;
// it returns the completion's NVSP status.
func (n *guestNIC) rndisSend(msg []byte, section uint32) uint32 {
	n.t.Helper()
	copy(n.g.Mem[n.sendPFN*pageSize+uint64(section)*sendSectionSize:], msg)
	r := n.request(nvsp(msgSendRNDIS, channelControl, section, uint32(len(msg))))
	require.Equal(n.t, uint32(msgSendRNDISDone), u32at(r, 0))
	return u32at(r, 4)
}

// recvRNDIS takes the next transfer-page packet, checks it, completes it
// and returns the RNDIS message it names.
func (n *guestNIC) recvRNDIS() []byte {
	t := n.t
	t.Helper()
	p := n.next()
	require.Equal(t, uint16(ring.TypeDataXferPages), p.Type)
	require.Len(t, p.Header, 16)
	require.Equal(t, uint16(0xcafe), binary.LittleEndian.Uint16(p.Header[0:]), "pageset id as the guest gave it")
	require.Equal(t, uint32(1), u32at(p.Header, 4))
	size, off := u32at(p.Header, 8), u32at(p.Header, 12)
	require.LessOrEqual(t, uint64(off)+uint64(size), uint64(n.recvSize))
	require.LessOrEqual(t, size, uint32(recvSubAlloc))
	require.Equal(t, uint32(msgSendRNDIS), u32at(p.Payload, 0))
	require.Equal(t, uint32(invalidSection), u32at(p.Payload, 8))
	base := n.recvPFN*pageSize + uint64(off)
	msg := append([]byte(nil), n.g.Mem[base:base+uint64(size)]...)
	require.NoError(t, n.c.Send(ring.TypeCompletion, 0, p.ID, nvsp(msgSendRNDISDone, statusSuccess)))
	require.Equal(t, uint32(len(msg)), u32at(msg, 4), "msg_len is the range's length")
	return msg
}

func (n *guestNIC) rndisRequest(typ uint32, body ...uint32) []byte {
	m := make([]byte, 8+4+4*len(body))
	binary.LittleEndian.PutUint32(m[0:], typ)
	binary.LittleEndian.PutUint32(m[4:], uint32(len(m)))
	binary.LittleEndian.PutUint32(m[8:], n.reqID)
	n.reqID++
	for i, v := range body {
		binary.LittleEndian.PutUint32(m[12+4*i:], v)
	}
	return m
}

// query sends QUERY oid and returns the completion's status and data.
func (n *guestNIC) query(oid uint32) (uint32, []byte) {
	t := n.t
	t.Helper()
	req := n.rndisRequest(rndisQuery, oid, 0, 20, 0)
	require.Equal(t, uint32(statusSuccess), n.rndisSend(req, 0))
	resp := n.recvRNDIS()
	require.Equal(t, uint32(rndisQuery|rndisCompletion), u32at(resp, 0))
	require.Equal(t, u32at(req, 8), u32at(resp, 8), "request id echoed")
	buflen, off := u32at(resp, 16), u32at(resp, 20)
	require.GreaterOrEqual(t, off, uint32(16))
	require.LessOrEqual(t, uint64(8+off)+uint64(buflen), uint64(len(resp)))
	return u32at(resp, 12), resp[8+off : 8+off+buflen]
}

func (n *guestNIC) set(oid uint32, value []byte) uint32 {
	req := n.rndisRequest(rndisSet, oid, uint32(len(value)), 20, 0)
	req = append(req, value...)
	binary.LittleEndian.PutUint32(req[4:], uint32(len(req)))
	require.Equal(n.t, uint32(statusSuccess), n.rndisSend(req, 1))
	resp := n.recvRNDIS()
	require.Equal(n.t, uint32(rndisSet|rndisCompletion), u32at(resp, 0))
	return u32at(resp, 12)
}

// probe runs rndis_filter_device_add's sequence and opens the NIC.
func (n *guestNIC) probe() {
	t := n.t
	init := n.rndisRequest(rndisInit, 1, 0, 0x4000)
	require.Equal(t, uint32(statusSuccess), n.rndisSend(init, 0))
	resp := n.recvRNDIS()
	require.Equal(t, uint32(rndisInit|rndisCompletion), u32at(resp, 0))
	require.Equal(t, uint32(rndisStatusOK), u32at(resp, 12))
	require.Equal(t, uint32(1), u32at(resp, 16), "RNDIS 1.0")
	require.NotZero(t, u32at(resp, 32), "max_pkt_per_msg")

	st, v := n.query(oidMaxFrameSize)
	require.Equal(t, uint32(rndisStatusOK), st)
	require.Equal(t, uint32(MTU), u32at(v, 0))
	st, v = n.query(oidPermanentAddress)
	require.Equal(t, uint32(rndisStatusOK), st)
	require.Equal(t, []byte(testMAC), v)
	st, v = n.query(oidOffloadHWCaps)
	require.Equal(t, uint32(rndisStatusOK), st)
	// rndis_query_hwcaps: type, revision >= 1, 112 <= size <= buflen.
	require.Equal(t, byte(0xA7), v[0])
	require.GreaterOrEqual(t, v[1], byte(1))
	size := binary.LittleEndian.Uint16(v[2:])
	require.GreaterOrEqual(t, int(size), 112)
	require.LessOrEqual(t, int(size), len(v))
	require.Equal(t, uint32(rndisStatusOK), n.set(oidOffloadParameters, make([]byte, 24)))
	st, v = n.query(oidMediaConnectStatus)
	require.Equal(t, uint32(rndisStatusOK), st)
	require.Equal(t, uint32(0), u32at(v, 0), "connected")
	st, v = n.query(oidLinkSpeed)
	require.Equal(t, uint32(rndisStatusOK), st)
	require.Equal(t, uint32(linkSpeed), u32at(v, 0))
	_, v = n.query(oidRSSCapabilities)
	require.Empty(t, v, "no RSS: one queue, no sub-channels")
	st, v = n.query(0x12345678)
	require.Equal(t, uint32(rndisNotSupp), st)
	require.Empty(t, v)
	require.Equal(t, uint32(rndisStatusOK), n.set(oidPacketFilter, binary.LittleEndian.AppendUint32(nil, 0x0b)))
}

// frameMessage is an RNDIS packet message carrying frame, with a hash PPI
// before the data as Linux adds one.
func frameMessage(frame []byte) []byte {
	const ppi = 12 + 4
	m := make([]byte, rndisPacketSize+ppi+len(frame))
	le := binary.LittleEndian
	le.PutUint32(m[0:], rndisPacket)
	le.PutUint32(m[4:], uint32(len(m)))
	le.PutUint32(m[8:], rndisPacketSize-rndisHeader+ppi)
	le.PutUint32(m[12:], uint32(len(frame)))
	le.PutUint32(m[28:], rndisPacketSize-rndisHeader)
	le.PutUint32(m[32:], ppi)
	le.PutUint32(m[rndisPacketSize:], ppi)
	le.PutUint32(m[rndisPacketSize+4:], 9)
	le.PutUint32(m[rndisPacketSize+8:], 12)
	copy(m[rndisPacketSize+ppi:], frame)
	return m
}

func testFrame(n int, seed byte) []byte {
	f := make([]byte, n)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x00})
	for i := 14; i < n; i++ {
		f[i] = seed + byte(i)
	}
	return f
}

// sendGPA sends msg in GPA ranges, one page each, as
// vmbus_sendpacket_pagebuffer does; msg starts at byte start of a page so
// that it straddles pages.
func (n *guestNIC) sendGPA(msg []byte, start int) uint32 {
	t := n.t
	pages := (start + len(msg) + pageSize - 1) / pageSize
	pfn := n.g.Alloc(pages)
	copy(n.g.Mem[pfn*pageSize+uint64(start):], msg)
	le := binary.LittleEndian
	hdr := le.AppendUint32(nil, 0)
	hdr = le.AppendUint32(hdr, uint32(pages))
	left, off := len(msg), start
	for i := 0; i < pages; i++ {
		k := min(left, pageSize-off)
		hdr = le.AppendUint32(hdr, uint32(k))
		hdr = le.AppendUint32(hdr, uint32(off))
		hdr = le.AppendUint64(hdr, pfn+uint64(i))
		left -= k
		off = 0
	}
	id := n.nextID
	n.nextID++
	require.NoError(t, n.c.SendHdr(ring.TypeDataGPADirect, ring.FlagCompletionRequest, id, hdr, nvsp(msgSendRNDIS, channelData, invalidSection, 0)))
	p := n.next()
	require.Equal(t, uint16(ring.TypeCompletion), p.Type)
	require.Equal(t, id, p.ID)
	require.Equal(t, uint32(msgSendRNDISDone), u32at(p.Payload, 0))
	return u32at(p.Payload, 4)
}

// tapOutHdr waits for the next frame on the tap, with its header.
func (n *guestNIC) tapOutHdr() ([]byte, []byte) {
	n.t.Helper()
	select {
	case f := <-n.tap.out:
		return f[:tapHeader], f[tapHeader:]
	case <-time.After(5 * time.Second):
		n.t.Fatal("no frame on the tap")
		return nil, nil
	}
}

func (n *guestNIC) tapOut() []byte {
	n.t.Helper()
	select {
	case f := <-n.tap.out:
		require.Equal(n.t, make([]byte, tapHeader), f[:tapHeader], "no offload in the tap header")
		return f[tapHeader:]
	case <-time.After(5 * time.Second):
		n.t.Fatal("no frame on the tap")
		return nil
	}
}

func TestInitAndData(t *testing.T) {
	n := newGuestNIC(t)
	n.connect()
	n.probe()
	// Revoke both buffers, close, reopen and start over, as iPXE does
	// between probe and open: the new session works from scratch.
	require.NoError(t, n.c.Send(ring.TypeDataInband, 0, 60, nvsp(msgRevokeRecvBuf, 0xcafe)))
	require.NoError(t, n.c.Send(ring.TypeDataInband, 0, 61, nvsp(msgRevokeSendBuf, 0)))
	n.sync()
	require.NoError(t, n.c.Close())
	offers, err := n.g.RequestOffers()
	require.NoError(t, err)
	c, st, err := n.g.Open(offers[0], 17, 17, 0)
	require.NoError(t, err)
	require.Zero(t, st)
	n.c = c
	r := n.request(nvsp(msgSendRNDIS, channelControl, 0, 10))
	require.Equal(t, uint32(statusFail), u32at(r, 4), "a new open starts without a version")
	n.connect()
	n.probe()
	require.Equal(t, uint64(2), n.dev.Status().Opens)

	// Guest to tap: a frame in GPA ranges straddling a page boundary, then
	// two packed in one send-buffer section.
	f1 := testFrame(1514, 1)
	require.Equal(t, uint32(statusSuccess), n.sendGPA(frameMessage(f1), pageSize-100))
	require.Equal(t, f1, n.tapOut())
	f2, f3 := testFrame(60, 2), testFrame(600, 3)
	m2 := frameMessage(f2)
	pad := (8 - len(m2)%8) % 8
	m2 = append(m2, make([]byte, pad)...)
	binary.LittleEndian.PutUint32(m2[4:], uint32(len(m2)))
	both := append(m2, frameMessage(f3)...)
	copy(n.g.Mem[n.sendPFN*pageSize+2*sendSectionSize:], both)
	r = n.request(nvsp(msgSendRNDIS, channelData, 2, uint32(len(both))))
	require.Equal(t, uint32(statusSuccess), u32at(r, 4))
	require.Equal(t, f2, n.tapOut())
	require.Equal(t, f3, n.tapOut())

	// Linux's cp_partial: a packet batched behind another whose RNDIS
	// header alone fits the section; its frame follows in GPA ranges.
	f4, f5 := testFrame(100, 4), testFrame(1400, 5)
	m4 := frameMessage(f4)
	m4 = append(m4, make([]byte, (8-len(m4)%8)%8)...)
	binary.LittleEndian.PutUint32(m4[4:], uint32(len(m4)))
	m5 := frameMessage(f5)
	hdr5 := m5[:len(m5)-len(f5)]
	sect := append(append([]byte(nil), m4...), hdr5...)
	copy(n.g.Mem[n.sendPFN*pageSize+3*sendSectionSize:], sect)
	pfn := n.g.Alloc(1)
	copy(n.g.Mem[pfn*pageSize+200:], f5)
	le := binary.LittleEndian
	gpa := le.AppendUint32(nil, 0)
	gpa = le.AppendUint32(gpa, 1)
	gpa = le.AppendUint32(gpa, uint32(len(f5)))
	gpa = le.AppendUint32(gpa, 200)
	gpa = le.AppendUint64(gpa, pfn)
	require.NoError(t, n.c.SendHdr(ring.TypeDataGPADirect, ring.FlagCompletionRequest, 4242, gpa,
		nvsp(msgSendRNDIS, channelData, 3, uint32(len(sect)))))
	p := n.next()
	require.Equal(t, uint64(4242), p.ID)
	require.Equal(t, uint32(statusSuccess), u32at(p.Payload, 4))
	require.Equal(t, f4, n.tapOut())
	require.Equal(t, f5, n.tapOut())

	// Tap to guest: many frames, more than fit at once in the ring, each
	// in a sub-allocation the guest completes.
	for i := range 40 {
		f := testFrame(1514, byte(i))
		n.tap.in <- f
		msg := n.recvRNDIS()
		require.Equal(t, uint32(rndisPacket), u32at(msg, 0))
		data, _, err := parsePacket(msg)
		require.NoError(t, err)
		require.Equal(t, f, data)
	}

	s := n.dev.Status()
	require.Equal(t, "6.1", s.NVSP)
	require.Equal(t, "6.30", s.NDIS)
	require.Equal(t, "1.0", s.RNDIS)
	require.Equal(t, uint32(0x0b), s.Filter)
	require.Equal(t, uint64(5), s.TxPackets)
	require.Equal(t, uint64(1514+60+600+100+1400), s.TxBytes)
	require.Equal(t, uint64(40), s.RxPackets)
	require.Equal(t, uint64(40*1514), s.RxBytes)
	require.Contains(t, s.OIDsQueried, "0x01010101")
	require.Contains(t, s.OIDsQueried, "0xfc01020d")
	require.Contains(t, s.OIDsSet, "0x0001010e")
	require.Equal(t, uint32(testRecvPages*pageSize/recvSubAlloc), s.RecvSubAllocs)

	// Link down and up reach the guest as status indications; frames
	// meanwhile are dropped.
	n.dev.SetLink(false)
	msg := n.recvRNDIS()
	require.Equal(t, uint32(rndisIndicate), u32at(msg, 0))
	require.Equal(t, uint32(rndisMediaDisconnect), u32at(msg, 8))
	st, v := n.query(oidMediaConnectStatus)
	require.Equal(t, uint32(rndisStatusOK), st)
	require.Equal(t, uint32(1), u32at(v, 0))
	n.dev.SetLink(true)
	n.dev.SetLink(true) // no change, no indication
	msg = n.recvRNDIS()
	require.Equal(t, uint32(rndisMediaConnect), u32at(msg, 8))
	require.Equal(t, uint64(2), n.dev.Status().LinkChanges)

	// Closing: the filter goes to 0, and from then on no frame reaches
	// the guest.
	require.Equal(t, uint32(rndisStatusOK), n.set(oidPacketFilter, make([]byte, 4)))
	dropped := n.dev.Status().RxDropped
	n.tap.in <- testFrame(100, 9)
	deadline := time.Now().Add(5 * time.Second)
	for n.dev.Status().RxDropped == dropped {
		require.True(t, time.Now().Before(deadline))
		time.Sleep(time.Millisecond)
	}
	n.none()
	require.NoError(t, n.c.Close())
}

// TestBackPressure: the guest holds its completions; once the receive
// buffer's sub-allocations are all out, frames wait (none is lost or
// written over) until the guest completes.
func TestBackPressure(t *testing.T) {
	n := newGuestNIC(t)
	n.connect()
	n.probe()
	subs := testRecvPages * pageSize / recvSubAlloc
	var held []guestdrv.Packet
	go func() {
		for i := range subs + 5 {
			n.tap.in <- testFrame(200, byte(i))
		}
	}()
	for len(held) < subs {
		p := n.next()
		require.Equal(t, uint16(ring.TypeDataXferPages), p.Type)
		held = append(held, p)
	}
	n.none()
	seen := map[uint32]bool{}
	for _, p := range held {
		off := u32at(p.Header, 12)
		require.False(t, seen[off], "a sub-allocation used twice")
		seen[off] = true
	}
	for _, p := range held[:5] {
		require.NoError(t, n.c.Send(ring.TypeCompletion, 0, p.ID, nvsp(msgSendRNDISDone, statusSuccess)))
	}
	for i := range 5 {
		msg := n.recvRNDIS()
		data, _, err := parsePacket(msg)
		require.NoError(t, err)
		require.Equal(t, testFrame(200, byte(subs+i)), data)
	}
}

func TestVersions(t *testing.T) {
	for _, v := range nvspVersions {
		n := newGuestNIC(t)
		r := n.request(nvsp(msgInit, v, v))
		require.Equal(t, uint32(statusSuccess), u32at(r, 12))
		require.Equal(t, v, u32at(r, 4))
		require.Equal(t, nvspVersionString(v), n.dev.Status().NVSP)
	}
	n := newGuestNIC(t)
	r := n.request(nvsp(msgInit, 0x50001, 0x50001))
	require.Equal(t, uint32(statusFail), u32at(r, 12), "no such version")
	// iPXE-style range: the highest inside wins.
	r = n.request(nvsp(msgInit, nvspV1, nvspV4))
	require.Equal(t, uint32(nvspV4), u32at(r, 4))
}

// TestHostile: out-of-order and malformed guest input gets a failure
// status or is dropped, and the NIC keeps working.
func TestHostile(t *testing.T) {
	n := newGuestNIC(t)
	// Before INIT.
	r := n.request(nvsp(msgSendRecvBuf, 1, 0xcafe))
	require.Equal(t, uint32(msgSendRecvBufDone), u32at(r, 0))
	require.Equal(t, uint32(statusFail), u32at(r, 4))
	r = n.request(nvsp(msgSendRNDIS, 1, 0, 10))
	require.Equal(t, uint32(statusFail), u32at(r, 4))
	n.connect()
	// A second receive buffer, a GPADL that does not exist.
	r = n.request(nvsp(msgSendRecvBuf, 0xdead, 0xcafe))
	require.Equal(t, uint32(statusFail), u32at(r, 4))
	// Section index out of range; section size past the section.
	r = n.request(nvsp(msgSendRNDIS, 1, uint32(n.sendSize/sendSectionSize), 10))
	require.Equal(t, uint32(statusInvalidRNDIS), u32at(r, 4))
	r = n.request(nvsp(msgSendRNDIS, 1, 0, sendSectionSize+1))
	require.Equal(t, uint32(statusInvalidRNDIS), u32at(r, 4))
	r = n.request(nvsp(msgSendRNDIS, 1, invalidSection, 10))
	require.Equal(t, uint32(statusInvalidRNDIS), u32at(r, 4), "inband without a section")
	// RNDIS msg_len past what carried it; a short QUERY; a packet whose
	// data lies outside it; an unknown RNDIS type.
	bad := n.rndisRequest(rndisQuery, oidMaxFrameSize, 0, 20, 0)
	binary.LittleEndian.PutUint32(bad[4:], 4000)
	require.Equal(t, uint32(statusInvalidRNDIS), n.rndisSend(bad, 0))
	require.Equal(t, uint32(statusInvalidRNDIS), n.rndisSend(n.rndisRequest(rndisQuery), 0))
	pkt := frameMessage(testFrame(100, 1))
	binary.LittleEndian.PutUint32(pkt[12:], 5000)
	require.Equal(t, uint32(statusInvalidRNDIS), n.rndisSend(pkt, 0))
	require.Equal(t, uint32(statusInvalidRNDIS), n.rndisSend(n.rndisRequest(0x77), 0))
	// GPA ranges outside RAM, and claiming more PFNs than the header has.
	le := binary.LittleEndian
	hdr := le.AppendUint32(nil, 0)
	hdr = le.AppendUint32(hdr, 1)
	hdr = le.AppendUint32(hdr, 100)
	hdr = le.AppendUint32(hdr, 0)
	hdr = le.AppendUint64(hdr, 1<<40)
	require.NoError(t, n.c.SendHdr(ring.TypeDataGPADirect, ring.FlagCompletionRequest, 77, hdr, nvsp(msgSendRNDIS, 0, invalidSection, 0)))
	p := n.next()
	require.Equal(t, uint64(77), p.ID)
	require.Equal(t, uint32(statusInvalidRNDIS), u32at(p.Payload, 4))
	le.PutUint32(hdr[4:], 9)
	require.NoError(t, n.c.SendHdr(ring.TypeDataGPADirect, ring.FlagCompletionRequest, 78, hdr, nvsp(msgSendRNDIS, 0, invalidSection, 0)))
	p = n.next()
	require.Equal(t, uint32(statusInvalidRNDIS), u32at(p.Payload, 4))
	// Completions for packets never sent; a sub-channel request.
	require.NoError(t, n.c.Send(ring.TypeCompletion, 0, 12345, nvsp(msgSendRNDISDone, 1)))
	require.NoError(t, n.c.Send(ring.TypeCompletion, 0, xferBase+3, nvsp(msgSendRNDISDone, 1)))
	r = n.request(nvsp(msgSubchannel, 1, 1))
	require.Equal(t, uint32(statusFail), u32at(r, 4))
	n.none()
	// Still working.
	n.probe()
	require.Equal(t, uint32(statusSuccess), n.sendGPA(frameMessage(testFrame(64, 5)), 0))
	require.Equal(t, testFrame(64, 5), n.tapOut())
	require.NotZero(t, n.dev.Status().Bad)
}
