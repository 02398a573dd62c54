// Package vqdriver plays the driver side of a split virtqueue in fake guest
// memory, for device tests: it offers chains and reads back used elements,
// with the atomic index accesses a real driver's barriers stand for, so the
// race detector can check the device side.
package vqdriver

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"github.com/vmmdev/vmm/devices/internal/fakeram"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// Mem is guest RAM at [0, len(Mem)).
type Mem = fakeram.RAM

// Descriptor flags (virtq_desc.flags).
const (
	descNext  = 1
	descWrite = 2
)

const (
	descAt  = 0x1000
	availAt = 0x40000
	usedAt  = 0x50000
	dataAt  = 0x100000
)

// Driver owns one queue's rings in Mem. It is used from one test goroutine.
type Driver struct {
	Mem      Mem
	size     uint16
	nextDesc uint16
	avail    uint16
	used     uint16
	data     uint64
}

// Buf is one descriptor to offer: Data is copied into guest memory; a
// writable buffer of Len bytes is zero-filled. A non-zero GPA is used as the
// descriptor's address as it is (a hostile driver's pointer); then nothing is
// copied and the view is nil.
type Buf struct {
	Data     []byte
	Len      int
	Writable bool
	GPA      uint64
}

// New makes a driver with a queue of size descriptors and dataSize bytes
// of buffer space.
func New(size uint16, dataSize int) *Driver {
	words := make([]uint64, (dataAt+dataSize+7)/8)
	mem := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	return &Driver{Mem: mem, size: size, data: dataAt}
}

// Config is the queue configuration a driver would program.
func (d *Driver) Config(eventIdx bool) queue.Config {
	return queue.Config{Size: d.size, Desc: descAt, Avail: availAt, Used: usedAt, EventIdx: eventIdx}
}

// Queue returns the device side of the queue.
func (d *Driver) Queue(eventIdx bool) (*queue.Queue, error) {
	return queue.New(d.Mem, d.Config(eventIdx))
}

func (d *Driver) word(at int) *uint32 { return (*uint32)(unsafe.Pointer(&d.Mem[at])) }

// Offer places bufs as one chain and publishes it; it returns the head
// and the guest-memory views of the buffers.
func (d *Driver) Offer(bufs ...Buf) (uint16, [][]byte) {
	head := d.nextDesc
	views := make([][]byte, len(bufs))
	for i, b := range bufs {
		n := max(b.Len, len(b.Data))
		gpa := b.GPA
		if gpa == 0 {
			gpa = d.alloc(n)
			views[i] = d.Mem[gpa : gpa+uint64(n)]
			clear(views[i])
			copy(views[i], b.Data)
		}
		idx := d.nextDesc
		d.nextDesc = (d.nextDesc + 1) % d.size
		var flags uint16
		if b.Writable {
			flags |= descWrite
		}
		if i+1 < len(bufs) {
			flags |= descNext
		}
		e := d.Mem[descAt+16*int(idx):]
		binary.LittleEndian.PutUint64(e, gpa)
		binary.LittleEndian.PutUint32(e[8:], uint32(n))
		binary.LittleEndian.PutUint16(e[12:], flags)
		binary.LittleEndian.PutUint16(e[14:], d.nextDesc)
	}
	binary.LittleEndian.PutUint16(d.Mem[availAt+4+2*int(d.avail%d.size):], head)
	d.avail++
	// flags (low half) stay 0: interrupts wanted.
	atomic.StoreUint32(d.word(availAt), uint32(d.avail)<<16)
	return head, views
}

// alloc takes n bytes of buffer space, wrapping around: tests keep few
// buffers outstanding.
func (d *Driver) alloc(n int) uint64 {
	if d.data+uint64(n) > uint64(len(d.Mem)) {
		d.data = dataAt
	}
	gpa := d.data
	d.data += uint64(n+15) &^ 15
	return gpa
}

// Used returns the next used element, if the device has published one. Like
// Linux's driver it first publishes used_event (the next element it wants an
// interrupt for), then looks, so an element that lands meanwhile interrupts.
func (d *Driver) Used() (id, n uint32, ok bool) {
	atomic.StoreUint32(d.word(availAt+4+2*int(d.size)), uint32(d.used))
	idx := uint16(atomic.LoadUint32(d.word(usedAt)) >> 16)
	if idx == d.used {
		return 0, 0, false
	}
	e := d.Mem[usedAt+4+8*int(d.used%d.size):]
	d.used++
	return binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:]), true
}

// IRQ records a device's signals (virtio.Interrupts) on channels, for
// tests to wait on.
type IRQ struct {
	Queues  chan int
	Resets  chan error
	Configs atomic.Int32
}

// NewIRQ returns an IRQ with room for the signals a test leaves unread.
func NewIRQ() *IRQ { return &IRQ{Queues: make(chan int, 256), Resets: make(chan error, 4)} }

// Queue implements virtio.Interrupts.
func (f *IRQ) Queue(i int) { f.Queues <- i }

// Config implements virtio.Interrupts.
func (f *IRQ) Config() { f.Configs.Add(1) }

// NeedsReset implements virtio.Interrupts.
func (f *IRQ) NeedsReset(err error) { f.Resets <- err }
