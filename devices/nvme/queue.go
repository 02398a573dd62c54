package nvme

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/vmmdev/vmm/devices/pci"
)

// Entry sizes: CC.IOSQES = 6 and CC.IOCQES = 4 are the only ones offered.
const (
	sqeSize = 64
	cqeSize = 16
)

// completion is what a command returns: DW0 of its completion entry and
// its status (status*), or hold for a command answered later (AER).
type completion struct {
	dw0    uint32
	status uint16
	hold   bool
}

// shadowSlot is one doorbell's place in the shadow and event index buffers.
type shadowSlot struct {
	db, ei *uint32
}

func (s *shadowSlot) load() uint32      { return atomic.LoadUint32(s.db) }
func (s *shadowSlot) setEvent(v uint32) { atomic.StoreUint32(s.ei, v) }

// slotAt returns the shadow slot of doorbell index i (2*qid for a
// submission queue, 2*qid+1 for a completion queue).
func (d *dbbuf) slotAt(i int) *shadowSlot {
	return &shadowSlot{
		db: (*uint32)(unsafe.Pointer(&d.shadow[4*i])),
		ei: (*uint32)(unsafe.Pointer(&d.ei[4*i])),
	}
}

// maxInflight caps the commands one I/O submission queue executes at
// once: a driver keeps many in flight (Linux: up to the queue depth), and
// running them one at a time would cap IOPS at 1/latency.
const maxInflight = 64

// subQueue is a submission queue and the goroutine that fetches its
// entries. The admin queue executes them there, one at a time; an I/O
// queue hands each to a goroutine of its own, at most slots at once, and
// completes them in whatever order they finish.
type subQueue struct {
	id   uint16
	size uint32
	gpa  uint64
	ring []byte
	cq   *compQueue

	head   uint32        // owned by the fetching goroutine
	sqhd   atomic.Uint32 // head as completions report it
	tail   atomic.Uint32
	slots  chan struct{} // one token per command in flight; nil: serial
	wg     sync.WaitGroup
	shadow atomic.Pointer[shadowSlot]

	kickCh   chan struct{}
	stopCh   chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	started  bool
}

func (c *Controller) newSQ(id uint16, gpa uint64, size int, cq *compQueue) (*subQueue, error) {
	ring, err := c.mem.Slice(gpa, uint64(size)*sqeSize)
	if err != nil {
		return nil, err
	}
	return &subQueue{id: id, size: uint32(size), gpa: gpa, ring: ring, cq: cq,
		kickCh: make(chan struct{}, 1), stopCh: make(chan struct{}), done: make(chan struct{})}, nil
}

// start runs the queue on its own goroutine; exec executes one command.
// concurrent lets up to maxInflight commands (fewer for a small queue)
// execute at once, each on a goroutine of its own.
func (q *subQueue) start(exec func(*subQueue, *command) completion, concurrent bool) {
	if concurrent {
		q.slots = make(chan struct{}, min(q.size-1, maxInflight))
	}
	q.started = true
	q.cq.users.Add(1)
	go q.run(exec)
}

func (q *subQueue) kick() {
	select {
	case q.kickCh <- struct{}{}:
	default:
	}
}

// detach tells the goroutine to stop at the next command boundary.
func (q *subQueue) detach() { q.stopOnce.Do(func() { close(q.stopCh) }) }

func (q *subQueue) detached() bool {
	select {
	case <-q.stopCh:
		return true
	default:
		return false
	}
}

// stop detaches the queue and waits for its goroutines: after it no
// command of the queue touches guest memory.
func (q *subQueue) stop() {
	q.detach()
	if q.started {
		<-q.done
	}
}

// readTail is the tail the driver published: the shadow doorbell when
// shadowed, else the last doorbell write. A shadow value beyond the queue
// is a driver bug; the queue waits for a valid one.
func (q *subQueue) readTail() (uint32, bool) {
	if s := q.shadow.Load(); s != nil {
		t := s.load()
		return t, t < q.size
	}
	return q.tail.Load(), true
}

func (q *subQueue) run(exec func(*subQueue, *command) completion) {
	defer close(q.done)
	defer q.cq.users.Add(-1)
	// Commands still executing finish (or give up posting) first.
	defer q.wg.Wait()
	var cmd command
	for {
		for {
			if q.detached() {
				return
			}
			tail, ok := q.readTail()
			if !ok || tail == q.head {
				break
			}
			if q.slots != nil {
				// Wait for a free slot before taking the entry, so the
				// head a completion reports never runs ahead of it.
				select {
				case q.slots <- struct{}{}:
				case <-q.stopCh:
					return
				}
			}
			cmd.parse(q.ring[q.head*sqeSize : (q.head+1)*sqeSize])
			q.head = (q.head + 1) % q.size
			q.sqhd.Store(q.head)
			if q.slots != nil {
				q.dispatch(exec, cmd)
				continue
			}
			cpl := exec(q, &cmd)
			if cpl.hold {
				continue
			}
			if !q.cq.post(cpl, cmd.cid, q.id, uint16(q.head), q.stopCh) {
				return
			}
		}
		q.cq.flush()
		if s := q.shadow.Load(); s != nil {
			// Ask for a doorbell once the driver moves past what was
			// consumed, then look again: a submission published before the
			// event index was would otherwise wait for the next one.
			s.setEvent(q.head)
			if t, ok := q.readTail(); ok && t != q.head {
				continue
			}
		}
		select {
		case <-q.kickCh:
		case <-q.stopCh:
			return
		}
	}
}

// dispatch executes cmd on a goroutine that holds one of the queue's
// slots, posts its completion with the newest head, and interrupts.
func (q *subQueue) dispatch(exec func(*subQueue, *command) completion, cmd command) {
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		cpl := exec(q, &cmd)
		posted := q.cq.post(cpl, cmd.cid, q.id, uint16(q.sqhd.Load()), q.stopCh)
		<-q.slots
		if posted {
			// Completions that finish together share the interrupt: the
			// first flush raises it for every entry posted so far.
			q.cq.flush()
		}
	}()
}

// compQueue is a completion queue; several submission queues may post to it.
type compQueue struct {
	id     uint16
	size   uint32
	gpa    uint64
	ring   []byte
	ien    bool
	vector int
	msix   *pci.MSIX

	head   atomic.Uint32
	shadow atomic.Pointer[shadowSlot]
	users  atomic.Int32 // submission queues posting here

	mu       sync.Mutex
	tail     uint32
	phase    uint32
	lastHead uint32
	waitCh   chan struct{}
	pending  bool
}

func (c *Controller) newCQ(id uint16, gpa uint64, size int, vector int, ien bool) (*compQueue, error) {
	ring, err := c.mem.Slice(gpa, uint64(size)*cqeSize)
	if err != nil {
		return nil, err
	}
	// The ring starts out as the driver's zeros: phase 1 marks new entries.
	return &compQueue{id: id, size: uint32(size), gpa: gpa, ring: ring, ien: ien, vector: vector,
		msix: c.msix, phase: 1}, nil
}

// readHeadLocked is the head the driver published; an out-of-range shadow
// value leaves the last valid one.
func (q *compQueue) readHeadLocked() uint32 {
	h := q.head.Load()
	if s := q.shadow.Load(); s != nil {
		h = s.load()
	}
	if h < q.size {
		q.lastHead = h
	}
	return q.lastHead
}

// wake releases posters waiting for room (a head doorbell, or a reset).
func (q *compQueue) wake() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.waitCh != nil {
		close(q.waitCh)
		q.waitCh = nil
	}
}

// post writes one completion entry, waiting while the queue is full until
// the driver frees an entry or stop is closed (false: nothing posted; a
// queue being deleted or reset posts nothing more). The status dword, with
// the phase tag, is written last.
func (q *compQueue) post(cpl completion, cid, sqid, sqhd uint16, stop <-chan struct{}) bool {
	for {
		select {
		case <-stop:
			return false
		default:
		}
		q.mu.Lock()
		head := q.readHeadLocked()
		if (q.tail+1)%q.size != head {
			e := q.ring[q.tail*cqeSize : (q.tail+1)*cqeSize]
			le := binary.LittleEndian
			le.PutUint32(e[0:], cpl.dw0)
			le.PutUint32(e[4:], 0)
			le.PutUint32(e[8:], uint32(sqhd)|uint32(sqid)<<16)
			dw3 := uint32(cid) | q.phase<<16 | uint32(cpl.status)<<17
			atomic.StoreUint32((*uint32)(unsafe.Pointer(&e[12])), dw3)
			q.tail++
			if q.tail == q.size {
				q.tail, q.phase = 0, q.phase^1
			}
			q.pending = true
			q.mu.Unlock()
			return true
		}
		if s := q.shadow.Load(); s != nil {
			s.setEvent(head)
			if q.readHeadLocked() != head {
				q.mu.Unlock()
				continue
			}
		}
		if q.waitCh == nil {
			q.waitCh = make(chan struct{})
		}
		ch := q.waitCh
		q.mu.Unlock()
		// The driver may be waiting for an interrupt to consume entries.
		q.flush()
		select {
		case <-ch:
		case <-stop:
			return false
		}
	}
}

// flush raises the queue's interrupt if entries were posted since the last.
func (q *compQueue) flush() {
	q.mu.Lock()
	p := q.pending
	q.pending = false
	q.mu.Unlock()
	if p && q.ien {
		q.msix.Signal(q.vector)
	}
}

// command is a submission queue entry, copied out of the ring before use.
type command struct {
	opc        uint8
	fuse, psdt uint8
	cid        uint16
	nsid       uint32
	prp1, prp2 uint64
	cdw10      uint32
	cdw11      uint32
	cdw12      uint32
	cdw13      uint32
	cdw14      uint32
	cdw15      uint32
}

func (c *command) parse(e []byte) {
	le := binary.LittleEndian
	dw0 := le.Uint32(e[0:])
	*c = command{
		opc: uint8(dw0), fuse: uint8(dw0>>8) & 3, psdt: uint8(dw0>>14) & 3, cid: uint16(dw0 >> 16),
		nsid: le.Uint32(e[4:]), prp1: le.Uint64(e[24:]), prp2: le.Uint64(e[32:]),
		cdw10: le.Uint32(e[40:]), cdw11: le.Uint32(e[44:]), cdw12: le.Uint32(e[48:]),
		cdw13: le.Uint32(e[52:]), cdw14: le.Uint32(e[56:]), cdw15: le.Uint32(e[60:]),
	}
}
