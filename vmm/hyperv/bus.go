package hyperv

import "sync/atomic"

// MessageBus is a host bus behind HvPostMessage, HvSignalEvent and the EOM
// MSR (devices/vmbus.Bus): posts and signals on connections that no test
// device claimed go to it, and every write that may free a message slot
// (EOM, SINT, SIMP, SCONTROL) tells it to retry delivery. The partition
// calls it holding none of its locks.
type MessageBus interface {
	Post(conn uint32, msg []byte) uint16
	Signal(conn uint32) uint16
	EOM()
}

// busHolder holds the attached bus for lock-free reads on the hot paths.
type busHolder struct{ b atomic.Pointer[MessageBus] }

func (h *busHolder) get() MessageBus {
	if p := h.b.Load(); p != nil {
		return *p
	}
	return nil
}

// AttachBus routes unclaimed connections to b. Call it before the vCPUs
// run.
func (p *Partition) AttachBus(b MessageBus) { p.bus.b.Store(&b) }

// vmbusMessageType is the SynIC message type VMBus uses (HvMessageType 1).
const vmbusMessageType = 1

// BusHost returns the SynIC side a bus sends through (vmbus.Host): its
// methods take the target VP's lock, so the bus may call them holding its
// own, as long as it is never called with a VP lock held (it is not:
// see MessageBus).
func (p *Partition) BusHost() BusHost { return BusHost{p} }

// BusHost delivers a bus's messages and events to the guest.
type BusHost struct{ p *Partition }

// PostMessage writes msg into SINT sint's slot of VP vp's message page and
// raises the SINT; false when the slot is busy (the guest's EOM brings a
// retry) or the SynIC cannot take it now.
func (h BusHost) PostMessage(vp, sint int, msg []byte) bool {
	v := h.p.vp(vp)
	if v == nil || sint < 0 || sint >= sintCount {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return h.p.postMessage(v, sint, vmbusMessageType, msg)
}

// SignalEvent sets event flag flag of SINT sint on VP vp and raises the
// SINT if the flag was clear.
func (h BusHost) SignalEvent(vp, sint int, flag uint32) {
	v := h.p.vp(vp)
	if v == nil || sint < 0 || sint >= sintCount || flag >= eventFlagCount {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	h.p.setEventFlag(v, sint, flag)
}

// setEventFlag sets flag in v's SIEF slot sint and raises the SINT if the
// flag was clear. Callers hold v.mu.
func (p *Partition) setEventFlag(v *vp, sint int, flag uint32) {
	if v.scontrol&1 == 0 || v.siefp&pageEnable == 0 {
		return
	}
	page, err := p.mem.Slice(v.siefp&pageMask, 4096)
	if err != nil {
		return
	}
	word := page[sint*eventSlotSize+int(flag/32)*4:]
	bit := uint32(1) << (flag % 32)
	if atomicLoad32(word)&bit != 0 {
		return // already pending: no second interrupt
	}
	atomicOr32(word, bit)
	p.raiseSINT(v, sint)
}

// busPost hands a post on an unclaimed connection to the bus.
func (p *Partition) busPost(conn, typ uint32, payload []byte) uint16 {
	b := p.bus.get()
	if b == nil {
		return StatusInvalidConnectionID
	}
	if typ != vmbusMessageType {
		return StatusInvalidParameter
	}
	return b.Post(conn, payload)
}

// busSignal hands a signal on an unclaimed connection to the bus.
func (p *Partition) busSignal(conn uint32) uint16 {
	if b := p.bus.get(); b != nil {
		return b.Signal(conn)
	}
	return StatusInvalidConnectionID
}

// busEOM tells the bus a slot may be free after a SynIC MSR write.
func (p *Partition) busEOM(msr uint32) {
	switch {
	case msr == MSREOM, msr == MSRSIMP, msr == MSRSControl, msr >= MSRSINT0 && msr <= MSRSINT15:
	default:
		return
	}
	if b := p.bus.get(); b != nil {
		b.EOM()
	}
}
