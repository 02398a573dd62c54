package virtio

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// ErrActive is Start's error for a device that is already running.
var ErrActive = errors.New("already active")

// Worker is the lifecycle every device model shares: Start begins an
// activation's goroutines, Notify kicks them without blocking (from vCPU
// threads and ioeventfd goroutines), Reset stops them and waits, and a
// driver error parks them until Reset with DEVICE_NEEDS_RESET set. Embed it
// (or hold one) and forward Notify and Reset to it.
type Worker struct {
	mu      sync.Mutex // serialises Start, Notify and Reset
	running *Run
}

// Run is one activation, as the device's goroutines see it.
type Run struct {
	name    string
	irq     Interrupt
	kicks   []chan struct{}
	stop    chan struct{}
	unblock func()
	wg      sync.WaitGroup
}

// Start begins an activation named name (for errors: "virtio-blk") with
// one kick channel per queue of a. setup starts the device's goroutines
// with Run.Go; if it fails, whatever it started is stopped. unblock, if
// set, is called by Reset after it signals stop, to free a goroutine
// blocked outside the guest's reach (a tap read).
func (w *Worker) Start(name string, a Activation, unblock func(), setup func(r *Run) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running != nil {
		return fmt.Errorf("%s: %w", name, ErrActive)
	}
	r := &Run{name: name, irq: a.IRQ, stop: make(chan struct{}), unblock: unblock,
		kicks: make([]chan struct{}, len(a.Queues))}
	for i := range r.kicks {
		r.kicks[i] = make(chan struct{}, 1)
	}
	if err := setup(r); err != nil {
		r.halt()
		return err
	}
	w.running = r
	return nil
}

// Notify kicks queue i's goroutine; it never blocks, and ignores a queue
// the device does not have or a device that is not running.
func (w *Worker) Notify(i int) {
	w.mu.Lock()
	r := w.running
	w.mu.Unlock()
	if r == nil || i < 0 || i >= len(r.kicks) {
		return
	}
	select {
	case r.kicks[i] <- struct{}{}:
	default:
	}
}

// Reset stops the running activation, if any, and waits until its
// goroutines have returned: after it the device touches neither guest
// memory nor its queues.
func (w *Worker) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running != nil {
		w.running.halt()
		w.running = nil
	}
}

func (r *Run) halt() {
	close(r.stop)
	if r.unblock != nil {
		r.unblock()
	}
	r.wg.Wait()
}

// Go runs fn on a goroutine that Reset waits for.
func (r *Run) Go(fn func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn()
	}()
}

// Kick is queue i's kick channel.
func (r *Run) Kick(i int) <-chan struct{} { return r.kicks[i] }

// Interrupt signals used buffers on queue i, for a device that pushes
// chains itself rather than through Serve.
func (r *Run) Interrupt(i int) { r.irq.Queue(i) }

// Stop is closed when the run must end.
func (r *Run) Stop() <-chan struct{} { return r.stop }

// Wait blocks until queue i is kicked (true) or the run stops (false).
func (r *Run) Wait(i int) bool {
	select {
	case <-r.kicks[i]:
		return true
	case <-r.stop:
		return false
	}
}

// Fail reports that the driver broke the device (a malformed chain, a bad
// queue): the transport sets DEVICE_NEEDS_RESET, and the calling goroutine
// parks until Reset, touching nothing. Return right after it.
func (r *Run) Fail(err error) {
	r.irq.NeedsReset(fmt.Errorf("%s: %w", r.name, err))
	<-r.stop
}

// Serve runs the usual queue loop on a goroutine: drain queue i with
// handle (ServeQueue), park until the next kick, until Reset; a broken
// queue or a handle error fails the run.
func (r *Run) Serve(i int, q *queue.Queue, handle func(queue.Chain) (uint32, error)) {
	r.Go(func() {
		for {
			if err := ServeQueue(q, r.irq, i, handle); err != nil {
				r.Fail(err)
				return
			}
			if !r.Wait(i) {
				return
			}
		}
	})
}

// ServeQueue drains queue index of q: each available chain goes to handle,
// which returns how many bytes it wrote into the chain's writable buffers,
// and is then pushed to the used ring. The driver is interrupted once per
// batch, if it asked to be. It returns with notifications re-enabled and
// the queue empty, or with the error that broke the queue or the handler.
func ServeQueue(q *queue.Queue, irq Interrupt, index int, handle func(queue.Chain) (uint32, error)) error {
	for {
		for {
			c, ok, err := q.Next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			n, err := handle(c)
			if err != nil {
				return err
			}
			if err := q.Push(c.Head, n); err != nil {
				return err
			}
		}
		if q.NeedInterrupt() {
			irq.Queue(index)
		}
		if !q.EnableNotify() {
			return nil
		}
	}
}
