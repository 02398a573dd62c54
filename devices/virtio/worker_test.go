package virtio

import (
	"errors"
	"sync"
	"testing"

	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// fakeIRQ records what a run signals.
type fakeIRQ struct {
	mu    sync.Mutex
	reset []error
}

func (f *fakeIRQ) Queue(int) {}
func (f *fakeIRQ) Config()   {}
func (f *fakeIRQ) NeedsReset(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reset = append(f.reset, err)
}

func TestWorkerLifecycle(t *testing.T) {
	var w Worker
	irq := &fakeIRQ{}
	a := Activation{Queues: make([]*queue.Queue, 2), IRQ: irq}
	kicked := make(chan int, 4)
	stopped := make(chan struct{})
	unblocked := 0
	err := w.Start("virtio-test", a, func() { unblocked++ }, func(r *Run) error {
		r.Go(func() {
			defer close(stopped)
			for r.Wait(1) {
				kicked <- 1
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start("virtio-test", a, nil, func(*Run) error { return nil }); !errors.Is(err, ErrActive) {
		t.Fatalf("second Start = %v, want ErrActive", err)
	}
	w.Notify(-1) // out of range: ignored
	w.Notify(7)
	w.Notify(1)
	if got := <-kicked; got != 1 {
		t.Fatalf("kick %d", got)
	}
	w.Reset()
	select {
	case <-stopped:
	default:
		t.Fatal("Reset returned before the goroutine did")
	}
	if unblocked != 1 {
		t.Fatalf("unblock called %d times, want 1", unblocked)
	}
	w.Notify(1) // not running: ignored, never blocks
	w.Reset()   // idempotent
}

// TestWorkerFail: a failing goroutine reports DEVICE_NEEDS_RESET once and
// parks until Reset; a failing setup stops what it started and leaves the
// device startable.
func TestWorkerFail(t *testing.T) {
	var w Worker
	irq := &fakeIRQ{}
	a := Activation{Queues: make([]*queue.Queue, 1), IRQ: irq}
	failed := make(chan struct{})
	parked := make(chan struct{})
	if err := w.Start("virtio-test", a, nil, func(r *Run) error {
		r.Go(func() {
			close(failed)
			r.Fail(errors.New("bad chain"))
			close(parked)
		})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	<-failed
	w.Reset()
	<-parked
	if len(irq.reset) != 1 || irq.reset[0].Error() != "virtio-test: bad chain" {
		t.Fatalf("NeedsReset calls %v", irq.reset)
	}

	stopped := make(chan struct{})
	setupErr := errors.New("no tap")
	err := w.Start("virtio-test", a, nil, func(r *Run) error {
		r.Go(func() {
			<-r.Stop()
			close(stopped)
		})
		return setupErr
	})
	if !errors.Is(err, setupErr) {
		t.Fatalf("Start = %v, want the setup error", err)
	}
	<-stopped
	if err := w.Start("virtio-test", a, nil, func(*Run) error { return nil }); err != nil {
		t.Fatalf("Start after a failed setup: %v", err)
	}
	w.Reset()
}
