package hyperv

import (
	"errors"
	"fmt"
	"sync"
)

// SynIC routes and connections that a host device (QEMU's hyperv-testdev)
// creates, so HvPostMessage and HvSignalEvent have somewhere to go: a
// message connection echoes the posted message to its VP's SINT slot, an
// event connection sets event flag <connection ID> in its VP's SIEF slot
// and raises the SINT, as QEMU's test device does.

// StatusInsufficientBuffers: the connection's message slot is still full.
const StatusInsufficientBuffers = 0x0013

// Event flag pages (TLFS HV_SYNIC_EVENT_FLAGS): 16 slots of 256 bytes, one
// bit per connection.
const (
	eventSlotSize  = 256
	eventFlagCount = eventSlotSize * 8
	connIDMask     = 0x00ffffff
	sintCount      = 16
)

// ErrRoute marks a route or connection request that names no VP or SINT of
// the partition, or a connection ID already taken.
var ErrRoute = errors.New("bad SynIC route")

// route is a (VP, SINT) pair.
type route struct{ vp, sint int }

// connections is the partition's route and connection table.
type connections struct {
	mu     sync.Mutex
	routes map[route]bool
	msg    map[uint32]route
	evt    map[uint32]route
}

func (p *Partition) checkRoute(vp, sint int) (route, error) {
	if vp < 0 || vp >= len(p.vps) || sint < 0 || sint >= sintCount {
		return route{}, fmt.Errorf("%w: VP %d SINT %d", ErrRoute, vp, sint)
	}
	return route{vp, sint}, nil
}

// CreateSINTRoute adds a route to SINT sint of VP vp.
func (p *Partition) CreateSINTRoute(vp, sint int) error {
	r, err := p.checkRoute(vp, sint)
	if err != nil {
		return err
	}
	p.conns.mu.Lock()
	defer p.conns.mu.Unlock()
	if p.conns.routes == nil {
		p.conns.routes = map[route]bool{}
	}
	p.conns.routes[r] = true
	return nil
}

// DestroySINTRoute removes it.
func (p *Partition) DestroySINTRoute(vp, sint int) {
	p.conns.mu.Lock()
	defer p.conns.mu.Unlock()
	delete(p.conns.routes, route{vp, sint})
}

// SetSINT raises SINT sint of VP vp through its route (none: nothing).
func (p *Partition) SetSINT(vp, sint int) {
	p.conns.mu.Lock()
	ok := p.conns.routes[route{vp, sint}]
	p.conns.mu.Unlock()
	if !ok {
		return
	}
	v := p.vps[vp]
	v.mu.Lock()
	defer v.mu.Unlock()
	p.raiseSINT(v, sint)
}

func (p *Partition) createConn(table *map[uint32]route, vp, sint int, conn uint32) error {
	r, err := p.checkRoute(vp, sint)
	if err != nil {
		return err
	}
	if conn&^connIDMask != 0 {
		return fmt.Errorf("%w: connection ID %#x", ErrRoute, conn)
	}
	p.conns.mu.Lock()
	defer p.conns.mu.Unlock()
	if *table == nil {
		*table = map[uint32]route{}
	}
	if _, taken := (*table)[conn]; taken {
		return fmt.Errorf("%w: connection ID %#x already in use", ErrRoute, conn)
	}
	(*table)[conn] = r
	return nil
}

// CreateMessageConnection routes HvPostMessage on connection conn to SINT
// sint of VP vp.
func (p *Partition) CreateMessageConnection(vp, sint int, conn uint32) error {
	return p.createConn(&p.conns.msg, vp, sint, conn)
}

// DestroyMessageConnection removes connection conn.
func (p *Partition) DestroyMessageConnection(conn uint32) {
	p.conns.mu.Lock()
	defer p.conns.mu.Unlock()
	delete(p.conns.msg, conn)
}

// CreateEventConnection routes HvSignalEvent on connection conn to SINT
// sint of VP vp. Its flag is bit conn of the SINT's event flags, so conn
// must be below 2048.
func (p *Partition) CreateEventConnection(vp, sint int, conn uint32) error {
	if conn >= eventFlagCount {
		return fmt.Errorf("%w: event connection ID %d, at most %d", ErrRoute, conn, eventFlagCount-1)
	}
	return p.createConn(&p.conns.evt, vp, sint, conn)
}

// DestroyEventConnection removes connection conn.
func (p *Partition) DestroyEventConnection(conn uint32) {
	p.conns.mu.Lock()
	defer p.conns.mu.Unlock()
	delete(p.conns.evt, conn)
}

func (p *Partition) lookup(table map[uint32]route, conn uint32) (route, bool) {
	p.conns.mu.Lock()
	defer p.conns.mu.Unlock()
	r, ok := table[conn]
	return r, ok
}

// deliverMessage echoes a posted message to its connection's SINT slot.
func (p *Partition) deliverMessage(conn, typ uint32, payload []byte) uint16 {
	r, ok := p.lookup(p.conns.msg, conn)
	if !ok {
		return p.busPost(conn, typ, payload)
	}
	v := p.vps[r.vp]
	v.mu.Lock()
	defer v.mu.Unlock()
	if !p.postMessage(v, r.sint, typ, payload) {
		return StatusInsufficientBuffers
	}
	return StatusSuccess
}

// signalEvent handles HvSignalEvent's input value: connection ID in bits
// 0-23, a flag number in bits 32-47 (only 0 is supported, as QEMU), the
// rest reserved.
func (p *Partition) signalEvent(param uint64) uint16 {
	if param&0xffff00000000 != 0 {
		return StatusInvalidPortID
	}
	if param&^connIDMask != 0 {
		return StatusInvalidInput
	}
	conn := uint32(param)
	r, ok := p.lookup(p.conns.evt, conn)
	if !ok {
		return p.busSignal(conn)
	}
	v := p.vps[r.vp]
	v.mu.Lock()
	defer v.mu.Unlock()
	p.setEventFlag(v, r.sint, conn)
	return StatusSuccess
}
