package hyperv

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// Message slots of the SIMP page (TLFS: HV_MESSAGE): 16 slots of 256 bytes,
// a 16-byte header {type u32, payload size u8, flags u8, reserved u16,
// sender u64} and 240 bytes of payload.
const (
	msgSlotSize     = 256
	msgHeaderSize   = 16
	msgPayloadMax   = 240
	msgFlagsWord    = 4 // the u32 holding payload size (byte 4) and flags (byte 5)
	msgPendingBit   = 1 << 8
	msgTypeNone     = 0
	msgTimerExpired = 0x80000010
	timerPayloadLen = 24
)

// atomicLoad32 and atomicStore32 access a naturally aligned u32 of guest
// memory that the guest may access concurrently. The slot offsets used are
// multiples of 4 within page-aligned guest pages.
func atomicLoad32(b []byte) uint32 {
	_ = b[3]
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[0])))
}

func atomicStore32(b []byte, v uint32) {
	_ = b[3]
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[0])), v)
}

func atomicOr32(b []byte, v uint32) {
	_ = b[3]
	atomic.OrUint32((*uint32)(unsafe.Pointer(&b[0])), v)
}

func (v *vp) readSynIC(msr uint32) (uint64, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch msr {
	case MSRVPAssistPage:
		return v.assist, true
	case MSRSControl:
		return v.scontrol, true
	case MSRSVersion:
		return synicVersion, true
	case MSRSIEFP:
		return v.siefp, true
	case MSRSIMP:
		return v.simp, true
	case MSREOM:
		return 0, true
	}
	if msr >= MSRSINT0 && msr <= MSRSINT15 {
		return v.sint[msr-MSRSINT0], true
	}
	if msr >= MSRSTimer0Config && msr <= MSRSTimer3Count {
		t := &v.timers[(msr-MSRSTimer0Config)/2]
		if (msr-MSRSTimer0Config)%2 == 0 {
			return t.config, true
		}
		return t.count, true
	}
	return 0, false
}

func (p *Partition) writeSynIC(v *vp, msr uint32, value uint64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch msr {
	case MSRVPAssistPage:
		// Bit 0 enables; bits 11:1 are reserved.
		if value&0xffe != 0 {
			return false
		}
		if value&pageEnable != 0 && value != v.assist {
			page, err := p.mem.Slice(value&pageMask, 4096)
			if err != nil {
				return false
			}
			clear(page)
		}
		v.assist = value
		return true
	case MSRSControl:
		// Only bit 0 (enable) is defined.
		if value&^1 != 0 {
			return false
		}
		v.scontrol = value
	case MSRSIEFP, MSRSIMP:
		if value&pageEnable != 0 && (msr == MSRSIMP && v.simp != value || msr == MSRSIEFP && v.siefp != value) {
			// A newly enabled page starts empty (as KVM does): no stale
			// messages or event flags from before.
			page, err := p.mem.Slice(value&pageMask, 4096)
			if err != nil {
				return false
			}
			clear(page)
		}
		if msr == MSRSIMP {
			v.simp = value
		} else {
			v.siefp = value
		}
	case MSREOM:
		// The guest freed a slot it found marked message-pending.
	default:
		if msr < MSRSINT0 || msr > MSRSINT15 {
			return false
		}
		vec := value & sintVectorMask
		if value&^uint64(sintValidBits) != 0 || value&sintMasked == 0 && vec < sintFirstVector {
			return false
		}
		v.sint[msr-MSRSINT0] = value
		if !p.kernel {
			p.mirrorSINT(v, int(msr-MSRSINT0), value)
		}
	}
	p.mirrorKernel(v, msr, value)
	// Any of these may unblock a timer message waiting for a slot, a page
	// or an unmasked SINT.
	p.retryTimers(v)
	return true
}

// postMessage writes a message into slot sint of v's SIMP page and raises
// the SINT. It returns false when it cannot deliver now: SynIC or SIMP off,
// SINT masked, or the slot still full (then the slot is marked
// message-pending, and the guest's EOM write brings a retry).
// Callers hold v.mu.
func (p *Partition) postMessage(v *vp, sint int, typ uint32, payload []byte) bool {
	if v.scontrol&1 == 0 || v.simp&pageEnable == 0 || v.sint[sint]&sintMasked != 0 || len(payload) > msgPayloadMax {
		return false
	}
	if p.deferPost(v) {
		return false
	}
	page, err := p.mem.Slice(v.simp&pageMask, 4096)
	if err != nil {
		return false
	}
	slot := page[sint*msgSlotSize : (sint+1)*msgSlotSize]
	if atomicLoad32(slot) != msgTypeNone {
		atomicOr32(slot[msgFlagsWord:], msgPendingBit)
		// The guest may have emptied the slot before it could see the
		// pending flag; then it will not write EOM, so deliver now.
		if atomicLoad32(slot) != msgTypeNone {
			return false
		}
	}
	// Only the type word tells the guest a slot is full: body first, type last.
	copy(slot[msgHeaderSize:], payload)
	binary.LittleEndian.PutUint64(slot[8:], 0)
	atomicStore32(slot[msgFlagsWord:], uint32(len(payload)))
	atomicStore32(slot, typ)
	p.raiseSINT(v, sint)
	return true
}

// raiseSINT interrupts v with SINT sint's vector. Callers hold v.mu.
func (p *Partition) raiseSINT(v *vp, sint int) {
	s := v.sint[sint]
	if s&sintMasked != 0 {
		return
	}
	vec := uint8(s & sintVectorMask)
	if err := p.host.Interrupt(v.index, vec); err != nil {
		p.log.Warn("Hyper-V SINT injection failed", "vcpu", v.index, "sint", sint, "err", err)
		return
	}
	p.stats.sintRaised(v.index)
	if s&sintAutoEOI != 0 {
		p.noteAutoEOI(v, vec)
	}
}
