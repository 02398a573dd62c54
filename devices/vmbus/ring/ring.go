// Package ring is the host side of a VMBus channel's ring buffer pair
// (Linux include/linux/hyperv.h struct hv_ring_buffer, drivers/hv/
// ring_buffer.c): two byte rings in guest pages that a GPADL describes, one
// the guest writes (the host's Reader), one the host writes (the Writer).
//
// Each ring is a header page {write_index u32, read_index u32,
// interrupt_mask u32, pending_send_sz u32, ..., feature_bits u32 at 64}
// followed by data pages. Indices are byte offsets into the data area.
// Packets are a 16-byte descriptor {type u16, offset8 u16, len8 u16,
// flags u16, trans_id u64}, a header and payload padded to 8 bytes, then a
// u64 trailer (the packet's start index << 32). A ring is never filled
// completely: equal indices mean empty.
//
// Everything in the ring is guest input. The index the host owns (read
// index of the Reader, write index of the Writer) lives in a private copy
// that the host only publishes; the guest's index is loaded once per
// operation and checked. A descriptor is parsed from a private copy of the
// packet, so a guest rewriting the ring concurrently changes nothing that
// was checked. Any inconsistency breaks the ring for good (ErrBroken): the
// channel owner then stops using it.
package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// PageSize is the VMBus page size (Hyper-V pages are 4 KiB on x86).
const PageSize = 4096

// Header fields, as offsets into the header page.
const (
	offWrite      = 0
	offRead       = 4
	offIntMask    = 8
	offPendingSnd = 12
	offFeatures   = 64

	// FeaturePendingSendSize: the writer uses pending_send_sz to ask the
	// reader for a signal once enough space is free.
	FeaturePendingSendSize = 1

	// DescriptorSize is the size of the packet descriptor.
	DescriptorSize = 16
	trailerSize    = 8
	// maxPacket is the largest packet len8 can describe.
	maxPacket = 0xffff * 8
	// MaxPages bounds one ring (header page included): the data area's
	// size must fit the u32 indices with room for wrapping arithmetic.
	MaxPages = 1 << 18
)

// Packet types (hyperv.h enum vmbus_packet_type).
const (
	TypeDataInband        = 6
	TypeDataXferPages     = 7
	TypeDataGPADirect     = 9
	TypeCancelRequest     = 10
	TypeCompletion        = 11
	FlagCompletionRequest = 1
)

var (
	// ErrBroken: the guest left the ring inconsistent; it stays unusable.
	ErrBroken = errors.New("vmbus ring broken")
	// ErrFull: the writer has no room for this packet now; it asked the
	// guest (pending_send_sz) to signal when there is.
	ErrFull = errors.New("vmbus ring full")
	// ErrTooLarge: the packet can never fit this ring.
	ErrTooLarge = errors.New("vmbus packet too large for ring")
)

// Memory is guest memory as the VMM maps it.
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// buffer is one ring: its header page and its data pages, resolved once.
type buffer struct {
	hdr  []byte
	data [][]byte
	size uint32
}

func newBuffer(mem Memory, pfns []uint64) (buffer, error) {
	if len(pfns) < 2 || len(pfns) > MaxPages {
		return buffer{}, fmt.Errorf("ring of %d pages, need 2 to %d", len(pfns), MaxPages)
	}
	pages := make([][]byte, len(pfns))
	for i, pfn := range pfns {
		if pfn > (1<<52)-1 {
			return buffer{}, fmt.Errorf("ring page %d: pfn %#x out of range", i, pfn)
		}
		p, err := mem.Slice(pfn*PageSize, PageSize)
		if err != nil {
			return buffer{}, fmt.Errorf("ring page %d: %w", i, err)
		}
		pages[i] = p
	}
	return buffer{hdr: pages[0], data: pages[1:], size: uint32(len(pages)-1) * PageSize}, nil
}

func (b *buffer) load(off int) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&b.hdr[off])))
}

func (b *buffer) store(off int, v uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b.hdr[off])), v)
}

// copyOut copies len(dst) bytes from data offset off, wrapping at the end.
func (b *buffer) copyOut(off uint32, dst []byte) {
	for len(dst) > 0 {
		page, in := off/PageSize, off%PageSize
		n := copy(dst, b.data[page][in:])
		dst = dst[n:]
		off = (off + uint32(n)) % b.size
	}
}

// copyIn copies src to data offset off, wrapping at the end.
func (b *buffer) copyIn(off uint32, src []byte) uint32 {
	for len(src) > 0 {
		page, in := off/PageSize, off%PageSize
		n := copy(b.data[page][in:], src)
		src = src[n:]
		off = (off + uint32(n)) % b.size
	}
	return off
}

// guestIndex loads the index the guest owns and checks it.
func (b *buffer) guestIndex(off int) (uint32, error) {
	v := b.load(off)
	if v >= b.size || v%8 != 0 {
		return 0, fmt.Errorf("%w: guest index %#x in a ring of %#x bytes", ErrBroken, v, b.size)
	}
	return v, nil
}

// Packet is one packet read from a ring.
type Packet struct {
	Type    uint16
	Flags   uint16
	TransID uint64
	// Header holds the bytes between the descriptor and the payload
	// (offset8*8 - 16 of them): GPA ranges or transfer page ranges.
	Header []byte
	// Payload runs from offset8*8 to len8*8 (padding included).
	Payload []byte
}

// Reader reads the ring the guest writes.
type Reader struct {
	b      buffer
	read   uint32 // private: never reloaded from guest memory
	start  uint32 // read index when the current batch began
	batch  bool
	broken error
}

// NewReader maps the ring in pages pfns (header first). The guest's read
// index is taken as the start, checked like any guest index.
func NewReader(mem Memory, pfns []uint64) (*Reader, error) {
	b, err := newBuffer(mem, pfns)
	if err != nil {
		return nil, err
	}
	r, err := b.guestIndex(offRead)
	if err != nil {
		return nil, err
	}
	return &Reader{b: b, read: r}, nil
}

// Size is the data area's size in bytes.
func (r *Reader) Size() uint32 { return r.b.size }

// Err is the error that broke the ring, or nil.
func (r *Reader) Err() error { return r.broken }

func (r *Reader) fail(err error) error {
	r.broken = err
	return err
}

// Next copies the next packet out of the ring and consumes it. buf is used
// for the packet's bytes when it is large enough. ok is false when the
// ring is empty.
func (r *Reader) Next(buf []byte) (p Packet, ok bool, err error) {
	if r.broken != nil {
		return Packet{}, false, r.broken
	}
	w, err := r.b.guestIndex(offWrite)
	if err != nil {
		return Packet{}, false, r.fail(err)
	}
	avail := (w + r.b.size - r.read) % r.b.size
	if avail == 0 {
		return Packet{}, false, nil
	}
	if avail < DescriptorSize+trailerSize {
		return Packet{}, false, r.fail(fmt.Errorf("%w: %d bytes available, less than a packet", ErrBroken, avail))
	}
	var d [DescriptorSize]byte
	r.b.copyOut(r.read, d[:])
	off := uint32(binary.LittleEndian.Uint16(d[2:])) * 8
	n := uint32(binary.LittleEndian.Uint16(d[4:])) * 8
	if n < DescriptorSize || off < DescriptorSize || off > n || n+trailerSize > avail {
		return Packet{}, false, r.fail(fmt.Errorf("%w: packet offset %d length %d with %d bytes available", ErrBroken, off, n, avail))
	}
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	// The descriptor is taken from this copy, not from the ring again.
	r.b.copyOut(r.read, buf)
	p = Packet{
		Type:    binary.LittleEndian.Uint16(buf[0:]),
		Flags:   binary.LittleEndian.Uint16(buf[6:]),
		TransID: binary.LittleEndian.Uint64(buf[8:]),
		Header:  buf[DescriptorSize:off],
		Payload: buf[off:n],
	}
	if !r.batch {
		r.start, r.batch = r.read, true
	}
	r.read = (r.read + n + trailerSize) % r.b.size
	r.b.store(offRead, r.read)
	return p, true, nil
}

// Pending reports whether the guest has written past what Next consumed,
// without consuming anything. A broken ring or a bad guest index reports
// true: Next then says what is wrong.
func (r *Reader) Pending() bool {
	if r.broken != nil {
		return true
	}
	w, err := r.b.guestIndex(offWrite)
	return err != nil || w != r.read
}

// Done ends a batch of Next calls. It reports whether the guest, waiting
// for room (pending_send_sz), must be signalled because this batch freed
// enough of it (ring_buffer.c hv_pkt_iter_close).
func (r *Reader) Done() bool {
	if !r.batch || r.broken != nil {
		return false
	}
	r.batch = false
	if r.b.load(offFeatures)&FeaturePendingSendSize == 0 {
		return false
	}
	pending := r.b.load(offPendingSnd)
	if pending == 0 {
		return false
	}
	w, err := r.b.guestIndex(offWrite)
	if err != nil {
		r.broken = err
		return false
	}
	free := r.b.size - (w+r.b.size-r.read)%r.b.size
	freed := (r.read + r.b.size - r.start) % r.b.size
	// Signal only when free space crossed pending_send_sz now.
	return free > pending && free-freed <= pending
}

// SetInterruptMask sets the host's interrupt mask in this ring: while it is
// set the guest does not signal new packets.
func (r *Reader) SetInterruptMask(masked bool) {
	var v uint32
	if masked {
		v = 1
	}
	r.b.store(offIntMask, v)
}

// Writer writes the ring the guest reads.
type Writer struct {
	b       buffer
	write   uint32 // private: never reloaded from guest memory
	pending bool   // pending_send_sz is set
	broken  error
}

// NewWriter maps the ring in pages pfns (header first) and advertises the
// pending-send-size feature the Writer uses.
func NewWriter(mem Memory, pfns []uint64) (*Writer, error) {
	b, err := newBuffer(mem, pfns)
	if err != nil {
		return nil, err
	}
	w, err := b.guestIndex(offWrite)
	if err != nil {
		return nil, err
	}
	b.store(offPendingSnd, 0)
	b.store(offFeatures, b.load(offFeatures)|FeaturePendingSendSize)
	return &Writer{b: b, write: w}, nil
}

// Size is the data area's size in bytes.
func (w *Writer) Size() uint32 { return w.b.size }

// Err is the error that broke the ring, or nil.
func (w *Writer) Err() error { return w.broken }

// PacketSize is the ring space a packet with this header and payload
// takes, trailer included.
func PacketSize(hdr, payload int) int {
	return (DescriptorSize+hdr+payload+7)&^7 + trailerSize
}

// Write puts one packet into the ring: type, flags, transaction id, a
// header (a multiple of 8 bytes) and the payload parts, padded to 8 bytes.
// signal reports whether the guest must be interrupted: it had unmasked
// interrupts and the ring was empty before this packet.
func (w *Writer) Write(typ, flags uint16, transID uint64, hdr []byte, payload ...[]byte) (signal bool, err error) {
	if w.broken != nil {
		return false, w.broken
	}
	if len(hdr)%8 != 0 {
		return false, fmt.Errorf("packet header of %d bytes, not a multiple of 8", len(hdr))
	}
	plen := 0
	for _, p := range payload {
		plen += len(p)
	}
	total := PacketSize(len(hdr), plen)
	if total-trailerSize > maxPacket || uint64(total) >= uint64(w.b.size) {
		return false, fmt.Errorf("%w: %d bytes in a ring of %d", ErrTooLarge, total, w.b.size)
	}
	r, err := w.b.guestIndex(offRead)
	if err != nil {
		w.broken = err
		return false, err
	}
	if !w.fits(r, total) {
		// Ask for a signal once there is room, then look again: the
		// guest may have made room before it could see the request.
		w.b.store(offPendingSnd, uint32(total))
		w.pending = true
		if r, err = w.b.guestIndex(offRead); err != nil {
			w.broken = err
			return false, err
		}
		if !w.fits(r, total) {
			return false, ErrFull
		}
	}
	if w.pending {
		w.b.store(offPendingSnd, 0)
		w.pending = false
	}
	old := w.write
	var d [DescriptorSize]byte
	binary.LittleEndian.PutUint16(d[0:], typ)
	binary.LittleEndian.PutUint16(d[2:], uint16((DescriptorSize+len(hdr))/8))
	binary.LittleEndian.PutUint16(d[4:], uint16((total-trailerSize)/8))
	binary.LittleEndian.PutUint16(d[6:], flags)
	binary.LittleEndian.PutUint64(d[8:], transID)
	off := w.b.copyIn(old, d[:])
	off = w.b.copyIn(off, hdr)
	for _, p := range payload {
		off = w.b.copyIn(off, p)
	}
	var pad [8]byte
	off = w.b.copyIn(off, pad[:(total-trailerSize)-(DescriptorSize+len(hdr)+plen)])
	var t [trailerSize]byte
	binary.LittleEndian.PutUint64(t[:], uint64(old)<<32)
	w.write = w.b.copyIn(off, t[:])
	w.b.store(offWrite, w.write)
	// Linux's reader masks interrupts while it polls and re-checks after
	// unmasking, so a signal is due only for a ring that was empty.
	if w.b.load(offIntMask) != 0 {
		return false, nil
	}
	return w.b.load(offRead) == old, nil
}

// fits reports whether total bytes fit with the guest's read index at r,
// leaving the ring short of full.
func (w *Writer) fits(r uint32, total int) bool {
	used := (w.write + w.b.size - r) % w.b.size
	return uint32(total) < w.b.size-used
}
