package vmbus

import (
	"encoding/binary"
	"fmt"
	"time"
)

// What the guest waits for: Linux blocks (mostly without a timeout) after
// each of these requests until the host's answer is in its message slot.
// The bus answers every one, but an answer can still sit in the outbound
// queue when the guest never frees its slot; the waits make a stuck guest
// diagnosable (Stats.Waiting, Bus.Stalled).

// replyTo maps a guest request to the host message that ends its wait.
var replyTo = [msgTypes]uint32{
	msgInitiateContact: msgVersionResponse,
	msgRequestOffers:   msgAllOffersDelivered,
	msgGPADLHeader:     msgGPADLCreated,
	msgOpenChannel:     msgOpenChannelResult,
	msgGPADLTeardown:   msgGPADLTorndown,
	msgUnload:          msgUnloadResponse,
	msgModifyChannel:   msgModifyChannelResult,
}

// maxWaits bounds the waits kept: a guest flooding requests keeps only
// the newest.
const maxWaits = 64

// Wait is a guest request whose answer the guest has not got yet.
type Wait struct {
	// For is the answer the guest waits for (GPADL_CREATED, ...) and
	// Request what it asked ("GPADL_HEADER relid 3 gpadl 0xe1e10").
	For     string    `json:"for"`
	Request string    `json:"request"`
	Since   time.Time `json:"since"`
	// Queued: the answer is ready but the guest's message slot is still
	// full (it has not acknowledged an earlier message with EOM).
	Queued bool `json:"queued"`

	reply, key uint32
}

// waitKey is the id that pairs a request with its answer: the GPADL for
// GPADL messages, the relid for open; zero where one answer fits all.
func waitKey(typ uint32, m []byte) uint32 {
	le := binary.LittleEndian
	switch typ {
	case msgGPADLHeader, msgGPADLTeardown, msgGPADLCreated:
		if len(m) >= 16 {
			return le.Uint32(m[12:])
		}
	case msgGPADLTorndown, msgOpenChannel, msgOpenChannelResult, msgModifyChannel, msgModifyChannelResult:
		if len(m) >= 12 {
			return le.Uint32(m[8:])
		}
	}
	return 0
}

// noteIn traces a handled guest message and records the wait it starts.
// Called after the message was handled (INITIATE_CONTACT and UNLOAD
// reset the waits first).
func (b *Bus) noteIn(typ uint32, m []byte) {
	b.trace("in", typ, m)
	reply := replyTo[typ]
	if reply == 0 || (typ == msgModifyChannel && b.version < Version5_3) {
		return
	}
	if len(b.waits) >= maxWaits {
		b.waits = b.waits[1:]
	}
	b.waits = append(b.waits, Wait{For: msgName(reply), Request: describe(typ, m), Since: b.now(),
		reply: reply, key: waitKey(typ, m)})
}

// noteOut traces a host message delivered to the guest's slot and ends
// the wait it answers.
func (b *Bus) noteOut(m []byte) {
	typ := binary.LittleEndian.Uint32(m)
	b.trace("out", typ, m)
	key := waitKey(typ, m)
	for i, w := range b.waits {
		// A GPADL_CREATED answering GPADL_HEADER carries the GPADL id the
		// header named; the others pair by their key likewise.
		if w.reply == typ && w.key == key {
			b.waits = append(b.waits[:i], b.waits[i+1:]...)
			return
		}
	}
}

func (b *Bus) now() time.Time {
	if b.cfg.Now != nil {
		return b.cfg.Now()
	}
	return time.Now()
}

func (b *Bus) trace(dir string, typ uint32, m []byte) {
	if b.cfg.Trace != nil {
		b.cfg.Trace(dir, msgName(typ), describe(typ, m))
	}
}

// waitingLocked returns the open waits, marking those whose answer is
// queued.
func (b *Bus) waitingLocked() []Wait {
	out := make([]Wait, len(b.waits))
	copy(out, b.waits)
	for i := range out {
		for _, o := range b.out {
			typ := binary.LittleEndian.Uint32(o.msg)
			if typ == out[i].reply && waitKey(typ, o.msg) == out[i].key {
				out[i].Queued = true
			}
		}
	}
	return out
}

// Stalled returns the guest's waits that are older than after at now: a
// guest that waits this long on the host is stuck (vmm logs them).
func (b *Bus) Stalled(now time.Time, after time.Duration) []Wait {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Wait
	for _, w := range b.waitingLocked() {
		if now.Sub(w.Since) > after {
			out = append(out, w)
		}
	}
	return out
}

// describe renders a control message's fields for traces and waits.
func describe(typ uint32, m []byte) string {
	le := binary.LittleEndian
	u32 := func(off int) uint32 {
		if len(m) < off+4 {
			return 0
		}
		return le.Uint32(m[off:])
	}
	ver := func(v uint32) string { return fmt.Sprintf("%d.%d", v>>16, v&0xffff) }
	name := msgName(typ)
	switch typ {
	case msgInitiateContact:
		return fmt.Sprintf("%s version %s vp %d", name, ver(u32(8)), u32(12))
	case msgVersionResponse:
		return fmt.Sprintf("%s supported %d", name, u32(8)&0xff)
	case msgOfferChannel:
		var class GUID
		if len(m) >= 24 {
			copy(class[:], m[8:24])
		}
		return fmt.Sprintf("%s relid %d class %s", name, u32(184), class)
	case msgRescindOffer, msgCloseChannel, msgRelidReleased:
		return fmt.Sprintf("%s relid %d", name, u32(8))
	case msgOpenChannel:
		return fmt.Sprintf("%s relid %d gpadl %#x vp %d", name, u32(8), u32(16), u32(20))
	case msgOpenChannelResult:
		return fmt.Sprintf("%s relid %d status %#x", name, u32(8), u32(16))
	case msgGPADLHeader:
		return fmt.Sprintf("%s relid %d gpadl %#x", name, u32(8), u32(12))
	case msgGPADLBody:
		return fmt.Sprintf("%s gpadl %#x", name, u32(12))
	case msgGPADLCreated:
		return fmt.Sprintf("%s relid %d gpadl %#x status %#x", name, u32(8), u32(12), u32(16))
	case msgGPADLTeardown:
		return fmt.Sprintf("%s relid %d gpadl %#x", name, u32(8), u32(12))
	case msgGPADLTorndown:
		return fmt.Sprintf("%s gpadl %#x", name, u32(8))
	case msgModifyChannel:
		return fmt.Sprintf("%s relid %d vp %d", name, u32(8), u32(12))
	case msgModifyChannelResult:
		return fmt.Sprintf("%s relid %d status %#x", name, u32(8), u32(12))
	}
	return name
}
