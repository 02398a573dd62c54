// Package gpadl assembles VMBus GPADLs (guest physical address descriptor
// lists) from the guest's GPADL_HEADER and GPADL_BODY messages (Linux
// drivers/hv/channel.c create_gpadl_header, include/linux/hyperv.h
// vmbus_channel_gpadl_header/_body).
//
// A GPADL names guest pages by PFN under a guest-chosen 32-bit id; rings
// and device buffers are given to the host that way. The header carries
// the range description and the first PFNs, bodies carry the rest; the
// GPADL is complete once the range's PFNs have all arrived.
//
// Only one range per GPADL is accepted (Linux and iPXE send one; QEMU
// refuses others). The table is bounded (Limits): a guest cannot make the
// host hold more PFNs or GPADLs than that, complete or not. Every PFN is
// checked against guest RAM when the GPADL completes.
package gpadl

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	pageSize = 4096
	// HeaderFixed is the size of GPADL_HEADER before its PFNs: VMBus
	// header, relid, gpadl, range_buflen, rangecount, byte_count,
	// byte_offset.
	HeaderFixed = 28
	// BodyFixed is the size of GPADL_BODY before its PFNs.
	BodyFixed  = 16
	rangeFixed = 8 // gpa_range {byte_count, byte_offset}
)

var (
	// ErrInvalid: the messages do not describe a GPADL the host accepts.
	ErrInvalid = errors.New("invalid GPADL")
	// ErrLimit: accepting the GPADL would exceed the table's limits.
	ErrLimit = errors.New("GPADL limit reached")
	// ErrUnknown: no GPADL (complete or pending) has that id.
	ErrUnknown = errors.New("unknown GPADL")
)

// Memory is guest memory as the VMM maps it.
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// Limits bound what the guest can make the host hold.
type Limits struct {
	// Count bounds the GPADLs, complete or pending.
	Count int
	// TotalPages bounds the PFNs held by all GPADLs, complete or pending.
	TotalPages int
}

// DefaultLimits: 512 GPADLs and 1 Mi PFNs (8 MiB of host memory) between
// them. range_buflen is 16 bits, so one GPADL has at most 8190 PFNs.
var DefaultLimits = Limits{Count: 512, TotalPages: 1 << 20}

// GPADL is a complete descriptor list.
type GPADL struct {
	ID    uint32
	Relid uint32
	// ByteOffset into the first page and ByteCount of the range.
	ByteOffset, ByteCount uint32
	PFNs                  []uint64
}

// Table holds the partition's GPADLs.
type Table struct {
	mem      Memory
	limits   Limits
	complete map[uint32]*GPADL
	pending  map[uint32]*GPADL // PFNs still arriving (len < cap)
	pages    int
}

// New returns an empty table.
func New(mem Memory, l Limits) *Table {
	return &Table{mem: mem, limits: l, complete: map[uint32]*GPADL{}, pending: map[uint32]*GPADL{}}
}

// Header processes a GPADL_HEADER message (the whole message, VMBus header
// included). It returns the id and relid the message names (zero when too
// short to name them), and the GPADL when this message completed it. On
// error no state is kept for the id, except that an id already in use
// keeps its GPADL.
func (t *Table) Header(msg []byte) (id, relid uint32, g *GPADL, err error) {
	if len(msg) < HeaderFixed {
		return 0, 0, nil, fmt.Errorf("%w: header of %d bytes", ErrInvalid, len(msg))
	}
	relid = binary.LittleEndian.Uint32(msg[8:])
	id = binary.LittleEndian.Uint32(msg[12:])
	buflen := int(binary.LittleEndian.Uint16(msg[16:]))
	ranges := binary.LittleEndian.Uint16(msg[18:])
	count := binary.LittleEndian.Uint32(msg[20:])
	offset := binary.LittleEndian.Uint32(msg[24:])
	if t.complete[id] != nil || t.pending[id] != nil {
		return id, relid, nil, fmt.Errorf("%w: id %#x already in use", ErrInvalid, id)
	}
	if ranges != 1 {
		return id, relid, nil, fmt.Errorf("%w: %d ranges, only 1 supported", ErrInvalid, ranges)
	}
	if buflen < rangeFixed+8 || (buflen-rangeFixed)%8 != 0 {
		return id, relid, nil, fmt.Errorf("%w: range_buflen %d", ErrInvalid, buflen)
	}
	n := (buflen - rangeFixed) / 8
	if count == 0 || offset >= pageSize || (uint64(offset)+uint64(count)+pageSize-1)/pageSize != uint64(n) {
		return id, relid, nil, fmt.Errorf("%w: %d PFNs for %d bytes at offset %d", ErrInvalid, n, count, offset)
	}
	if (len(msg)-HeaderFixed)%8 != 0 || (len(msg)-HeaderFixed)/8 > n {
		return id, relid, nil, fmt.Errorf("%w: header of %d bytes for %d PFNs", ErrInvalid, len(msg), n)
	}
	if len(t.complete)+len(t.pending) >= t.limits.Count {
		return id, relid, nil, fmt.Errorf("%w: %d GPADLs", ErrLimit, t.limits.Count)
	}
	if t.pages+n > t.limits.TotalPages {
		return id, relid, nil, fmt.Errorf("%w: %d more PFNs over %d held", ErrLimit, n, t.pages)
	}
	g = &GPADL{ID: id, Relid: relid, ByteOffset: offset, ByteCount: count, PFNs: make([]uint64, 0, n)}
	t.pages += n
	t.pending[id] = g
	g, err = t.add(g, msg[HeaderFixed:])
	return id, relid, g, err
}

// Body processes a GPADL_BODY message. It returns the id it names, the
// relid of that GPADL's header, and the GPADL when this message completed
// it; an error drops the pending GPADL.
func (t *Table) Body(msg []byte) (id, relid uint32, g *GPADL, err error) {
	if len(msg) < BodyFixed {
		return 0, 0, nil, fmt.Errorf("%w: body of %d bytes", ErrInvalid, len(msg))
	}
	id = binary.LittleEndian.Uint32(msg[12:])
	p := t.pending[id]
	if p == nil {
		return id, 0, nil, fmt.Errorf("%w: body for id %#x", ErrUnknown, id)
	}
	pfns := msg[BodyFixed:]
	if len(pfns)%8 != 0 || len(pfns)/8 > cap(p.PFNs)-len(p.PFNs) {
		t.drop(p)
		return id, p.Relid, nil, fmt.Errorf("%w: body with %d bytes of PFNs, %d PFNs missing", ErrInvalid, len(pfns), cap(p.PFNs)-len(p.PFNs))
	}
	g, err = t.add(p, pfns)
	return id, p.Relid, g, err
}

// add appends PFNs and completes the GPADL when they are all there.
func (t *Table) add(g *GPADL, pfns []byte) (*GPADL, error) {
	for i := 0; i+8 <= len(pfns); i += 8 {
		g.PFNs = append(g.PFNs, binary.LittleEndian.Uint64(pfns[i:]))
	}
	if len(g.PFNs) < cap(g.PFNs) {
		return nil, nil
	}
	for _, pfn := range g.PFNs {
		if pfn >= 1<<52 {
			t.drop(g)
			return nil, fmt.Errorf("%w: PFN %#x", ErrInvalid, pfn)
		}
		if _, err := t.mem.Slice(pfn*pageSize, pageSize); err != nil {
			t.drop(g)
			return nil, fmt.Errorf("%w: PFN %#x is not guest RAM: %w", ErrInvalid, pfn, err)
		}
	}
	delete(t.pending, g.ID)
	t.complete[g.ID] = g
	return g, nil
}

func (t *Table) drop(g *GPADL) {
	delete(t.pending, g.ID)
	delete(t.complete, g.ID)
	t.pages -= cap(g.PFNs)
}

// Get returns the complete GPADL id.
func (t *Table) Get(id uint32) (*GPADL, bool) {
	g, ok := t.complete[id]
	return g, ok
}

// Remove tears down GPADL id, complete or pending.
func (t *Table) Remove(id uint32) error {
	g := t.complete[id]
	if g == nil {
		g = t.pending[id]
	}
	if g == nil {
		return fmt.Errorf("%w: id %#x", ErrUnknown, id)
	}
	t.drop(g)
	return nil
}

// Reset drops every GPADL.
func (t *Table) Reset() {
	clear(t.complete)
	clear(t.pending)
	t.pages = 0
}

// Len is the number of GPADLs, complete and pending; Pages their PFNs.
func (t *Table) Len() int   { return len(t.complete) + len(t.pending) }
func (t *Table) Pages() int { return t.pages }
