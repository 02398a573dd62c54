// Package storvsc is the host side (VSP) of Hyper-V's synthetic SCSI
// controller, the VMBus device Linux's hv_storvsc and Windows' storvsc
// drive (Linux drivers/scsi/storvsc_drv.c; facts in the project's
// reference notes, vmbus.md section 10). Its disks are LUNs of target 0
// (devices/scsi), as Hyper-V presents them.
//
// Protocol: every guest request is a vstor_packet {u32 operation, u32
// flags, u32 status, union} in an inband packet, or for SCSI commands with
// data a GPA-direct packet whose one page range is the data buffer. The
// guest initialises on the primary channel: BEGIN_INITIALIZATION,
// QUERY_PROTOCOL_VERSION (6.2, 6.0 and 5.1 accepted as Hyper-V does,
// others refused with STATUS_REVISION_MISMATCH so the guest tries the
// next), QUERY_PROPERTIES (sub-channels: one per vCPU beyond the first;
// the largest transfer), END_INITIALIZATION, then CREATE_SUB_CHANNELS when
// it wants more channels: the controller offers them through the bus
// (vmbus.Bus.AddSubChannel) and serves each like the primary. EXECUTE_SRB
// carries a vmscsi_request (52 bytes from protocol 5.1 (Windows 8) on, 36
// before) whose CDB runs on the LUN; the completion carries the SCSI
// status, the sense data and the bytes moved.
//
// Each open channel has its own goroutine that drains the ring; it runs
// up to 64 SCSI requests at once on goroutines of their own, which
// complete them by transaction id as they finish (SYNCHRONIZE CACHE covers
// the writes completed before it). The guest's signal only kicks the
// worker (vmm delivers it through an ioeventfd, without a vCPU exit), and
// while the worker drains, the guest's signals are masked in the ring.
// A data range resolves to one buffer per run of consecutive guest pages.
// Everything in a packet is guest input: sizes, versions, addresses
// (every page of a data range is checked against guest RAM), LUNs and
// CDBs; a bad request gets an error status, a broken ring stops its
// channel.
package storvsc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmmdev/vmm/devices/scsi"
	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// Class is the synthetic SCSI controller's class (hyperv.h HV_SCSI_GUID).
var Class = vmbus.MustGUID("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f")

// Operations (storvsc_drv.c enum vstor_packet_operation).
const (
	opCompleteIO        = 1
	opExecuteSRB        = 3
	opResetLUN          = 4
	opResetAdapter      = 5
	opResetBus          = 6
	opBeginInit         = 7
	opEndInit           = 8
	opQueryVersion      = 9
	opQueryProperties   = 10
	opCreateSubChannels = 13
)

// Protocol versions (major << 8 | minor) the controller accepts, best
// first as the guest tries them.
const (
	Version5_1 = 0x0501 // Windows 8: the vmscsi_request win8 extension appears
	Version6_0 = 0x0600 // Windows 8.1
	Version6_2 = 0x0602 // Windows 10
)

// Packet layout.
const (
	hdrSize        = 12 // operation, flags, status
	srbSizeWin8    = 52
	srbSizePreWin8 = 36
	// packetSize is sizeof(struct vstor_packet): Linux drops host
	// packets shorter than this.
	packetSize = hdrSize + srbSizeWin8
	// minPacket is the least a guest sends (a pre-Windows 8 packet).
	minPacket = hdrSize + srbSizePreWin8

	offSRBStatus   = hdrSize + 2
	offSCSIStatus  = hdrSize + 3
	offPathID      = hdrSize + 5
	offTargetID    = hdrSize + 6
	offLUN         = hdrSize + 7
	offCDBLength   = hdrSize + 8
	offSenseLength = hdrSize + 9
	offTransferLen = hdrSize + 12
	offCDB         = hdrSize + 16
	maxCDB         = 16
	senseWin8      = 20

	// Properties (vmstorage_channel_properties) offsets.
	offMaxChannels = hdrSize + 4
	offPropFlags   = hdrSize + 8
	offMaxTransfer = hdrSize + 12
	propMultiChan  = 1

	// MaxLUNs bounds the disks of one controller (Hyper-V: 64).
	MaxLUNs = 64
)

// SRB status values (srb_status).
const (
	srbSuccess        = 0x01
	srbError          = 0x04
	srbInvalidRequest = 0x06
	srbInvalidLUN     = 0x20
	srbAutosenseValid = 0x80
)

// NT status values of the vstor_packet status field.
const (
	statusSuccess            = 0
	statusInvalidParameter   = 0xc000000d
	statusRevisionMismatch   = 0xc0000059
	statusInvalidDeviceState = 0xc0000184
)

// Memory is guest memory as the VMM maps it.
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// SubChannels offers sub-channels (vmbus.Bus).
type SubChannels interface {
	AddSubChannel(dev vmbus.Device, index uint16) (uint32, error)
}

// Config sets a controller up.
type Config struct {
	// Instance names the controller (/sys/bus/vmbus/devices/<instance>).
	Instance vmbus.GUID
	// Disks are LUNs 0, 1, ... of target 0.
	Disks []*scsi.Disk
	Mem   Memory
	// VPs is the number of vCPUs: the controller offers up to VPs-1
	// sub-channels. Bus offers them (nil: none).
	VPs int
	Bus SubChannels
	Log *slog.Logger
}

// Controller is one synthetic SCSI controller (a vmbus.Device).
type Controller struct {
	cfg    Config
	log    *slog.Logger
	target scsi.Target
	maxSub int

	mu      sync.Mutex
	workers map[*vmbus.Channel]*worker
	// Initialisation state of the primary channel's open.
	begun   bool
	version uint16
	ready   bool
	subs    int // sub-channels asked for since the primary opened
	wg      sync.WaitGroup

	stats counters
}

type counters struct {
	packets, srbs, bad, refused, subOffered atomic.Uint64
	// alone counts the requests run on the worker's goroutine, helpers
	// the drains started meanwhile.
	alone, helpers atomic.Uint64
}

// New returns a controller for cfg.Disks.
func New(cfg Config) (*Controller, error) {
	if len(cfg.Disks) == 0 || len(cfg.Disks) > MaxLUNs {
		return nil, errors.New("storvsc: a controller has 1 to 64 disks")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{cfg: cfg, log: cfg.Log, target: scsi.Target{LUNs: cfg.Disks},
		workers: map[*vmbus.Channel]*worker{}}
	if cfg.Bus != nil && cfg.VPs > 1 {
		c.maxSub = cfg.VPs - 1
	}
	return c, nil
}

// Offer implements vmbus.Device.
func (c *Controller) Offer() vmbus.Offer {
	return vmbus.Offer{Class: Class, Instance: c.cfg.Instance}
}

// Open implements vmbus.Device: each channel gets its worker; the
// primary's open starts the initialisation over.
func (c *Controller) Open(ch *vmbus.Channel) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch.SubChannelIndex() == 0 {
		c.begun, c.version, c.ready, c.subs = false, 0, false, 0
	}
	w := newWorker(c, ch)
	c.workers[ch] = w
	go w.run()
	return nil
}

// Opened implements vmbus.Device: the guest speaks first.
func (c *Controller) Opened(*vmbus.Channel) {}

// Interrupt implements vmbus.Device: it wakes the channel's worker.
func (c *Controller) Interrupt(ch *vmbus.Channel) {
	c.mu.Lock()
	w := c.workers[ch]
	c.mu.Unlock()
	if w != nil {
		w.wake()
	}
}

// Close implements vmbus.Device: the worker finishes the request it is
// on (the channel refuses further sends) and stops.
func (c *Controller) Close(ch *vmbus.Channel) {
	c.mu.Lock()
	w := c.workers[ch]
	delete(c.workers, ch)
	c.mu.Unlock()
	if w != nil {
		close(w.stop)
		<-w.done
	}
}

// Shutdown stops every worker and waits for sub-channel offers in flight.
func (c *Controller) Shutdown() {
	c.mu.Lock()
	ws := make([]*worker, 0, len(c.workers))
	for ch, w := range c.workers {
		ws = append(ws, w)
		delete(c.workers, ch)
	}
	c.mu.Unlock()
	for _, w := range ws {
		close(w.stop)
		<-w.done
	}
	c.wg.Wait()
}

// LUNStats is one disk's counters for the report.
type LUNStats struct {
	LUN  int    `json:"lun"`
	Path string `json:"path"`
	scsi.Stats
}

// Stats is the controller's state for the report.
type Stats struct {
	// Version is the negotiated protocol ("6.2"; "" none yet).
	Version string `json:"version"`
	Ready   bool   `json:"ready"`
	// Channels counts the open channels, primary included; SubChannels
	// the sub-channels the guest asked for since the primary opened;
	// Offered all sub-channels offered since vmm started.
	Channels    int        `json:"channels"`
	SubChannels int        `json:"sub_channels"`
	Offered     uint64     `json:"sub_channels_offered"`
	Packets     uint64     `json:"packets"`
	SRBs        uint64     `json:"srbs"`
	Bad         uint64     `json:"bad_packets"`
	Refused     uint64     `json:"refused_requests"`
	LUNs        []LUNStats `json:"luns"`
}

// Stats returns the controller's counters.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	s := Stats{Ready: c.ready, Channels: len(c.workers), SubChannels: c.subs}
	if c.version != 0 {
		s.Version = string(rune('0'+c.version>>8)) + "." + string(rune('0'+c.version&0xff))
	}
	c.mu.Unlock()
	s.Packets, s.SRBs, s.Bad, s.Refused = c.stats.packets.Load(), c.stats.srbs.Load(), c.stats.bad.Load(), c.stats.refused.Load()
	s.Offered = c.stats.subOffered.Load()
	for i, d := range c.cfg.Disks {
		s.LUNs = append(s.LUNs, LUNStats{LUN: i, Path: d.Image().Path(), Stats: d.Stats()})
	}
	return s
}

func versionAccepted(v uint16) bool {
	return v == Version6_2 || v == Version6_0 || v == Version5_1
}

// maxInflight caps the SCSI requests one channel executes at once: Linux
// keeps many outstanding per channel, and running them one at a time
// would cap IOPS at 1/latency.
const maxInflight = 64

// worker serves one channel: its goroutine drains the ring and answers
// control requests itself; each EXECUTE_SRB runs on a goroutine of its
// own, at most maxInflight at once, and completes by transaction id in
// whatever order the requests finish.
//
// A request that comes alone (the ring empty behind it, none in flight),
// as every one does at queue depth 1, runs on the worker's goroutine
// instead, once the drain is over: the guest waits for that request, and
// handing it to a new goroutine cost it a goroutine start and a
// scheduler hand-off more than virtio-blk pays. While it runs the guest's
// signals are unmasked, and a signal then drains the ring on a helper
// goroutine, so a request behind it still runs at once.
type worker struct {
	c       *Controller
	ch      *vmbus.Channel
	primary bool
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	buf     []byte
	slots   chan struct{} // one token per SRB in flight
	srbs    sync.WaitGroup

	// drainMu makes one goroutine at a time drain the ring: the worker's,
	// or a helper started while the worker runs a request itself.
	drainMu sync.Mutex
	// inline is set while the worker's goroutine runs a request itself;
	// helpers are the drains started meanwhile (inlineMu orders their
	// start before the worker's exit).
	inlineMu sync.Mutex
	inline   bool
	helpers  sync.WaitGroup
	// queued: a helper is started and has not begun to drain; it will see
	// whatever a later signal announces, so no second one is started (a
	// guest signalling in a loop starts at most one waiting helper).
	queued bool

	// held are completions the ring had no room for, oldest first: they
	// go out first when the guest signals room, and until then no new
	// request is taken.
	heldMu sync.Mutex
	held   []heldCompletion
}

type heldCompletion struct {
	id      uint64
	payload []byte
}

// recvBuf is the size of a worker's packet buffer: a request with the
// largest data range (one PFN per page, and one more for an offset into
// the first) fits.
const recvBuf = ring.DescriptorSize + 16 + 8*(scsi.MaxTransfer/pageSize+1) + packetSize

func newWorker(c *Controller, ch *vmbus.Channel) *worker {
	return &worker{c: c, ch: ch, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		primary: ch.SubChannelIndex() == 0, slots: make(chan struct{}, maxInflight), buf: make([]byte, recvBuf)}
}

// wake kicks the worker, or, while it runs a request itself, starts a
// helper that drains the ring now.
func (w *worker) wake() {
	w.inlineMu.Lock()
	if w.inline {
		if !w.queued {
			w.queued = true
			w.helpers.Add(1)
			w.c.stats.helpers.Add(1)
			go w.help()
		}
		w.inlineMu.Unlock()
		return
	}
	w.inlineMu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *worker) run() {
	defer close(w.done)
	// Requests in flight finish before the channel counts as closed:
	// none writes guest memory afterwards. Helpers may start requests,
	// so they are waited for first.
	defer w.srbs.Wait()
	defer w.helpers.Wait()
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		}
		if p, ok := w.drain(w.buf, true); ok {
			w.runSRB(p)
		}
	}
}

// help drains the ring while the worker's goroutine runs a request itself.
func (w *worker) help() {
	defer w.helpers.Done()
	w.drainMu.Lock()
	defer w.drainMu.Unlock()
	w.inlineMu.Lock()
	w.queued = false
	w.inlineMu.Unlock()
	w.drainLocked(make([]byte, recvBuf), false)
}

// runSRB runs a request the drain left to the worker's goroutine (it holds
// a slot and is counted in srbs) and completes it.
func (w *worker) runSRB(p ring.Packet) {
	reply := w.c.executeSRB(p)
	// Over before the completion goes out: the guest's next request may
	// follow it at once, and is the worker's again, not a helper's.
	w.inlineMu.Lock()
	w.inline = false
	w.inlineMu.Unlock()
	<-w.slots
	if p.Flags&ring.FlagCompletionRequest != 0 {
		w.complete(p.TransID, reply)
	}
	w.srbs.Done()
}

// complete sends a completion, or holds it while the ring is full (the
// guest signals once it has made room, and drain sends it then). Other
// errors mean the channel is gone: the completion is dropped.
func (w *worker) complete(id uint64, payload []byte) {
	w.heldMu.Lock()
	defer w.heldMu.Unlock()
	if len(w.held) == 0 {
		if err := w.ch.Complete(id, payload); !errors.Is(err, ring.ErrFull) {
			return
		}
	}
	w.held = append(w.held, heldCompletion{id, payload})
}

// sendHeld sends the held completions in order; false: the ring is full
// again, or the channel is gone, with some still held.
func (w *worker) sendHeld() bool {
	w.heldMu.Lock()
	defer w.heldMu.Unlock()
	for len(w.held) > 0 {
		h := w.held[0]
		err := w.ch.Complete(h.id, h.payload)
		if errors.Is(err, ring.ErrFull) {
			return false
		}
		w.held[0] = heldCompletion{}
		w.held = w.held[1:]
		if err != nil {
			w.held = nil
			return false
		}
	}
	return true
}

// drain serves packets from the ring, read into buf, until it is empty (the
// guest signals again only for a ring it saw empty), the answer ring is
// full (the guest signals when it has made room) or the channel is gone.
// While it drains, the guest's signals are masked (a request written
// meanwhile is found here without a hypercall); the mask is cleared before
// the last look at the ring. With mayInline, a request that came alone is
// returned (ok) for the caller to run once the drain is over, with the
// guest's signals unmasked and w.inline set.
func (w *worker) drain(buf []byte, mayInline bool) (alone ring.Packet, ok bool) {
	w.drainMu.Lock()
	defer w.drainMu.Unlock()
	return w.drainLocked(buf, mayInline)
}

// drainLocked is drain with w.drainMu held.
func (w *worker) drainLocked(buf []byte, mayInline bool) (alone ring.Packet, ok bool) {
	masked := false
	mask := func(on bool) {
		if masked != on {
			w.ch.MaskSignals(on)
			masked = on
		}
	}
	defer mask(false)
	mask(true)
	for {
		select {
		case <-w.stop:
			return ring.Packet{}, false
		default:
		}
		if !w.sendHeld() {
			// Take no more requests until their answers fit; tell the
			// guest about the room its requests freed.
			w.ch.RecvDone()
			return ring.Packet{}, false
		}
		p, ok, err := w.ch.Recv(buf)
		if err != nil {
			return ring.Packet{}, false
		}
		if !ok {
			if masked {
				// A request written before the unmask came
				// without a signal: look once more.
				mask(false)
				continue
			}
			w.ch.RecvDone()
			return ring.Packet{}, false
		}
		mask(true)
		if w.c.isSRB(p) {
			if mayInline && w.keepAlone() {
				// Unmasked before the last look: a request
				// written after it signals, and wake starts a
				// helper for it (w.inline is set).
				mask(false)
				if !w.ch.RecvPending() {
					w.ch.RecvDone()
					w.c.stats.packets.Add(1)
					w.c.stats.alone.Add(1)
					return p, true
				}
				// Another came before the unmask: this one
				// is not alone after all.
				w.giveBack()
				mask(true)
			}
			if !w.startSRB(p) {
				return ring.Packet{}, false
			}
			continue
		}
		reply, after := w.c.handle(w, p)
		if reply != nil && p.Flags&ring.FlagCompletionRequest != 0 {
			w.complete(p.TransID, reply)
		}
		if after != nil {
			after()
		}
	}
}

// keepAlone takes the slot of a request that came alone, for the worker's
// goroutine to run: none in flight and nothing behind it in the ring.
func (w *worker) keepAlone() bool {
	if len(w.slots) != 0 || w.ch.RecvPending() {
		return false
	}
	w.slots <- struct{}{} // cannot block: no other drain takes slots now
	w.srbs.Add(1)
	w.inlineMu.Lock()
	w.inline = true
	w.inlineMu.Unlock()
	return true
}

// giveBack undoes keepAlone.
func (w *worker) giveBack() {
	w.inlineMu.Lock()
	w.inline = false
	w.inlineMu.Unlock()
	<-w.slots
	w.srbs.Done()
}

// isSRB reports whether p is an EXECUTE_SRB that may run concurrently:
// the protocol is negotiated, so handle would only pass it on.
func (c *Controller) isSRB(p ring.Packet) bool {
	if (p.Type != ring.TypeDataInband && p.Type != ring.TypeDataGPADirect) || len(p.Payload) < minPacket ||
		binary.LittleEndian.Uint32(p.Payload) != opExecuteSRB {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version != 0
}

// startSRB runs an EXECUTE_SRB on a goroutine of its own once a slot is
// free; false: the channel is stopping. The packet is copied first: the
// ring buffer it was read into is reused.
func (w *worker) startSRB(p ring.Packet) bool {
	select {
	case w.slots <- struct{}{}:
	case <-w.stop:
		return false
	}
	p.Header = bytes.Clone(p.Header)
	p.Payload = bytes.Clone(p.Payload)
	w.c.stats.packets.Add(1)
	w.srbs.Add(1)
	go func() {
		defer w.srbs.Done()
		defer func() { <-w.slots }()
		reply := w.c.executeSRB(p)
		if p.Flags&ring.FlagCompletionRequest != 0 {
			w.complete(p.TransID, reply)
		}
	}()
	return true
}

// handle serves one packet and returns the completion's payload (nil:
// none) and what to do once it is sent.
func (c *Controller) handle(w *worker, p ring.Packet) ([]byte, func()) {
	c.stats.packets.Add(1)
	if p.Type == ring.TypeCompletion || p.Type == ring.TypeCancelRequest {
		return nil, nil
	}
	req := p.Payload
	if (p.Type != ring.TypeDataInband && p.Type != ring.TypeDataGPADirect) || len(req) < minPacket {
		c.stats.bad.Add(1)
		return c.status(req, statusInvalidParameter), nil
	}
	le := binary.LittleEndian
	op := le.Uint32(req)
	if op != opExecuteSRB && p.Type != ring.TypeDataInband {
		c.stats.bad.Add(1)
		return c.status(req, statusInvalidParameter), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch op {
	case opBeginInit:
		if !w.primary {
			break
		}
		c.begun, c.version, c.ready = true, 0, false
		return c.status(req, statusSuccess), nil
	case opQueryVersion:
		if !w.primary || !c.begun {
			break
		}
		v := le.Uint16(req[hdrSize:])
		if !versionAccepted(v) {
			c.stats.refused.Add(1)
			c.log.Debug("storvsc: protocol version refused", "version", v)
			return c.status(req, statusRevisionMismatch), nil
		}
		c.version = v
		return c.status(req, statusSuccess), nil
	case opQueryProperties:
		if !w.primary || c.version == 0 {
			break
		}
		r := c.status(req, statusSuccess)
		clear(r[hdrSize:])
		le.PutUint16(r[offMaxChannels:], uint16(c.maxSub))
		if c.maxSub > 0 {
			le.PutUint32(r[offPropFlags:], propMultiChan)
		}
		le.PutUint32(r[offMaxTransfer:], scsi.MaxTransfer)
		return r, nil
	case opEndInit:
		if !w.primary || c.version == 0 {
			break
		}
		c.ready = true
		return c.status(req, statusSuccess), nil
	case opCreateSubChannels:
		return c.createSubChannels(w, req)
	case opResetLUN, opResetAdapter, opResetBus:
		// Nothing in flight is aborted: the reset completes once this
		// channel's requests have (SRBs never take c.mu).
		if c.version == 0 {
			break
		}
		c.mu.Unlock()
		w.srbs.Wait()
		c.mu.Lock()
		return c.status(req, statusSuccess), nil
	case opExecuteSRB:
		if c.version == 0 {
			break
		}
		c.mu.Unlock()
		r := c.executeSRB(p)
		c.mu.Lock()
		return r, nil
	}
	c.stats.refused.Add(1)
	return c.status(req, statusInvalidDeviceState), nil
}

// status builds the completion of req: COMPLETE_IO with status st, the
// request's union echoed, padded to a full vstor_packet.
func (c *Controller) status(req []byte, st uint32) []byte {
	r := make([]byte, packetSize)
	copy(r, req)
	binary.LittleEndian.PutUint32(r[0:], opCompleteIO)
	binary.LittleEndian.PutUint32(r[4:], 0)
	binary.LittleEndian.PutUint32(r[8:], st)
	return r
}

// createSubChannels offers the sub-channels the guest asks for, up to one
// per vCPU beyond the primary's. The offers go out after the completion,
// from their own goroutine: the bus must not be called from a worker that
// the bus may be waiting for.
func (c *Controller) createSubChannels(w *worker, req []byte) ([]byte, func()) {
	n := int(binary.LittleEndian.Uint16(req[hdrSize:]))
	if !w.primary || !c.ready {
		c.stats.refused.Add(1)
		return c.status(req, statusInvalidDeviceState), nil
	}
	if n == 0 || n > c.maxSub-c.subs {
		c.stats.refused.Add(1)
		return c.status(req, statusInvalidParameter), nil
	}
	first := c.subs + 1
	c.subs += n
	c.wg.Add(1)
	return c.status(req, statusSuccess), func() {
		go func() {
			defer c.wg.Done()
			for i := first; i < first+n; i++ {
				if _, err := c.cfg.Bus.AddSubChannel(c, uint16(i)); err != nil {
					c.log.Debug("storvsc: sub-channel not offered", "index", i, "err", err)
					return
				}
				c.stats.subOffered.Add(1)
			}
		}()
	}
}
