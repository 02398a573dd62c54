// Package ic is the host side of Hyper-V's integration services (ICs),
// the channels Linux's hv_utils binds (drivers/hv/hv_util.c,
// include/linux/hyperv.h icmsg_*): a host-driven request/response
// framework, and the heartbeat, shutdown, time sync and KVP services on
// it (VSS is not here).
//
// Every IC packet is inband: {vmbuspipe_hdr {u32 flags, u32 msgsize},
// icmsg_hdr {icverframe, u16 icmsgtype, icvermsg, u16 icmsgsize,
// u32 status, u8 ictransaction_id, u8 icflags, u8 reserved[2]}, body}.
// When the guest opens the channel the host sends a NEGOTIATE request
// offering framework and service versions; the guest answers with its
// choice (or none). The host then sends service requests; the guest
// answers each with the same buffer rewritten and the host's transaction
// id. The guest's answers are input like any other: a short, unknown or
// unasked-for answer is counted and ignored.
package ic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// Message types (hyperv.h ICMSGTYPE_*).
const (
	TypeNegotiate = 0
	TypeHeartbeat = 1
	TypeShutdown  = 3
	TypeTimeSync  = 4
)

// Header layout and flags.
const (
	pipeHdr     = 8
	HeaderSize  = pipeHdr + 20 // ICMSG_HDR: body offset
	offFrame    = 8
	offType     = 12
	offMsgVer   = 14
	offMsgSize  = 18
	offStatus   = 20
	offTransact = 24
	offFlags    = 25

	flagTransaction = 1
	flagRequest     = 2
	flagResponse    = 4

	// StatusOK and StatusFail are the icmsg_hdr status values.
	StatusOK   = 0
	StatusFail = 0x80004005
)

// Version packs major.minor as the guest does (major << 16 | minor).
func Version(major, minor uint16) uint32 { return uint32(major)<<16 | uint32(minor) }

func versionString(v uint32) string { return fmt.Sprintf("%d.%d", v>>16, v&0xffff) }

// frameworkVersions are offered to every guest (Linux: 3.0, then 1.0).
var frameworkVersions = []uint32{Version(3, 0), Version(1, 0)}

var (
	// ErrNotReady: the channel is not open or not negotiated.
	ErrNotReady = errors.New("integration service not ready")
	// ErrBusy: a request of this kind is still unanswered.
	ErrBusy = errors.New("integration service request outstanding")
)

// State is where a service stands with the guest.
type State string

const (
	StateClosed      State = "closed"      // channel not open
	StateNegotiating State = "negotiating" // NEGOTIATE sent, no answer yet
	StateReady       State = "ready"       // versions agreed
	StateFailed      State = "failed"      // no common version
)

// Status is what every service reports.
type Status struct {
	State State `json:"state"`
	// Framework and Version are the negotiated versions ("3.0").
	Framework string `json:"framework,omitempty"`
	Version   string `json:"version,omitempty"`
	// Opens counts channel opens; Ignored the guest answers ignored
	// (short, unknown transaction, or not asked for).
	Opens   uint64 `json:"opens"`
	Ignored uint64 `json:"ignored"`
}

// service is the part a concrete IC supplies to the framework.
type service struct {
	name     string
	offer    vmbus.Offer
	msgType  uint16
	versions []uint32 // service versions offered, best first
	// answer handles the guest's answer to a service request; called
	// with mu held. body is the answer past the headers.
	answer func(status uint32, body []byte)
	// reset clears per-open state; called with mu held.
	reset func()
	// ready runs once the versions are agreed; called with mu held.
	ready func()
}

// framework runs the IC protocol on one channel for one service.
type framework struct {
	svc service

	mu      sync.Mutex
	ch      *vmbus.Channel
	state   State
	fw, ver uint32
	nextID  uint64
	// pending maps outstanding transaction ids to the message type.
	pending map[uint64]uint16
	opens   uint64
	ignored uint64
	buf     []byte
	// negotiated, if set, hears each agreement (OnNegotiated).
	negotiated func(service, framework, version string)
}

// OnNegotiated sets fn to be called, with the service's lock held, each
// time the guest agrees on versions (for traces); fn must not call back
// into the service.
func (f *framework) OnNegotiated(fn func(service, framework, version string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.negotiated = fn
}

func newFramework(s service) *framework {
	return &framework{svc: s, state: StateClosed, pending: map[uint64]uint16{}}
}

// Offer implements vmbus.Device.
func (f *framework) Offer() vmbus.Offer { return f.svc.offer }

// Open implements vmbus.Device.
func (f *framework) Open(c *vmbus.Channel) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ch = c
	f.state = StateNegotiating
	f.fw, f.ver = 0, 0
	clear(f.pending)
	f.opens++
	if f.svc.reset != nil {
		f.svc.reset()
	}
	return nil
}

// Opened implements vmbus.Device: the host speaks first.
func (f *framework) Opened(c *vmbus.Channel) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch != c {
		return
	}
	body := make([]byte, 8+4*(len(frameworkVersions)+len(f.svc.versions)))
	le := binary.LittleEndian
	le.PutUint16(body[0:], uint16(len(frameworkVersions)))
	le.PutUint16(body[2:], uint16(len(f.svc.versions)))
	for i, v := range append(append([]uint32(nil), frameworkVersions...), f.svc.versions...) {
		le.PutUint16(body[8+4*i:], uint16(v>>16))
		le.PutUint16(body[10+4*i:], uint16(v))
	}
	// The request names the oldest versions; the guest ignores them.
	f.sendLocked(TypeNegotiate, Version(1, 0), Version(1, 0), body)
}

// Close implements vmbus.Device.
func (f *framework) Close(c *vmbus.Channel) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch == c {
		f.ch = nil
		f.state = StateClosed
		clear(f.pending)
	}
}

// sendLocked sends one request and records it as outstanding.
func (f *framework) sendLocked(typ uint16, fw, ver uint32, body []byte) error {
	if f.ch == nil {
		return ErrNotReady
	}
	f.nextID++
	id := f.nextID
	p := make([]byte, HeaderSize+len(body))
	le := binary.LittleEndian
	le.PutUint32(p[4:], uint32(HeaderSize-pipeHdr+len(body)))
	le.PutUint16(p[offFrame:], uint16(fw>>16))
	le.PutUint16(p[offFrame+2:], uint16(fw))
	le.PutUint16(p[offType:], typ)
	le.PutUint16(p[offMsgVer:], uint16(ver>>16))
	le.PutUint16(p[offMsgVer+2:], uint16(ver))
	le.PutUint16(p[offMsgSize:], uint16(len(body)))
	p[offTransact] = uint8(id)
	p[offFlags] = flagTransaction | flagRequest
	copy(p[HeaderSize:], body)
	if err := f.ch.Send(ring.TypeDataInband, 0, id, nil, p); err != nil {
		return fmt.Errorf("%s: %w", f.svc.name, err)
	}
	f.pending[id] = typ
	return nil
}

// request sends a service request once the versions are agreed; only one
// may be outstanding.
func (f *framework) requestLocked(body []byte) error {
	if f.state != StateReady {
		return ErrNotReady
	}
	for _, t := range f.pending {
		if t == f.svc.msgType {
			return ErrBusy
		}
	}
	return f.sendLocked(f.svc.msgType, f.fw, f.ver, body)
}

// Interrupt implements vmbus.Device: it takes the guest's answers.
func (f *framework) Interrupt(c *vmbus.Channel) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch != c {
		return
	}
	for {
		p, ok, err := c.Recv(f.buf)
		if err != nil || !ok {
			break
		}
		f.buf = p.Payload[:0]
		f.answerLocked(p)
	}
	c.RecvDone()
}

func (f *framework) answerLocked(p ring.Packet) {
	typ, asked := f.pending[p.TransID]
	b := p.Payload
	le := binary.LittleEndian
	if !asked || p.Type != ring.TypeDataInband || len(b) < HeaderSize || le.Uint16(b[offType:]) != typ {
		f.ignored++
		return
	}
	delete(f.pending, p.TransID)
	status := le.Uint32(b[offStatus:])
	body := b[HeaderSize:]
	if typ != TypeNegotiate {
		f.svc.answer(status, body)
		return
	}
	// {u16 icframe_vercnt, u16 icmsg_vercnt, u32 reserved, versions}: the
	// guest's choice is counts 1/1 and versions [0] and [1].
	f.state = StateFailed
	if len(body) < 16 || le.Uint16(body[0:]) != 1 || le.Uint16(body[2:]) != 1 {
		return
	}
	fw := Version(le.Uint16(body[8:]), le.Uint16(body[10:]))
	ver := Version(le.Uint16(body[12:]), le.Uint16(body[14:]))
	if !contains(frameworkVersions, fw) || !contains(f.svc.versions, ver) {
		return
	}
	f.fw, f.ver, f.state = fw, ver, StateReady
	if f.negotiated != nil {
		f.negotiated(f.svc.name, versionString(fw), versionString(ver))
	}
	if f.svc.ready != nil {
		f.svc.ready()
	}
}

func contains(vs []uint32, v uint32) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

func (f *framework) statusLocked() Status {
	s := Status{State: f.state, Opens: f.opens, Ignored: f.ignored}
	if f.state == StateReady {
		s.Framework, s.Version = versionString(f.fw), versionString(f.ver)
	}
	return s
}
