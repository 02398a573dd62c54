// Package guestdrv is a guest-side VMBus driver for tests: it speaks the
// control protocol to a bus through a fake SynIC (message slots and event
// flags) and reads and writes channel rings in fake guest memory, written
// from the protocol description (Linux include/linux/hyperv.h, drivers/hv)
// independently of the host code it tests.
package guestdrv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

const PageSize = 4096

// Mem is flat guest RAM from GPA 0.
type Mem []byte

// Slice fails outside RAM, as vmm's Memory does.
func (m Mem) Slice(gpa, n uint64) ([]byte, error) {
	if gpa > uint64(len(m)) || n > uint64(len(m))-gpa {
		return nil, fmt.Errorf("[%#x, +%#x) outside RAM", gpa, n)
	}
	return m[gpa : gpa+n : gpa+n], nil
}

type slot struct{ vp, sint int }

// SynIC is a fake SynIC: one message slot per (VP, SINT), which holds one
// message until the guest takes it, and event flags per (VP, SINT).
type SynIC struct {
	mu    sync.Mutex
	slots map[slot][]byte
	flags map[slot]map[uint32]bool
	// Interrupts counts SINTs raised by events, per (VP, SINT).
	interrupts map[slot]int
	// Off makes every PostMessage fail (a SIMP not enabled yet).
	Off bool
}

func NewSynIC() *SynIC {
	return &SynIC{slots: map[slot][]byte{}, flags: map[slot]map[uint32]bool{}, interrupts: map[slot]int{}}
}

// PostMessage implements vmbus.Host.
func (s *SynIC) PostMessage(vp, sint int, msg []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := slot{vp, sint}
	if s.Off || s.slots[k] != nil {
		return false
	}
	s.slots[k] = append([]byte(nil), msg...)
	return true
}

// SignalEvent implements vmbus.Host.
func (s *SynIC) SignalEvent(vp, sint int, flag uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := slot{vp, sint}
	if s.flags[k] == nil {
		s.flags[k] = map[uint32]bool{}
	}
	if !s.flags[k][flag] {
		s.flags[k][flag] = true
		s.interrupts[k]++
	}
}

// Take empties slot (vp, sint) and returns what it held (nil: empty).
func (s *SynIC) Take(vp, sint int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.slots[slot{vp, sint}]
	delete(s.slots, slot{vp, sint})
	return m
}

// TestAndClear reports and clears event flag flag of (vp, sint).
func (s *SynIC) TestAndClear(vp, sint int, flag uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flags[slot{vp, sint}][flag]
	delete(s.flags[slot{vp, sint}], flag)
	return f
}

// Bus is what the guest calls: the hypercalls and the EOM write.
type Bus interface {
	Post(conn uint32, msg []byte) uint16
	Signal(conn uint32) uint16
	EOM()
}

// Guest is the guest side of one VMBus connection.
type Guest struct {
	Mem   Mem
	SynIC *SynIC
	Bus   Bus
	// VP and SINT receive control messages.
	VP, SINT int
	// Conn is the message connection to post to.
	Conn uint32
	// IntPage is the interrupt page's GPA INITIATE_CONTACT names before
	// 5.0 (0: none). SharedSignal makes channels signal the host as iPXE
	// and Linux at 0.13 do: bit relid in its second half, then
	// HvSignalEvent on connection 2.
	IntPage      uint64
	SharedSignal bool
	// Version is the version the host last accepted.
	Version  uint32
	nextPage uint64
	nextID   uint32
}

// New makes a guest with ram bytes of RAM; pages are handed out from
// 1 MiB up.
func New(ram int, bus Bus, synic *SynIC) *Guest {
	return &Guest{Mem: make(Mem, ram), SynIC: synic, Bus: bus, SINT: 2, Conn: 1, nextPage: 256, nextID: 0xe1e10}
}

// Alloc returns n contiguous fresh pages' first PFN.
func (g *Guest) Alloc(n int) uint64 {
	p := g.nextPage
	g.nextPage += uint64(n)
	return p
}

// Post sends a control message and returns the hypercall status.
func (g *Guest) Post(msg []byte) uint16 { return g.Bus.Post(g.Conn, msg) }

// Recv takes the next control message, as Linux's message handler does:
// it empties the slot and writes EOM (which the fake SynIC always
// forwards). nil: none.
func (g *Guest) Recv() []byte {
	m := g.SynIC.Take(g.VP, g.SINT)
	if m != nil {
		g.Bus.EOM()
	}
	return m
}

// Type is a message's type.
func Type(m []byte) uint32 {
	if len(m) < 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(m)
}

// Msg builds a message of type typ and size n with u32 fields at offsets.
func Msg(typ uint32, n int, fields ...uint32) []byte {
	m := make([]byte, n)
	binary.LittleEndian.PutUint32(m, typ)
	for i, f := range fields {
		binary.LittleEndian.PutUint32(m[8+4*i:], f)
	}
	return m
}

// Contact posts INITIATE_CONTACT for version (5.x: on connection 4 with
// msg_sint SINT) and returns the VERSION_RESPONSE.
func (g *Guest) Contact(version uint32, conn uint32) []byte {
	m := Msg(14, 40, version, uint32(g.VP))
	if version >= 5<<16 {
		m[16] = byte(g.SINT)
	} else {
		binary.LittleEndian.PutUint64(m[16:], g.IntPage)
	}
	if st := g.Bus.Post(conn, m); st != 0 {
		return nil
	}
	r := g.Recv()
	if Type(r) == 15 && len(r) >= 16 && r[8] == 1 {
		g.Version = version
	}
	return r
}

// Unload posts UNLOAD and waits for UNLOAD_RESPONSE.
func (g *Guest) Unload() error {
	if st := g.Post(Msg(16, 8)); st != 0 {
		return fmt.Errorf("UNLOAD: status %#x", st)
	}
	if r := g.Recv(); Type(r) != 17 {
		return fmt.Errorf("want UNLOAD_RESPONSE, got %x", r)
	}
	return nil
}

// NegotiateIPXE connects as iPXE does: 3.0 to check the host has it,
// UNLOAD, then 0.13 (Windows Server 2008), every message on connection 1
// with the interrupt page, and channel signals through that page.
func (g *Guest) NegotiateIPXE() error {
	if g.IntPage == 0 {
		g.IntPage = g.Alloc(1) * PageSize
	}
	g.SharedSignal = true
	for i, v := range []uint32{3 << 16, 13} {
		if i == 1 {
			if err := g.Unload(); err != nil {
				return err
			}
		}
		r := g.Contact(v, 1)
		if Type(r) != 15 || len(r) < 16 || r[8] != 1 {
			return fmt.Errorf("version %#x refused: %x", v, r)
		}
	}
	return nil
}

// Negotiate connects as Linux 6.1 does: 5.3 down to 5.0 on connection 4,
// then 4.1 down to 2.4 on connection 1. It returns the accepted version.
func (g *Guest) Negotiate() (uint32, error) {
	for _, v := range []uint32{5<<16 | 3, 5<<16 | 2, 5<<16 | 1, 5 << 16, 4<<16 | 1, 4 << 16, 3 << 16, 2<<16 | 4} {
		conn := uint32(1)
		if v >= 5<<16 {
			conn = 4
		}
		r := g.Contact(v, conn)
		if Type(r) != 15 || len(r) < 16 {
			return 0, fmt.Errorf("version %#x: answer %x", v, r)
		}
		if r[8] == 1 {
			g.Conn = 1
			if v >= 5<<16 {
				g.Conn = binary.LittleEndian.Uint32(r[12:])
			}
			return v, nil
		}
	}
	return 0, errors.New("no version accepted")
}

// Offer is a parsed OFFERCHANNEL.
type Offer struct {
	Class, Instance [16]byte
	Relid, Conn     uint32
	SubIndex        uint16
	Dedicated       bool
	Monitored       bool
}

// ParseOffer decodes OFFERCHANNEL.
func ParseOffer(m []byte) Offer {
	var o Offer
	copy(o.Class[:], m[8:24])
	copy(o.Instance[:], m[24:40])
	o.SubIndex = binary.LittleEndian.Uint16(m[180:])
	o.Relid = binary.LittleEndian.Uint32(m[184:])
	o.Monitored = m[189]&1 != 0
	o.Dedicated = m[190]&1 != 0
	o.Conn = binary.LittleEndian.Uint32(m[192:])
	return o
}

// RequestOffers asks for offers and collects them up to
// ALLOFFERS_DELIVERED.
func (g *Guest) RequestOffers() ([]Offer, error) {
	if st := g.Post(Msg(3, 8)); st != 0 {
		return nil, fmt.Errorf("REQUESTOFFERS: status %#x", st)
	}
	var offers []Offer
	for {
		m := g.Recv()
		switch Type(m) {
		case 1:
			if len(m) != 196 {
				return nil, fmt.Errorf("offer of %d bytes", len(m))
			}
			offers = append(offers, ParseOffer(m))
		case 4:
			return offers, nil
		default:
			return nil, fmt.Errorf("while collecting offers: %x", m)
		}
	}
}

// GPADLMessages builds the GPADL_HEADER and GPADL_BODY messages Linux
// sends for pfns under id (26 PFNs in the header, 28 per body).
func GPADLMessages(relid, id uint32, pfns []uint64) [][]byte {
	return RangeMessages(relid, id, 0, uint32(len(pfns)*PageSize), pfns)
}

// RangeMessages is GPADLMessages for count bytes from byte offset of the
// first page, as iPXE describes a buffer wherever it lies.
func RangeMessages(relid, id, offset, count uint32, pfns []uint64) [][]byte {
	first := min(len(pfns), 26)
	h := Msg(8, 28+8*first, relid, id)
	binary.LittleEndian.PutUint16(h[16:], uint16(8+8*len(pfns)))
	binary.LittleEndian.PutUint16(h[18:], 1)
	binary.LittleEndian.PutUint32(h[20:], count)
	binary.LittleEndian.PutUint32(h[24:], offset)
	for i := range first {
		binary.LittleEndian.PutUint64(h[28+8*i:], pfns[i])
	}
	msgs := [][]byte{h}
	for i, n := first, uint32(1); i < len(pfns); n++ {
		k := min(len(pfns)-i, 28)
		b := Msg(9, 16+8*k, n, id)
		for j := range k {
			binary.LittleEndian.PutUint64(b[16+8*j:], pfns[i+j])
		}
		msgs = append(msgs, b)
		i += k
	}
	return msgs
}

// CreateGPADL describes pfns to the host for channel relid and returns
// the GPADL id and GPADL_CREATED's status.
func (g *Guest) CreateGPADL(relid uint32, pfns []uint64) (uint32, uint32, error) {
	return g.CreateRange(relid, 0, uint32(len(pfns)*PageSize), pfns)
}

// CreateRange is CreateGPADL for count bytes from byte offset of pfns[0].
func (g *Guest) CreateRange(relid, offset, count uint32, pfns []uint64) (uint32, uint32, error) {
	id := g.nextID
	g.nextID++
	for _, m := range RangeMessages(relid, id, offset, count, pfns) {
		if st := g.Post(m); st != 0 {
			return id, 0, fmt.Errorf("GPADL message: status %#x", st)
		}
	}
	r := g.Recv()
	if Type(r) != 10 || len(r) < 20 || binary.LittleEndian.Uint32(r[8:]) != relid || binary.LittleEndian.Uint32(r[12:]) != id {
		return id, 0, fmt.Errorf("want GPADL_CREATED for %d/%#x, got %x", relid, id, r)
	}
	return id, binary.LittleEndian.Uint32(r[16:]), nil
}

// Channel is an open channel's guest side.
type Channel struct {
	g     *Guest
	Relid uint32
	Conn  uint32
	VP    int
	// Out is the ring the guest writes, In the one it reads.
	Out, In *Ring
	GPADL   uint32
}

// Open creates the ring GPADL (sendPages then recvPages, headers
// included) and opens channel o on VP vp. It returns the channel and the
// OPENCHANNEL_RESULT status.
func (g *Guest) Open(o Offer, sendPages, recvPages, vp int) (*Channel, uint32, error) {
	first := g.Alloc(sendPages + recvPages)
	pfns := make([]uint64, sendPages+recvPages)
	for i := range pfns {
		pfns[i] = first + uint64(i)
	}
	id, st, err := g.CreateGPADL(o.Relid, pfns)
	if err != nil || st != 0 {
		return nil, st, err
	}
	c := &Channel{g: g, Relid: o.Relid, Conn: o.Conn, VP: vp, GPADL: id,
		Out: &Ring{Mem: g.Mem, Hdr: first * PageSize, Size: uint32(sendPages-1) * PageSize},
		In:  &Ring{Mem: g.Mem, Hdr: (first + uint64(sendPages)) * PageSize, Size: uint32(recvPages-1) * PageSize}}
	// Linux turns on pending_send_sz in both headers.
	c.Out.Set(FeatureOff, 1)
	c.In.Set(FeatureOff, 1)
	st, err = g.OpenRaw(o.Relid, 7, id, uint32(vp), uint32(sendPages))
	return c, st, err
}

// OpenRaw posts OPENCHANNEL as given and returns the result's status.
func (g *Guest) OpenRaw(relid, openid, gpadl, vp, downstream uint32) (uint32, error) {
	if st := g.Post(Msg(5, 148, relid, openid, gpadl, vp, downstream)); st != 0 {
		return 0, fmt.Errorf("OPENCHANNEL: status %#x", st)
	}
	r := g.Recv()
	if Type(r) != 6 || len(r) < 20 || binary.LittleEndian.Uint32(r[8:]) != relid || binary.LittleEndian.Uint32(r[12:]) != openid {
		return 0, fmt.Errorf("want OPENCHANNEL_RESULT for %d, got %x", relid, r)
	}
	return binary.LittleEndian.Uint32(r[16:]), nil
}

// Close closes the channel and tears its GPADL down.
func (c *Channel) Close() error {
	if st := c.g.Post(Msg(7, 12, c.Relid)); st != 0 {
		return fmt.Errorf("CLOSECHANNEL: status %#x", st)
	}
	if st := c.g.Post(Msg(11, 16, c.Relid, c.GPADL)); st != 0 {
		return fmt.Errorf("GPADL_TEARDOWN: status %#x", st)
	}
	r := c.g.Recv()
	if Type(r) != 12 || binary.LittleEndian.Uint32(r[8:]) != c.GPADL {
		return fmt.Errorf("want GPADL_TORNDOWN, got %x", r)
	}
	return nil
}

// Send writes a packet to the host and signals it as Linux does (only
// when the ring was empty and the host has not masked interrupts).
func (c *Channel) Send(typ, flags uint16, id uint64, payload []byte) error {
	return c.SendHdr(typ, flags, id, nil, payload)
}

// SendHdr writes a packet with hdr between the descriptor and payload
// (GPA ranges of a GPA_DIRECT packet) and signals as Send does.
func (c *Channel) SendHdr(typ, flags uint16, id uint64, hdr, payload []byte) error {
	signal, err := c.Out.WriteHdr(typ, flags, id, hdr, payload)
	if err != nil {
		return err
	}
	if !signal {
		return nil
	}
	conn := c.Conn
	if c.g.SharedSignal {
		c.g.word(c.g.IntPage+PageSize/2, c.Relid).Or(1 << (c.Relid % 32))
		conn = 2
	}
	if st := c.g.Bus.Signal(conn); st != 0 {
		return fmt.Errorf("HvSignalEvent: status %#x", st)
	}
	return nil
}

// word is the u32 of the interrupt page half at base that holds relid's
// bit.
func (g *Guest) word(base uint64, relid uint32) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&g.Mem[base+uint64(relid/32)*4]))
}

// Interrupted reports and clears the channel's event flag. Before 2.4
// that is bit relid in the interrupt page's first half, announced by
// event flag 0 (Linux vmbus_isr and vmbus_chan_sched).
func (c *Channel) Interrupted() bool {
	if c.g.Version >= 2<<16|4 {
		return c.g.SynIC.TestAndClear(c.VP, c.g.SINT, c.Relid)
	}
	if !c.g.SynIC.TestAndClear(c.VP, c.g.SINT, 0) {
		return false
	}
	bit := uint32(1) << (c.Relid % 32)
	return c.g.word(c.g.IntPage, c.Relid).And(^bit)&bit != 0
}

// Ring header offsets.
const (
	WriteOff   = 0
	ReadOff    = 4
	MaskOff    = 8
	PendingOff = 12
	FeatureOff = 64
)

// ErrFull: no room in the ring.
var ErrFull = errors.New("ring full")

// Ring is one ring in contiguous guest pages: header page at Hdr, then
// Size bytes of data.
type Ring struct {
	Mem  Mem
	Hdr  uint64
	Size uint32
}

// Get and Set access header fields atomically, as the host does: the
// indices order the data accesses on both sides.
func (r *Ring) Get(off uint64) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.Mem[r.Hdr+off])))
}
func (r *Ring) Set(off uint64, v uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&r.Mem[r.Hdr+off])), v)
}
func (r *Ring) at(i uint32) *byte { return &r.Mem[r.Hdr+PageSize+uint64(i%r.Size)] }

// Write puts a packet in and reports whether the host must be signalled.
func (r *Ring) Write(typ, flags uint16, id uint64, payload []byte) (bool, error) {
	return r.WriteHdr(typ, flags, id, nil, payload)
}

// WriteHdr is Write with hdr (a multiple of 8 bytes) before the payload.
func (r *Ring) WriteHdr(typ, flags uint16, id uint64, hdr, payload []byte) (bool, error) {
	payload = append(append([]byte(nil), hdr...), payload...)
	total := uint32(16+len(payload)+7) &^ 7
	w, rd := r.Get(WriteOff), r.Get(ReadOff)
	if total+8 >= r.Size-(w+r.Size-rd)%r.Size {
		return false, ErrFull
	}
	p := make([]byte, total+8)
	binary.LittleEndian.PutUint16(p[0:], typ)
	binary.LittleEndian.PutUint16(p[2:], uint16(2+len(hdr)/8))
	binary.LittleEndian.PutUint16(p[4:], uint16(total/8))
	binary.LittleEndian.PutUint16(p[6:], flags)
	binary.LittleEndian.PutUint64(p[8:], id)
	copy(p[16:], payload)
	binary.LittleEndian.PutUint64(p[total:], uint64(w)<<32)
	for i, b := range p {
		*r.at(w + uint32(i)) = b
	}
	r.Set(WriteOff, (w+total+8)%r.Size)
	// As Linux (hv_signal_on_write): the read index is looked at after
	// the write is published, so a host that found the ring empty just
	// before is signalled.
	return r.Get(MaskOff) == 0 && r.Get(ReadOff) == w, nil
}

// Packet is a packet the guest read.
type Packet struct {
	Type, Flags uint16
	ID          uint64
	Header      []byte // between the descriptor and offset8*8
	Payload     []byte // from offset8*8, padding included
}

// Read takes the next packet (ok false: empty).
func (r *Ring) Read() (Packet, bool) {
	w, rd := r.Get(WriteOff), r.Get(ReadOff)
	if w == rd {
		return Packet{}, false
	}
	get := func(i uint32, n uint32) []byte {
		b := make([]byte, n)
		for j := range b {
			b[j] = *r.at(i + uint32(j))
		}
		return b
	}
	d := get(rd, 16)
	off := uint32(binary.LittleEndian.Uint16(d[2:])) * 8
	n := uint32(binary.LittleEndian.Uint16(d[4:])) * 8
	body := get(rd, n)
	r.Set(ReadOff, (rd+n+8)%r.Size)
	return Packet{Type: binary.LittleEndian.Uint16(d[0:]), Flags: binary.LittleEndian.Uint16(d[6:]),
		ID: binary.LittleEndian.Uint64(d[8:]), Header: body[16:off], Payload: body[off:]}, true
}
