// Package vmbus is the host side of VMBus, Hyper-V's device bus, for a
// guest that runs on vmm's userspace SynIC (vmm/hyperv): the control
// protocol the guest speaks over HvPostMessage and the SynIC message page,
// channels with their ring buffers and interrupts, and the interface
// devices (VSPs) plug in through. Sources: Linux drivers/hv (connection.c,
// channel_mgmt.c, channel.c, ring_buffer.c), include/linux/hyperv.h;
// facts in the project's reference notes (vmbus.md).
//
// Layers, each its own package and tested alone against fake guest memory
// and a guest-side driver (internal/guestdrv) written from Linux's
// behaviour:
//
//   - ring: a channel's ring buffer pair on guest pages: private host
//     indices, checked guest indices, packets copied out before parsing,
//     the interrupt-mask and pending_send_sz rules; any inconsistency
//     breaks the ring (the channel stops, vmm goes on);
//   - gpadl: GPADL assembly from header and body messages, one range per
//     GPADL, every PFN checked against guest RAM, bounded count and PFNs;
//   - vmbus (this package): the bus control state machine (Bus), open
//     channels (Channel) and the Device interface;
//   - ic: the hv_utils integration services: heartbeat, shutdown, time
//     sync and KVP;
//   - netvsc: the synthetic NIC (NVSP, RNDIS) over a host tap.
//
// What the Bus does: INITIATE_CONTACT (resets everything; versions 0.13,
// 1.1, 2.4, 3.0, 4.0 and 4.1 on connection 1 and 5.0-5.3 on connection 4
// are accepted, all others refused with version_supported 0 as Hyper-V
// does; before 2.4 only with an interrupt page), REQUESTOFFERS (one
// OFFERCHANNEL per device, then ALLOFFERS_DELIVERED), GPADL header, body,
// created, teardown and torndown, OPENCHANNEL and its result,
// CLOSECHANNEL, MODIFYCHANNEL (answered from 5.3), UNLOAD and its
// response, RESCIND and RELID_RELEASED for devices removed at run time.
// Channels use dedicated interrupts (event flag <relid> of the target
// VP's SIEF slot; the guest signals on connection 16+relid) and no monitor
// pages; before 2.4 the host signals through the guest's interrupt page
// and event flag 0, and a guest may signal through the page's second half
// and connection 2 at any version that named a page, as iPXE does
// (intpage.go); a channel's first interrupt waits until its OPENCHANNEL_RESULT is
// in the guest's message slot. Malformed, unknown and untimely guest
// messages are counted and dropped; requests the guest waits for (GPADL,
// open, teardown) are always answered, with a failure status when refused.
//
// Back-pressure: guest posts go to a bounded queue (HvPostMessage answers
// HV_STATUS_INSUFFICIENT_BUFFERS when it is full) that is processed while
// the outbound queue is short; outbound messages wait for a free message
// slot and go out on the guest's EOM (or SINT/SIMP/SCONTROL write).
//
// vmm wires it in with --vmbus (vmm/vmbus.go): vmm/hyperv routes
// unclaimed HvPostMessage/HvSignalEvent connections and slot-freeing MSR
// writes to the Bus and delivers through its SynIC pages; the DSDT gets
// the ACPI VMBus device (firmware/acpi.VMBusDevice).
//
// Sub-channels (AddSubChannel): a device offers them on the guest's
// request, with its primary's class and instance; they live while the
// primary is open.
//
// The guest's requests it waits on (contact, offers, GPADL, open,
// teardown, unload) are tracked until their answer is in its slot
// (watch.go): Stats.Waiting and Bus.Stalled say what a stuck guest waits
// for; Config.Trace gets every control message each way.
//
// Missing: monitored notification and multi-range GPADLs. The
// devices are the integration services (ic), storvsc and netvsc.
package vmbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/vmmdev/vmm/devices/vmbus/gpadl"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// Hypercall status values Post and Signal return (TLFS).
const (
	StatusSuccess             = 0x0000
	StatusInvalidParameter    = 0x0005
	StatusInvalidConnectionID = 0x0012
	StatusInsufficientBuffers = 0x0013
)

// Memory is guest memory as the VMM maps it.
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// Host is the SynIC side the bus sends through. The bus calls it with its
// own lock held: Host must not call back into the Bus from these methods,
// and whoever calls the Bus must not hold locks these methods take.
type Host interface {
	// PostMessage writes a VMBus message (SynIC message type 1) into
	// SINT sint's slot of vp's message page and raises the SINT. False:
	// the slot is full (it is then marked message-pending, and the
	// guest's EOM must reach Bus.EOM) or the page is off.
	PostMessage(vp, sint int, msg []byte) bool
	// SignalEvent sets event flag flag in SINT sint's slot of vp's event
	// flags page and raises the SINT if the flag was clear.
	SignalEvent(vp, sint int, flag uint32)
}

// SignalRoutes is what a Host may also offer: a way for the guest's
// HvSignalEvent on an open channel's connection to reach the bus without
// a hypercall exit (vmm: an ioeventfd behind the hypercall page, as
// virtio's notifications; KVM's Hyper-V signal eventfds do the same).
// The bus routes each channel while it is open, calling these with its
// lock held: RouteSignal arranges for signal to be called (from any
// goroutine, never from inside these calls) for each of the guest's
// signals on conn, and returns the function that undoes it, or nil when
// it cannot (the hypercall path serves the connection then). The undo
// must not wait for a signal call in progress: a late call is a spurious
// wake-up, which every device tolerates.
type SignalRoutes interface {
	RouteSignal(conn uint32, signal func()) (unroute func())
}

// Config sets a Bus up.
type Config struct {
	Mem  Memory
	Host Host
	// VPs is the number of virtual processors (valid target VPs).
	VPs int
	Log *slog.Logger
	// GPADL bounds the guest's GPADLs (zero: gpadl.DefaultLimits).
	GPADL gpadl.Limits
	// InQueue bounds the guest messages waiting (zero: 16, as QEMU).
	InQueue int
	// Trace, if set, gets one call per control message handled ("in")
	// or delivered ("out"), with its type and fields (watch.go); called
	// with the bus locked. Now is the clock of waits (nil: time.Now).
	Trace func(dir, msg, detail string)
	Now   func() time.Time
}

// outSoftLimit: guest messages are processed only while fewer host
// messages than this wait for a slot. One guest message produces at most
// one reply per channel plus one, so the queue stays bounded.
const outSoftLimit = 64

type outMsg struct {
	vp, sint int
	msg      []byte
	after    func() // run once the message is in the guest's slot
}

type inMsg struct {
	conn uint32
	msg  []byte
}

// chanState is one offered channel.
type chanState struct {
	relid uint32
	dev   Device
	offer Offer
	// offered: the guest was sent the offer since it last connected.
	offered bool
	// rescinded: removed; the relid is held until RELID_RELEASED.
	rescinded bool
	ch        *Channel // while open
	ringGPADL uint32
	// primary is the primary channel of a sub-channel (nil for a
	// primary); subIndex its sub_channel_index (1 and up).
	primary  *chanState
	subIndex uint16
	opens    uint64
	closed   ChannelStats // traffic of the channel's past opens
	// unroute undoes the open channel's signal route (SignalRoutes).
	unroute func()
}

// Bus is the VMBus host. Its methods are safe for concurrent use.
type Bus struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	connected bool
	version   uint32
	vp, sint  int
	// intPage is the guest's interrupt page (intpage.go; nil: none).
	intPage   []byte
	requested bool // REQUESTOFFERS seen since contact
	chans     map[uint32]*chanState
	gpadls    *gpadl.Table
	in        []inMsg
	out       []outMsg
	after     []func()
	stats     counters
	waits     []Wait // guest requests not yet answered (watch.go)
}

type counters struct {
	in, out            [msgTypes]uint64
	dropped, busy      uint64
	refused            uint64
	lastIn, lastOut    uint32
	contacts, unloads  uint64
	sharedSignals      uint64
	gpadlFail, openBad uint64
}

// New returns a Bus with no devices.
func New(cfg Config) *Bus {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.GPADL == (gpadl.Limits{}) {
		cfg.GPADL = gpadl.DefaultLimits
	}
	if cfg.InQueue == 0 {
		cfg.InQueue = 16
	}
	return &Bus{
		cfg:    cfg,
		log:    cfg.Log,
		sint:   MessageSINT,
		chans:  map[uint32]*chanState{},
		gpadls: gpadl.New(cfg.Mem, cfg.GPADL),
	}
}

// unlock releases the bus and runs the callbacks queued under it.
func (b *Bus) unlock() {
	after := b.after
	b.after = nil
	b.mu.Unlock()
	for _, f := range after {
		f()
	}
}

// Add offers dev on the bus and returns its relid. A guest that already
// asked for offers gets this one now (hot add).
func (b *Bus) Add(dev Device) (uint32, error) {
	b.mu.Lock()
	defer b.unlock()
	relid := uint32(1)
	for ; relid <= MaxRelid && b.chans[relid] != nil; relid++ {
	}
	if relid > MaxRelid {
		return 0, fmt.Errorf("vmbus: no free relid for another channel")
	}
	cs := &chanState{relid: relid, dev: dev, offer: dev.Offer()}
	b.chans[relid] = cs
	if b.connected && b.requested {
		b.sendOffer(cs)
		b.pump()
	}
	return relid, nil
}

// AddSubChannel offers a sub-channel of dev's open primary channel: the
// same class and instance, sub_channel_index index (1 and up, unique per
// primary). The guest opens it as any channel; the bus calls dev for it
// as for the primary (Channel.SubChannelIndex tells them apart). When the
// primary closes, its sub-channels are closed and rescinded, as Hyper-V
// revokes them; a reset (INITIATE_CONTACT, UNLOAD) forgets them.
// It must not be called from the Device methods the bus calls.
func (b *Bus) AddSubChannel(dev Device, index uint16) (uint32, error) {
	b.mu.Lock()
	defer b.unlock()
	var p *chanState
	for _, cs := range b.chans {
		if cs.dev == dev && cs.primary == nil && !cs.rescinded {
			p = cs
		}
	}
	if p == nil || p.ch == nil || !b.connected {
		return 0, fmt.Errorf("vmbus: sub-channel %d: the primary channel is not open", index)
	}
	if index == 0 {
		return 0, fmt.Errorf("vmbus: sub-channel index 0 is the primary's")
	}
	for _, cs := range b.chans {
		if cs.primary == p && cs.subIndex == index && !cs.rescinded {
			return 0, fmt.Errorf("vmbus: sub-channel %d offered twice", index)
		}
	}
	relid := uint32(1)
	for ; relid <= MaxRelid && b.chans[relid] != nil; relid++ {
	}
	if relid > MaxRelid {
		return 0, fmt.Errorf("vmbus: no free relid for sub-channel %d", index)
	}
	cs := &chanState{relid: relid, dev: dev, offer: p.offer, primary: p, subIndex: index}
	b.chans[relid] = cs
	if b.requested {
		b.sendOffer(cs)
		b.pump()
	}
	return relid, nil
}

// Remove takes dev off the bus: its channel is closed and, if the guest
// saw the offer, rescinded.
func (b *Bus) Remove(dev Device) {
	b.mu.Lock()
	defer b.unlock()
	for _, cs := range b.chans {
		if cs.dev != dev || cs.rescinded {
			continue
		}
		b.closeChannel(cs)
		if b.connected && cs.offered {
			cs.rescinded = true
			m := make([]byte, sizeRescind)
			b.putHeader(m, msgRescindOffer)
			binary.LittleEndian.PutUint32(m[8:], cs.relid)
			b.send(m, nil)
			b.pump()
		} else {
			delete(b.chans, cs.relid)
		}
	}
}

// Close undoes the open channels' signal routes (SignalRoutes), for a VM
// that has stopped: what the routes hold (vmm: ioeventfds and their
// goroutines) is released. The channels stay as they are.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.unlock()
	for _, cs := range b.chans {
		if cs.unroute != nil {
			cs.unroute()
			cs.unroute = nil
		}
	}
}

// Post takes a guest's HvPostMessage of msg on connection conn and returns
// the hypercall status.
func (b *Bus) Post(conn uint32, msg []byte) uint16 {
	if conn != ConnMessage && conn != ConnMessage5x {
		return StatusInvalidConnectionID
	}
	if len(msg) > 240 {
		return StatusInvalidParameter
	}
	b.mu.Lock()
	defer b.unlock()
	if len(b.in) >= b.cfg.InQueue {
		b.stats.busy++
		return StatusInsufficientBuffers
	}
	b.in = append(b.in, inMsg{conn, append([]byte(nil), msg...)})
	b.pump()
	return StatusSuccess
}

// Signal takes a guest's HvSignalEvent on connection conn.
func (b *Bus) Signal(conn uint32) uint16 {
	if conn == ConnEvent {
		return b.signalShared()
	}
	b.mu.Lock()
	cs := b.chans[conn-eventConnBase]
	if conn < eventConnBase || cs == nil || cs.rescinded {
		b.unlock()
		return StatusInvalidConnectionID
	}
	ch, dev := cs.ch, cs.dev
	b.unlock()
	if ch != nil {
		ch.mu.Lock()
		ch.stats.SignalsIn++
		ch.mu.Unlock()
		dev.Interrupt(ch)
	}
	return StatusSuccess
}

// signalShared takes a signal on ConnEvent: the channels whose bits the
// guest set in its interrupt page's second half.
func (b *Bus) signalShared() uint16 {
	type target struct {
		ch  *Channel
		dev Device
	}
	b.mu.Lock()
	if b.intPage == nil {
		b.unlock()
		return StatusInvalidConnectionID
	}
	var ts []target
	for _, relid := range takeSignals(b.intPage) {
		if cs := b.channel(relid); cs != nil && cs.ch != nil {
			ts = append(ts, target{cs.ch, cs.dev})
		}
	}
	b.stats.sharedSignals++
	b.unlock()
	for _, t := range ts {
		t.ch.mu.Lock()
		t.ch.stats.SignalsIn++
		t.ch.mu.Unlock()
		t.dev.Interrupt(t.ch)
	}
	return StatusSuccess
}

// EOM: the guest freed a message slot (write to the EOM MSR); queued
// messages go out.
func (b *Bus) EOM() {
	b.mu.Lock()
	defer b.unlock()
	b.pump()
}

// pump processes queued guest messages while the outbound queue is short,
// and delivers outbound messages until a slot is busy.
func (b *Bus) pump() {
	for {
		progress := false
		for len(b.in) > 0 && len(b.out) < outSoftLimit {
			m := b.in[0]
			b.in = b.in[1:]
			b.handle(m.conn, m.msg)
			progress = true
		}
		for len(b.out) > 0 {
			o := b.out[0]
			if !b.cfg.Host.PostMessage(o.vp, o.sint, o.msg) {
				break
			}
			b.out = b.out[1:]
			b.noteOut(o.msg)
			if o.after != nil {
				b.after = append(b.after, o.after)
			}
			progress = true
		}
		if !progress || len(b.in) == 0 {
			return
		}
	}
}

func (b *Bus) putHeader(m []byte, typ uint32) {
	binary.LittleEndian.PutUint32(m[0:], typ)
	b.stats.out[typ]++
	b.stats.lastOut = typ
}

// send queues a host message for the connected VP and SINT.
func (b *Bus) send(m []byte, after func()) {
	b.out = append(b.out, outMsg{b.vp, b.sint, m, after})
}

func (b *Bus) handle(conn uint32, m []byte) {
	if len(m) < sizeHeaderOnly {
		b.drop("short message", 0, len(m))
		return
	}
	typ := binary.LittleEndian.Uint32(m)
	if typ >= msgTypes || minSize[typ] == 0 {
		b.drop("unknown message type", typ, len(m))
		return
	}
	b.stats.in[typ]++
	b.stats.lastIn = typ
	if len(m) < minSize[typ] {
		b.drop("short message", typ, len(m))
		return
	}
	if !b.connected && typ != msgInitiateContact && typ != msgUnload {
		b.drop("message before INITIATE_CONTACT", typ, len(m))
		return
	}
	defer b.noteIn(typ, m)
	le := binary.LittleEndian
	switch typ {
	case msgInitiateContact:
		b.initiateContact(conn, m)
	case msgRequestOffers:
		b.requestOffers()
	case msgGPADLHeader:
		id, relid, g, err := b.gpadls.Header(m)
		if err == nil && b.channel(relid) == nil {
			b.gpadls.Remove(id)
			err = fmt.Errorf("GPADL for unknown relid %d", relid)
		}
		b.gpadlResult(relid, id, g, err)
	case msgGPADLBody:
		id, relid, g, err := b.gpadls.Body(m)
		if errors.Is(err, gpadl.ErrUnknown) {
			b.drop(err.Error(), typ, len(m))
			return
		}
		b.gpadlResult(relid, id, g, err)
	case msgGPADLTeardown:
		relid, id := le.Uint32(m[8:]), le.Uint32(m[12:])
		for _, cs := range b.chans {
			if cs.ch != nil && cs.ringGPADL == id {
				b.log.Warn("vmbus: guest tore down an open channel's ring GPADL; closing the channel", "relid", cs.relid, "gpadl", id)
				b.closeChannel(cs)
			}
		}
		if err := b.gpadls.Remove(id); err != nil {
			b.log.Debug("vmbus: teardown", "relid", relid, "err", err)
		}
		// Answered even when unknown: the guest waits for it forever.
		r := make([]byte, sizeGPADLTorndown)
		b.putHeader(r, msgGPADLTorndown)
		le.PutUint32(r[8:], id)
		b.send(r, nil)
	case msgOpenChannel:
		b.openChannel(m)
	case msgCloseChannel:
		if cs := b.channel(le.Uint32(m[8:])); cs != nil {
			b.closeChannel(cs)
		}
	case msgModifyChannel:
		b.modifyChannel(m)
	case msgRelidReleased:
		relid := le.Uint32(m[8:])
		if cs := b.chans[relid]; cs != nil && cs.rescinded {
			delete(b.chans, relid)
		}
	case msgUnload:
		b.stats.unloads++
		vp, sint := b.vp, b.sint
		b.reset()
		b.vp, b.sint = vp, sint
		r := make([]byte, sizeHeaderOnly)
		b.putHeader(r, msgUnloadResponse)
		// Answered at once, ahead of anything still queued: a
		// crashing guest polls only for this.
		b.out = []outMsg{{vp, sint, r, nil}}
	}
}

func (b *Bus) drop(why string, typ uint32, n int) {
	b.stats.dropped++
	b.log.Debug("vmbus: guest message dropped", "why", why, "type", msgName(typ), "len", n)
}

// channel returns the live (not rescinded) channel relid.
func (b *Bus) channel(relid uint32) *chanState {
	cs := b.chans[relid]
	if cs == nil || cs.rescinded {
		return nil
	}
	return cs
}

// reset closes every channel and forgets GPADLs, queued messages and the
// connection, as INITIATE_CONTACT and UNLOAD do.
func (b *Bus) reset() {
	// Disconnected first: closing a primary then forgets its
	// sub-channels instead of rescinding them.
	b.connected, b.requested = false, false
	for relid, cs := range b.chans {
		b.closeChannel(cs)
		if cs.rescinded {
			delete(b.chans, relid)
		}
		cs.offered = false
	}
	b.gpadls.Reset()
	b.out = nil
	b.waits = nil
	b.version = 0
	b.intPage = nil
	b.vp, b.sint = 0, MessageSINT
}

func versionAccepted(v, conn uint32) bool {
	switch v {
	case Version0_13, Version1_1, Version2_4, Version3_0, Version4_0, Version4_1:
		return conn == ConnMessage
	case Version5_0, Version5_1, Version5_2, Version5_3:
		return conn == ConnMessage5x
	}
	return false
}

func (b *Bus) initiateContact(conn uint32, m []byte) {
	b.stats.contacts++
	b.reset()
	le := binary.LittleEndian
	version, vp := le.Uint32(m[8:]), le.Uint32(m[12:])
	sint, vtl := MessageSINT, uint8(0)
	if version >= Version5_0 {
		sint, vtl = int(m[16]), m[17]
	}
	ok := versionAccepted(version, conn) && vp < uint32(b.cfg.VPs) && sint < 16 && vtl == 0
	page, err := b.interruptPage(version, m)
	if err == nil && page == nil && legacySignals(version) {
		err = errors.New("no interrupt page")
	}
	if ok && err != nil {
		// Before 2.4 the host signals channels only through the page:
		// refuse the version; later ones merely lose ConnEvent.
		b.log.Warn("vmbus: guest's interrupt page refused", "version", fmt.Sprintf("%d.%d", version>>16, version&0xffff),
			"version_refused", legacySignals(version), "err", err)
		ok = !legacySignals(version)
		page = nil
	}
	r := make([]byte, sizeVersionResp)
	b.putHeader(r, msgVersionResponse)
	if ok {
		b.connected, b.version, b.vp, b.sint, b.intPage = true, version, int(vp), sint, page
		r[8] = 1
		if version >= Version5_0 {
			le.PutUint32(r[12:], ConnMessage)
		} else {
			le.PutUint32(r[12:], version)
		}
		b.log.Debug("vmbus: guest connected", "version", fmt.Sprintf("%d.%d", version>>16, version&0xffff), "vp", vp)
	} else {
		b.stats.refused++
		if vp < uint32(b.cfg.VPs) {
			b.vp = int(vp)
		}
		if sint < 16 {
			b.sint = sint
		}
	}
	b.send(r, nil)
}

func (b *Bus) requestOffers() {
	b.requested = true
	relids := make([]uint32, 0, len(b.chans))
	for relid, cs := range b.chans {
		if !cs.rescinded {
			relids = append(relids, relid)
		}
	}
	sort.Slice(relids, func(i, j int) bool { return relids[i] < relids[j] })
	for _, relid := range relids {
		b.sendOffer(b.chans[relid])
	}
	r := make([]byte, sizeHeaderOnly)
	b.putHeader(r, msgAllOffersDelivered)
	b.send(r, nil)
}

func (b *Bus) sendOffer(cs *chanState) {
	cs.offered = true
	m := make([]byte, sizeOffer)
	b.putHeader(m, msgOfferChannel)
	le := binary.LittleEndian
	copy(m[8:], cs.offer.Class[:])
	copy(m[24:], cs.offer.Instance[:])
	le.PutUint16(m[56:], cs.offer.Flags)
	le.PutUint16(m[58:], cs.offer.MMIOMegabytes)
	copy(m[60:180], cs.offer.UserDefined[:])
	le.PutUint16(m[180:], cs.subIndex)
	le.PutUint32(m[184:], cs.relid)
	// monitorid 0, monitor_allocated 0: the guest signals by hypercall.
	m[190] = 1 // is_dedicated_interrupt
	le.PutUint32(m[192:], eventConnBase+cs.relid)
	b.send(m, nil)
}

func (b *Bus) gpadlResult(relid, id uint32, g *gpadl.GPADL, err error) {
	status := uint32(statusSuccess)
	if err != nil {
		b.stats.gpadlFail++
		b.log.Warn("vmbus: guest GPADL refused", "relid", relid, "gpadl", id, "err", err)
		status = statusUnsuccessful
	} else if g == nil {
		return // more bodies to come
	}
	r := make([]byte, sizeGPADLCreated)
	b.putHeader(r, msgGPADLCreated)
	le := binary.LittleEndian
	le.PutUint32(r[8:], relid)
	le.PutUint32(r[12:], id)
	le.PutUint32(r[16:], status)
	b.send(r, nil)
}

func (b *Bus) openChannel(m []byte) {
	le := binary.LittleEndian
	relid, openid, gid := le.Uint32(m[8:]), le.Uint32(m[12:]), le.Uint32(m[16:])
	r := make([]byte, sizeOpenResult)
	b.putHeader(r, msgOpenChannelResult)
	le.PutUint32(r[8:], relid)
	le.PutUint32(r[12:], openid)
	ch, err := b.open(m)
	if err != nil {
		b.stats.openBad++
		b.log.Warn("vmbus: guest channel open refused", "relid", relid, "gpadl", gid, "err", err)
		le.PutUint32(r[16:], statusUnsuccessful)
		b.send(r, nil)
		return
	}
	cs := b.chans[relid]
	if routes, ok := b.cfg.Host.(SignalRoutes); ok {
		conn := eventConnBase + relid
		cs.unroute = routes.RouteSignal(conn, func() { b.Signal(conn) })
	}
	b.send(r, func() {
		ch.setReady()
		cs.dev.Opened(ch)
	})
}

func (b *Bus) open(m []byte) (*Channel, error) {
	le := binary.LittleEndian
	relid, gid, vp, off := le.Uint32(m[8:]), le.Uint32(m[16:]), le.Uint32(m[20:]), le.Uint32(m[24:])
	cs := b.channel(relid)
	if cs == nil {
		return nil, fmt.Errorf("no channel %d", relid)
	}
	if cs.ch != nil {
		return nil, fmt.Errorf("channel already open")
	}
	g, ok := b.gpadls.Get(gid)
	if !ok || g.Relid != relid {
		return nil, fmt.Errorf("no GPADL %#x for this channel", gid)
	}
	if vp >= uint32(b.cfg.VPs) {
		return nil, fmt.Errorf("target VP %d of %d", vp, b.cfg.VPs)
	}
	if g.ByteOffset != 0 || off < 2 || uint64(off)+2 > uint64(len(g.PFNs)) {
		return nil, fmt.Errorf("ring split at page %d of a %d-page GPADL at offset %d", off, len(g.PFNs), g.ByteOffset)
	}
	in, err := ring.NewReader(b.cfg.Mem, g.PFNs[:off])
	if err != nil {
		return nil, fmt.Errorf("guest->host ring: %w", err)
	}
	out, err := ring.NewWriter(b.cfg.Mem, g.PFNs[off:])
	if err != nil {
		return nil, fmt.Errorf("host->guest ring: %w", err)
	}
	ch := &Channel{relid: relid, subIndex: cs.subIndex, host: b.cfg.Host, sint: b.sint, log: b.log, vp: int(vp), in: in, out: out,
		gpadl: b.lookupGPADL}
	if legacySignals(b.version) {
		ch.intPage = b.intPage
	}
	copy(ch.UserData[:], m[28:28+userDataSize])
	if err := cs.dev.Open(ch); err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	cs.ch, cs.ringGPADL = ch, gid
	cs.opens++
	return ch, nil
}

// lookupGPADL returns a copy of complete GPADL id (Channel.GPADL).
func (b *Bus) lookupGPADL(id uint32) (gpadl.GPADL, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g, ok := b.gpadls.Get(id)
	if !ok {
		return gpadl.GPADL{}, false
	}
	c := *g
	c.PFNs = append([]uint64(nil), g.PFNs...)
	return c, true
}

// closeChannel closes cs; a primary's sub-channels go with it.
func (b *Bus) closeChannel(cs *chanState) {
	if cs.unroute != nil {
		cs.unroute()
		cs.unroute = nil
	}
	if cs.ch != nil {
		cs.ch.close()
		cs.dev.Close(cs.ch)
		cs.closed = cs.closed.add(cs.ch.Stats())
		cs.ch = nil
	}
	if cs.primary == nil {
		b.dropSubChannels(cs)
	}
}

// dropSubChannels closes primary p's sub-channels and rescinds those the
// guest was offered (forgets them when disconnected).
func (b *Bus) dropSubChannels(p *chanState) {
	for relid, sc := range b.chans {
		if sc.primary != p || sc.rescinded {
			continue
		}
		b.closeChannel(sc)
		if !b.connected || !sc.offered {
			delete(b.chans, relid)
			continue
		}
		sc.rescinded = true
		m := make([]byte, sizeRescind)
		b.putHeader(m, msgRescindOffer)
		binary.LittleEndian.PutUint32(m[8:], relid)
		b.send(m, nil)
	}
}

func (b *Bus) modifyChannel(m []byte) {
	le := binary.LittleEndian
	relid, vp := le.Uint32(m[8:]), le.Uint32(m[12:])
	status := uint32(statusUnsuccessful)
	if cs := b.channel(relid); cs != nil && cs.ch != nil && vp < uint32(b.cfg.VPs) {
		cs.ch.setVP(int(vp))
		status = statusSuccess
	}
	// Only 5.3 and later wait for an answer (channel.c
	// vmbus_send_modifychannel).
	if b.version >= Version5_3 {
		r := make([]byte, sizeModifyResponse)
		b.putHeader(r, msgModifyChannelResult)
		le.PutUint32(r[8:], relid)
		le.PutUint32(r[12:], status)
		b.send(r, nil)
	}
}
