// Package netvsc is the host side of Hyper-V's synthetic network adapter
// (a VSP for Linux's hv_netvsc), over a host tap interface. Sources: Linux
// drivers/net/hyperv (netvsc.c, rndis_filter.c, hyperv_net.h),
// include/linux/rndis.h; facts in the project's reference notes
// (vmbus.md sections 11 and 12).
//
// Two layers ride on the VMBus channel. NVSP (inband packets of 40-byte
// messages) negotiates the protocol version (1 to 6.1, as the guest asks)
// and shares two buffers through GPADLs: the receive buffer, one section
// cut into 1728-byte sub-allocations as Hyper-V does, where the host puts
// every message for the guest and names it by a transfer-page packet; and
// the send buffer, 6144-byte sections the guest fills. RNDIS runs inside
// NVSP's SEND_RNDIS_PKT: initialize, query, set, halt, reset, keepalive,
// status indications (link up and down) and data packets. Guest frames
// arrive in a send-buffer section or in GPA page ranges; host frames go
// into a free sub-allocation, which the guest hands back with a
// completion.
//
// When the tap takes offloads (Config.Offloads) the NIC offers TCP and UDP
// checksums and LSOv2 as Hyper-V does (offload.go): the guest's
// per-packet info becomes the tap's virtio-net header, and frames the host
// kernel left unsummed (the tap takes checksum offload, not segmentation:
// each frame fits a sub-allocation) are summed here and marked verified
// for the guest. One queue (no receive-side scaling, so the guest asks for
// no sub-channels).
//
// Threads: Interrupt, called on a vCPU, only wakes the device's worker
// goroutine, which drains the guest's ring; a receive goroutine reads the
// tap for the device's lifetime. Frames are dropped while the channel is
// closed, the guest's packet filter is zero (Linux clears it before it
// closes) or the link is down. When the guest has no free sub-allocation
// or ring room, the receive goroutine waits for its completions or its
// signal; the tap's kernel queue absorbs (or drops) the rest.
//
// Everything from the guest is checked: an out-of-order or malformed NVSP
// message gets a failure status (or is dropped when it asked for no
// answer), an RNDIS message that lies outside what carried it is dropped,
// section indices and GPA ranges are bounds-checked, and the number of
// answers the host holds for a guest that does not read is bounded.
package netvsc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/gpadl"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// Class is the synthetic network adapter's class (hyperv.h HV_NIC_GUID).
var Class = vmbus.MustGUID("f8615163-df3e-46c5-913f-f2d2f965ed0e")

// NVSP protocol versions the host accepts (hyperv_net.h).
const (
	nvspV1  = 2
	nvspV2  = 0x30002
	nvspV4  = 0x40000
	nvspV5  = 0x50000
	nvspV6  = 0x60000
	nvspV61 = 0x60001
)

var nvspVersions = []uint32{nvspV61, nvspV6, nvspV5, nvspV4, nvspV2, nvspV1}

// NVSP message types and status values (hyperv_net.h).
const (
	msgInit              = 1
	msgInitComplete      = 2
	msgSendNDISVersion   = 100
	msgSendRecvBuf       = 101
	msgSendRecvBufDone   = 102
	msgRevokeRecvBuf     = 103
	msgSendSendBuf       = 104
	msgSendSendBufDone   = 105
	msgRevokeSendBuf     = 106
	msgSendRNDIS         = 107
	msgSendRNDISDone     = 108
	msgSendNDISConfig    = 125
	msgSubchannel        = 133
	statusSuccess        = 1
	statusFail           = 2
	statusInvalidRNDIS   = 5
	nvspSize             = 40 // sizeof(struct nvsp_message)
	invalidSection       = 0xffffffff
	channelData          = 0
	channelControl       = 1
	recvSubAlloc         = 1728 // NETVSC_RECV_SECTION_SIZE: MTU frame + RNDIS header fits
	sendSectionSize      = 6144 // NETVSC_SEND_SECTION_SIZE
	maxPacketsPerMessage = 8
	maxTransfer          = 0x40000
	// tapHeader is the virtio-net header before every frame on the tap.
	tapHeader = 12
	// xferBase is the first transaction id of receive-buffer packets:
	// sub-allocation i travels as xferBase+i.
	xferBase = 1 << 32
	// maxGather bounds what one guest packet's GPA ranges may carry.
	maxGather = 1 << 17
	// maxHeld bounds the host packets (completions, control answers)
	// waiting for ring room or a sub-allocation; past it the host stops
	// reading the guest's ring until the guest makes room.
	maxHeld = 1024
	// maxOIDs bounds the distinct OIDs the report lists.
	maxOIDs = 64
)

// Tap is the host side of the link: frames with a tapHeader-byte
// virtio-net header in front (devices/virtio/net.Tap).
type Tap interface {
	// Read blocks until a frame arrives or Interrupt is called.
	Read(buf []byte) (int, error)
	Writev(bufs [][]byte) (int, error)
	// Interrupt makes Read return an error, for good.
	Interrupt() error
}

// Config sets a Device up.
type Config struct {
	Mem Memory
	Tap Tap
	// TapName is what the report calls the tap.
	TapName string
	MAC     net.HardwareAddr
	// Instance names the device to the guest (if_instance).
	Instance vmbus.GUID
	// Offloads: the tap takes checksum and TSO offloads on write and
	// hands over frames with checksums left to the NIC (TUN_F_CSUM), so
	// the NIC offers them to the guest.
	Offloads bool
	Log      *slog.Logger
}

// Device is one synthetic NIC. Its methods are safe for concurrent use.
type Device struct {
	cfg    Config
	log    *slog.Logger
	mac    [6]byte
	kick   chan struct{} // wakes the worker
	rxWake chan struct{} // wakes a waiting receive
	stop   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
	warned atomic.Bool
	buf    []byte // the worker's packet buffer

	mu   sync.Mutex
	ch   *vmbus.Channel
	s    session
	link bool
	st   Status
}

// session is what one channel open negotiated.
type session struct {
	nvsp                 uint32
	ndisMajor, ndisMinor uint32
	mtu                  uint32
	recv                 *guestBuf
	recvID               uint16
	free                 []uint32 // free sub-allocations, used as a stack
	inUse                []bool
	send                 *guestBuf
	rndis                rndisState
	ctrl                 [][]byte  // RNDIS answers waiting for a sub-allocation
	held                 []heldPkt // host packets waiting for ring room
}

type heldPkt struct {
	id      uint64
	payload []byte
}

// Status is the report's view of the NIC.
type Status struct {
	Tap   string `json:"tap"`
	MAC   string `json:"mac"`
	Opens uint64 `json:"opens"`
	// NVSP, NDIS and RNDIS are the versions the guest last negotiated
	// ("6.1"); they stay after the channel closes.
	NVSP  string `json:"nvsp,omitempty"`
	NDIS  string `json:"ndis,omitempty"`
	RNDIS string `json:"rndis,omitempty"`
	// RecvSubAllocs and SendSections describe the shared buffers.
	RecvSubAllocs uint32 `json:"recv_suballocs"`
	SendSections  uint32 `json:"send_sections"`
	Filter        uint32 `json:"packet_filter"`
	Link          bool   `json:"link"`
	// LinkChanges counts SetLink's changes of the link state.
	LinkChanges uint64 `json:"link_changes"`
	// OIDsQueried and OIDsSet list the RNDIS OIDs the guest used, in hex,
	// first use first.
	OIDsQueried []string `json:"oids_queried"`
	OIDsSet     []string `json:"oids_set"`
	// Tx is guest to tap, Rx tap to guest.
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	// TxDropped: guest frames the tap refused or that were malformed;
	// RxDropped: tap frames the guest could not take (closed, filter
	// zero, link down, too large).
	TxDropped uint64 `json:"tx_dropped"`
	RxDropped uint64 `json:"rx_dropped"`
	// TxChecksum and TxLSO count guest frames that left their checksum
	// or their segmentation to the host; RxChecksum tap frames the guest
	// was told are verified.
	TxChecksum uint64 `json:"tx_csum_offloaded"`
	TxLSO      uint64 `json:"tx_lso"`
	RxChecksum uint64 `json:"rx_csum_verified"`
	// Bad counts guest messages refused or dropped as malformed or out of
	// order.
	Bad uint64 `json:"bad"`
}

// New returns a NIC on cfg.Tap and starts its goroutines; Stop stops them.
func New(cfg Config) (*Device, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.MAC) != 6 || cfg.MAC[0]&1 != 0 {
		return nil, fmt.Errorf("netvsc: MAC %v: need a 6-byte unicast address", cfg.MAC)
	}
	d := &Device{cfg: cfg, log: cfg.Log, kick: make(chan struct{}, 1), rxWake: make(chan struct{}, 1),
		stop: make(chan struct{}), buf: make([]byte, 1<<16), link: true}
	copy(d.mac[:], cfg.MAC)
	d.st.Tap, d.st.MAC, d.st.Link = cfg.TapName, cfg.MAC.String(), true
	d.st.OIDsQueried, d.st.OIDsSet = []string{}, []string{}
	d.wg.Add(2)
	go d.work()
	go d.receive()
	return d, nil
}

// Stop stops the NIC's goroutines; it does not close the tap.
func (d *Device) Stop() {
	if d.closed.Swap(true) {
		return
	}
	close(d.stop)
	if err := d.cfg.Tap.Interrupt(); err != nil {
		d.log.Warn("netvsc: interrupt tap read", "err", err)
	}
	d.wg.Wait()
}

// Offer implements vmbus.Device.
func (d *Device) Offer() vmbus.Offer {
	return vmbus.Offer{Class: Class, Instance: d.cfg.Instance}
}

// Open implements vmbus.Device: a fresh session; the guest speaks first.
func (d *Device) Open(c *vmbus.Channel) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ch = c
	d.s = session{}
	d.st.Opens++
	return nil
}

// Opened implements vmbus.Device.
func (d *Device) Opened(*vmbus.Channel) {}

// Interrupt implements vmbus.Device; it never blocks.
func (d *Device) Interrupt(*vmbus.Channel) {
	poke(d.kick)
	poke(d.rxWake)
}

// Close implements vmbus.Device: the session ends and receive stops.
func (d *Device) Close(c *vmbus.Channel) {
	d.mu.Lock()
	if d.ch == c {
		d.ch = nil
		d.s = session{}
	}
	d.mu.Unlock()
	poke(d.rxWake)
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// SetLink brings the link up or down; the guest is told by an RNDIS status
// indication, and no frames reach it while the link is down.
func (d *Device) SetLink(up bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.link == up {
		return
	}
	d.link, d.st.Link = up, up
	d.st.LinkChanges++
	if d.ch != nil && d.s.rndis.initialized {
		status := uint32(rndisMediaDisconnect)
		if up {
			status = rndisMediaConnect
		}
		d.queueControl(indicateMessage(status))
		d.flushLocked(d.ch)
	}
}

// Status returns the report's view.
func (d *Device) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.st
	st.OIDsQueried = append([]string(nil), d.st.OIDsQueried...)
	st.OIDsSet = append([]string(nil), d.st.OIDsSet...)
	st.RecvSubAllocs = uint32(len(d.s.inUse))
	if d.s.send != nil {
		st.SendSections = d.s.send.size / sendSectionSize
	}
	st.Filter = d.s.rndis.filter
	return st
}

func nvspVersionString(v uint32) string {
	switch v {
	case nvspV1:
		return "1"
	case nvspV2:
		return "2"
	case nvspV61:
		return "6.1"
	}
	return fmt.Sprint(v >> 16)
}

// bad counts a refused guest message; the first is logged at warn level.
func (d *Device) bad(msg string, args ...any) {
	d.st.Bad++
	if !d.warned.Swap(true) {
		d.log.Warn("netvsc: "+msg+" (further ones at debug level)", args...)
		return
	}
	d.log.Debug("netvsc: "+msg, args...)
}

// work drains the guest's ring whenever the guest signals.
func (d *Device) work() {
	defer d.wg.Done()
	for {
		select {
		case <-d.stop:
			return
		case <-d.kick:
		}
		d.drain()
	}
}

func (d *Device) drain() {
	d.mu.Lock()
	c := d.ch
	d.mu.Unlock()
	if c == nil {
		return
	}
	for {
		d.mu.Lock()
		full := len(d.s.held) >= maxHeld || len(d.s.ctrl) >= maxHeld
		d.mu.Unlock()
		if full {
			break // the guest's signal for ring room resumes this
		}
		p, ok, err := c.Recv(d.buf)
		if err != nil || !ok {
			break
		}
		var g *gpadl.GPADL
		var gerr error
		if id, ok := bufferGPADL(p); ok {
			// Looked up before d.mu: the bus holds its lock while it
			// calls into the device.
			gg, err := c.GPADL(id)
			g, gerr = &gg, err
		}
		d.mu.Lock()
		if d.ch != c {
			d.mu.Unlock()
			return
		}
		frames := d.packet(c, p, g, gerr)
		d.mu.Unlock()
		d.transmit(frames)
	}
	c.RecvDone()
	d.mu.Lock()
	if d.ch == c {
		d.flushLocked(c)
	}
	d.mu.Unlock()
	poke(d.rxWake)
}

// bufferGPADL returns the GPADL a SEND_RECV_BUF or SEND_SEND_BUF names.
func bufferGPADL(p ring.Packet) (uint32, bool) {
	m := p.Payload
	if p.Type != ring.TypeDataInband || len(m) < 8 {
		return 0, false
	}
	if t := le32(m); t != msgSendRecvBuf && t != msgSendSendBuf {
		return 0, false
	}
	return le32(m[4:]), true
}

// transmit writes guest frames to the tap.
func (d *Device) transmit(frames []txFrame) {
	for _, f := range frames {
		_, err := d.cfg.Tap.Writev([][]byte{f.hdr[:], f.data})
		d.mu.Lock()
		if err != nil {
			d.st.TxDropped++
		} else {
			d.st.TxPackets++
			d.st.TxBytes += uint64(len(f.data))
		}
		d.mu.Unlock()
		if err != nil && !errors.Is(err, os.ErrClosed) {
			d.log.Debug("netvsc: tap refused a frame", "err", err)
		}
	}
}

// complete answers a guest packet that asked for it with an NVSP message
// (fields: u32 values after the type), holding it when the ring is full.
func (d *Device) complete(c *vmbus.Channel, p ring.Packet, typ uint32, fields ...uint32) {
	if p.Flags&ring.FlagCompletionRequest == 0 {
		return
	}
	m := make([]byte, nvspSize)
	binary.LittleEndian.PutUint32(m, typ)
	for i, f := range fields {
		binary.LittleEndian.PutUint32(m[4+4*i:], f)
	}
	d.sendCompletion(c, p.TransID, m)
}

func (d *Device) sendCompletion(c *vmbus.Channel, id uint64, m []byte) {
	if len(d.s.held) == 0 {
		err := c.Complete(id, m)
		if err == nil || !errors.Is(err, ring.ErrFull) {
			return
		}
	}
	d.s.held = append(d.s.held, heldPkt{id, m})
}

// flushLocked sends held completions, then control answers, while there
// is room.
func (d *Device) flushLocked(c *vmbus.Channel) {
	for len(d.s.held) > 0 {
		h := d.s.held[0]
		if err := c.Complete(h.id, h.payload); errors.Is(err, ring.ErrFull) {
			return
		}
		d.s.held = d.s.held[1:]
	}
	for len(d.s.ctrl) > 0 {
		sent, err := d.sendXfer(c, channelControl, d.s.ctrl[0])
		if !sent && err == nil {
			return
		}
		d.s.ctrl = d.s.ctrl[1:]
	}
}

// queueControl queues an RNDIS message for the guest's receive buffer.
func (d *Device) queueControl(m []byte) {
	if len(d.s.ctrl) >= maxHeld {
		d.bad("RNDIS answer dropped: the guest takes none")
		return
	}
	d.s.ctrl = append(d.s.ctrl, m)
}

// sendXfer puts an RNDIS message (its parts concatenated) in a free
// sub-allocation and names it to the guest with a transfer-page packet.
// sent false, err nil: no sub-allocation or no ring room now (retry once
// the guest completes or signals); err: the message cannot go, ever.
func (d *Device) sendXfer(c *vmbus.Channel, chanType uint32, parts ...[]byte) (sent bool, err error) {
	if d.s.recv == nil {
		return false, errors.New("no receive buffer")
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > recvSubAlloc {
		return false, fmt.Errorf("RNDIS message of %d bytes", n)
	}
	if len(d.s.free) == 0 {
		return false, nil
	}
	slot := d.s.free[len(d.s.free)-1]
	off := slot * recvSubAlloc
	at := off
	for _, p := range parts {
		if err := d.s.recv.write(at, p); err != nil {
			return false, err
		}
		at += uint32(len(p))
	}
	le := binary.LittleEndian
	// vmtransfer_page_packet_header past the descriptor: pageset id,
	// sender_owns, reserved, range count, then {byte_count, byte_offset}.
	hdr := make([]byte, 16)
	le.PutUint16(hdr[0:], d.s.recvID)
	le.PutUint32(hdr[4:], 1)
	le.PutUint32(hdr[8:], uint32(n))
	le.PutUint32(hdr[12:], off)
	m := make([]byte, nvspSize)
	le.PutUint32(m[0:], msgSendRNDIS)
	le.PutUint32(m[4:], chanType)
	le.PutUint32(m[8:], invalidSection)
	err = c.Send(ring.TypeDataXferPages, ring.FlagCompletionRequest, xferBase+uint64(slot), hdr, m)
	if errors.Is(err, ring.ErrFull) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	d.s.free = d.s.free[:len(d.s.free)-1]
	d.s.inUse[slot] = true
	return true, nil
}

// receive moves tap frames to the guest for the device's lifetime.
func (d *Device) receive() {
	defer d.wg.Done()
	buf := make([]byte, 1<<16+tapHeader)
	for {
		n, err := d.cfg.Tap.Read(buf)
		if err != nil {
			if !d.closed.Load() {
				d.log.Warn("netvsc: tap read failed; receive stopped", "err", err)
			}
			return
		}
		if n <= tapHeader {
			continue
		}
		csum, ok := rxChecksum(buf[:tapHeader], buf[tapHeader:n])
		if !ok {
			d.mu.Lock()
			d.st.RxDropped++
			d.mu.Unlock()
			continue
		}
		if !d.deliver(buf[tapHeader:n], csum) {
			return
		}
	}
}

// deliver hands one frame to the guest, with csum as its checksum info,
// waiting for a sub-allocation or ring room; it drops the frame when the
// guest cannot take frames now. It reports false when the device stops.
func (d *Device) deliver(frame []byte, csum uint32) bool {
	for {
		d.mu.Lock()
		c := d.ch
		if c == nil || d.s.recv == nil || d.s.rndis.filter == 0 || !d.link || len(frame) > maxFrame {
			d.st.RxDropped++
			d.mu.Unlock()
			return true
		}
		if len(d.s.held) == 0 && len(d.s.ctrl) == 0 {
			sent, err := d.sendXfer(c, channelData, packetMessage(len(frame), csum), frame)
			if sent || err != nil {
				if sent {
					d.st.RxPackets++
					d.st.RxBytes += uint64(len(frame))
					if csum != 0 {
						d.st.RxChecksum++
					}
				} else {
					d.st.RxDropped++
				}
				d.mu.Unlock()
				return true
			}
		}
		d.mu.Unlock()
		select {
		case <-d.rxWake:
		case <-d.stop:
			return false
		}
	}
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
