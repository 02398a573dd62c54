// Package queue is the device side of a virtio split virtqueue (virtio 1.2
// §2.7): it walks descriptor chains the driver made available, returns them
// through the used ring, and decides when the driver wants an interrupt or
// the device wants a notification (VIRTIO_F_EVENT_IDX).
//
// Everything in the rings is written by a guest that may be hostile: every
// index is range-checked, every buffer is bounds-checked against guest RAM,
// chains are bounded in length, and descriptors are copied before use so the
// guest cannot change them between check and use. The index fields the
// driver and the device hand over to each other are read and written with
// atomic operations, which order the ring entries around them.
package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// MaxSize is the largest split queue size (virtio 1.2 §2.7).
const MaxSize = 32768

// Descriptor flags (virtq_desc.flags).
const (
	descNext     = 1
	descWrite    = 2
	descIndirect = 4
)

// Ring flags.
const (
	availNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
)

const descSize = 16

// Sentinel errors; every error Next returns wraps one of them.
var (
	ErrBadConfig   = errors.New("virtqueue: invalid configuration")
	ErrAvailIdx    = errors.New("virtqueue: available index moved by more than the queue size")
	ErrHead        = errors.New("virtqueue: descriptor index out of range")
	ErrLoop        = errors.New("virtqueue: descriptor chain loops or is longer than the queue")
	ErrOutOfRange  = errors.New("virtqueue: buffer outside guest memory")
	ErrZeroLength  = errors.New("virtqueue: zero-length buffer")
	ErrDirection   = errors.New("virtqueue: device-readable buffer after a device-writable one")
	ErrIndirect    = errors.New("virtqueue: invalid indirect descriptor")
	ErrUsedElement = errors.New("virtqueue: used element for a descriptor index out of range")
)

// Memory is guest-physical memory: Slice returns the host view of [gpa, gpa+n)
// or an error when that range is not inside one RAM region. RAM regions must
// start and end on 4-byte boundaries (vmm's are page-aligned).
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// Config is what the driver programmed for one queue.
type Config struct {
	Size               uint16 // number of descriptors, a power of two
	Desc, Avail, Used  uint64 // guest-physical addresses of the three areas
	EventIdx, Indirect bool   // negotiated VIRTIO_F_EVENT_IDX / VIRTIO_F_INDIRECT_DESC
}

// Queue is the device side of one split virtqueue. It is not safe for
// concurrent use: one goroutine of the device owns it.
type Queue struct {
	mem  Memory
	cfg  Config
	size uint16

	desc  []byte
	avail ring // flags, idx, ring[size], used_event
	used  ring // flags, idx, ring[size]{id, len}, avail_event

	lastAvail uint16 // next available entry to consume
	usedIdx   uint16 // next used entry to fill
	signalled uint16 // usedIdx when the driver was last considered for an interrupt
}

// ring is a ring area widened to 4-byte boundaries, so that every 16-bit
// index field lies inside an aligned 32-bit word the package can access
// atomically.
type ring struct {
	win []byte // starts at a 4-byte aligned address
	off int    // offset of the ring's first byte in win
}

func mapRing(mem Memory, gpa, n uint64, align uint64, what string) (ring, error) {
	if gpa%align != 0 {
		return ring{}, fmt.Errorf("%w: %s area at %#x is not %d-byte aligned", ErrBadConfig, what, gpa, align)
	}
	start := gpa &^ 3
	end := gpa + n
	if end < gpa || end+3 < end {
		return ring{}, fmt.Errorf("%w: %s area at %#x wraps", ErrBadConfig, what, gpa)
	}
	end = (end + 3) &^ 3
	win, err := mem.Slice(start, end-start)
	if err != nil {
		return ring{}, fmt.Errorf("%w: %s area [%#x, +%#x): %w", ErrBadConfig, what, gpa, n, err)
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(win)))%4 != 0 {
		return ring{}, fmt.Errorf("%w: %s area: host mapping not 4-byte aligned", ErrBadConfig, what)
	}
	return ring{win: win, off: int(gpa - start)}, nil
}

func (r ring) word(at int) (*uint32, uint) {
	p := r.off + at
	return (*uint32)(unsafe.Pointer(&r.win[p&^3])), uint(p&3) * 8
}

// load16 atomically reads the little-endian 16-bit field at offset at.
func (r ring) load16(at int) uint16 {
	w, shift := r.word(at)
	return uint16(atomic.LoadUint32(w) >> shift)
}

// store16 atomically replaces the 16-bit field at offset at, leaving the
// other half of its word (which may belong to the guest) as it is.
func (r ring) store16(at int, v uint16) {
	w, shift := r.word(at)
	mask := uint32(0xffff) << shift
	for {
		old := atomic.LoadUint32(w)
		if atomic.CompareAndSwapUint32(w, old, old&^mask|uint32(v)<<shift) {
			return
		}
	}
}

func (r ring) bytes(at, n int) []byte { return r.win[r.off+at : r.off+at+n] }

// New checks cfg against guest memory and returns the queue. The driver's
// choices are untrusted: the size must be a power of two no larger than
// MaxSize, and each area must be aligned as the specification requires and
// lie inside guest RAM.
func New(mem Memory, cfg Config) (*Queue, error) {
	n := uint64(cfg.Size)
	if n == 0 || n > MaxSize || n&(n-1) != 0 {
		return nil, fmt.Errorf("%w: size %d is not a power of two in [1, %d]", ErrBadConfig, cfg.Size, MaxSize)
	}
	q := &Queue{mem: mem, cfg: cfg, size: cfg.Size}
	var err error
	if q.desc, err = mapRing2(mem, cfg.Desc, descSize*n, 16, "descriptor"); err != nil {
		return nil, err
	}
	if q.avail, err = mapRing(mem, cfg.Avail, 6+2*n, 2, "available"); err != nil {
		return nil, err
	}
	if q.used, err = mapRing(mem, cfg.Used, 6+8*n, 4, "used"); err != nil {
		return nil, err
	}
	// The device's indices start at zero after a reset (virtio 1.2 §2.7);
	// whatever the guest left in the rings is not trusted.
	return q, nil
}

// mapRing2 maps the descriptor table, which needs no atomic access.
func mapRing2(mem Memory, gpa, n, align uint64, what string) ([]byte, error) {
	r, err := mapRing(mem, gpa, n, align, what)
	if err != nil {
		return nil, err
	}
	return r.bytes(0, int(n)), nil
}

// Size is the number of descriptors.
func (q *Queue) Size() uint16 { return q.size }

// Config is what the queue was created with.
func (q *Queue) Config() Config { return q.cfg }

// Memory is the guest memory the queue's buffers live in.
func (q *Queue) Memory() Memory { return q.mem }

// Chain is one descriptor chain: the buffers the device reads (the driver's
// request) followed by those it writes (the reply), as host views of guest
// memory. The guest can change their contents at any time; devices must
// copy what they parse before validating it.
type Chain struct {
	Head     uint16
	Readable [][]byte
	Writable [][]byte
}

// ReadableLen and WritableLen are the total bytes in each direction.
func (c *Chain) ReadableLen() int { return total(c.Readable) }

// WritableLen is the total size of the device-writable buffers.
func (c *Chain) WritableLen() int { return total(c.Writable) }

func total(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

// Gather copies from bufs into dst in order and returns the bytes copied.
func Gather(dst []byte, bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		if n == len(dst) {
			break
		}
		n += copy(dst[n:], b)
	}
	return n
}

// Scatter copies src into bufs in order and returns the bytes copied.
func Scatter(bufs [][]byte, src []byte) int {
	n := 0
	for _, b := range bufs {
		if n == len(src) {
			break
		}
		n += copy(b, src[n:])
	}
	return n
}

// Pending reports whether the driver has made chains available that Next has
// not returned yet.
func (q *Queue) Pending() bool { return q.avail.load16(2) != q.lastAvail }

// Next returns the next available chain; ok is false when there is none. An
// error means the driver broke the protocol; the chain is consumed and the
// device should mark itself as needing reset.
func (q *Queue) Next() (c Chain, ok bool, err error) {
	idx := q.avail.load16(2)
	if idx == q.lastAvail {
		return Chain{}, false, nil
	}
	if idx-q.lastAvail > q.size {
		return Chain{}, false, fmt.Errorf("%w: avail idx %d, device at %d, size %d", ErrAvailIdx, idx, q.lastAvail, q.size)
	}
	slot := int(q.lastAvail & (q.size - 1))
	head := binary.LittleEndian.Uint16(q.avail.bytes(4+2*slot, 2))
	q.lastAvail++
	c, err = q.walk(head)
	if err != nil {
		return Chain{}, false, err
	}
	return c, true, nil
}

type desc struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

func readDesc(table []byte, i uint16) desc {
	b := table[int(i)*descSize : int(i)*descSize+descSize]
	return desc{
		addr:  binary.LittleEndian.Uint64(b[0:]),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}
}

// walk follows the chain at head. It visits at most size descriptors in the
// ring's table and, for one indirect descriptor, at most as many as the
// indirect table holds, so a looping chain ends in ErrLoop.
func (q *Queue) walk(head uint16) (Chain, error) {
	c := Chain{Head: head}
	if head >= q.size {
		return c, fmt.Errorf("%w: head %d, size %d", ErrHead, head, q.size)
	}
	table, n := q.desc, q.size
	indirect := false
	i := head
	for steps := 0; ; steps++ {
		if steps >= int(n) {
			return c, fmt.Errorf("%w: chain at %d", ErrLoop, head)
		}
		d := readDesc(table, i)
		if d.flags&descIndirect != 0 {
			if indirect || !q.cfg.Indirect || d.flags&descNext != 0 {
				return c, fmt.Errorf("%w: flags %#x in chain at %d", ErrIndirect, d.flags, head)
			}
			if d.len == 0 || d.len%descSize != 0 || d.len/descSize > MaxSize {
				return c, fmt.Errorf("%w: table of %d bytes", ErrIndirect, d.len)
			}
			t, err := q.mem.Slice(d.addr, uint64(d.len))
			if err != nil {
				return c, fmt.Errorf("%w: indirect table [%#x, +%#x)", ErrOutOfRange, d.addr, d.len)
			}
			// Copy the table: the guest could rewrite it while it is walked.
			table = append([]byte(nil), t...)
			n = uint16(min(d.len/descSize, MaxSize))
			indirect, i, steps = true, 0, -1
			continue
		}
		if d.len == 0 {
			return c, fmt.Errorf("%w: descriptor %d in chain at %d", ErrZeroLength, i, head)
		}
		buf, err := q.mem.Slice(d.addr, uint64(d.len))
		if err != nil {
			return c, fmt.Errorf("%w: [%#x, +%#x) in chain at %d", ErrOutOfRange, d.addr, d.len, head)
		}
		if d.flags&descWrite != 0 {
			c.Writable = append(c.Writable, buf)
		} else {
			if len(c.Writable) > 0 {
				return c, fmt.Errorf("%w: chain at %d", ErrDirection, head)
			}
			c.Readable = append(c.Readable, buf)
		}
		if d.flags&descNext == 0 {
			return c, nil
		}
		if d.next >= n {
			return c, fmt.Errorf("%w: next %d, table of %d", ErrHead, d.next, n)
		}
		i = d.next
	}
}

// Push returns the chain at head to the driver with written bytes of reply,
// and publishes it by advancing the used index.
func (q *Queue) Push(head uint16, written uint32) error {
	if head >= q.size {
		return fmt.Errorf("%w: %d", ErrUsedElement, head)
	}
	slot := int(q.usedIdx & (q.size - 1))
	e := q.used.bytes(4+8*slot, 8)
	binary.LittleEndian.PutUint32(e[0:], uint32(head))
	binary.LittleEndian.PutUint32(e[4:], written)
	q.usedIdx++
	// The atomic store orders the element before the index the driver reads.
	q.used.store16(2, q.usedIdx)
	return nil
}

// NeedInterrupt reports whether the driver asked to be interrupted for the
// chains pushed since the last call: with EVENT_IDX when the used index
// passed the driver's used_event, otherwise unless it set NO_INTERRUPT.
func (q *Queue) NeedInterrupt() bool {
	old, now := q.signalled, q.usedIdx
	q.signalled = now
	if old == now {
		return false
	}
	if q.cfg.EventIdx {
		// The used index store above and this load are both atomic, and
		// Go's atomics are sequentially consistent, so the driver either sees
		// the new index or we see its new used_event.
		event := q.avail.load16(4 + 2*int(q.size))
		return now-event-1 < now-old
	}
	return q.avail.load16(0)&availNoInterrupt == 0
}

// EnableNotify asks the driver to notify the device about the next chain it
// makes available (with EVENT_IDX, by publishing avail_event). It returns
// true if chains arrived meanwhile, in which case the caller must process
// them rather than wait: the driver may have checked before the request.
func (q *Queue) EnableNotify() bool {
	if q.cfg.EventIdx {
		q.used.store16(4+8*int(q.size), q.lastAvail)
	}
	return q.Pending()
}
