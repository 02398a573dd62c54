// Package blocktest wraps a block.Device for controller tests: reads can
// be held until several are pending at once or until the test releases
// them, and the order in which writes finish and flushes start is logged,
// so a test can show that a controller keeps commands in flight together,
// completes them out of order and flushes after the writes before it.
package blocktest

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmmdev/vmm/storage/block"
)

// ErrTimeout is a held read's error when its condition never came true
// (the controller did not issue what the test expected).
var ErrTimeout = errors.New("blocktest: read held too long")

// waitLimit bounds every hold, so a controller that runs commands one at
// a time fails the test instead of hanging it.
const waitLimit = 5 * time.Second

// Gate is a block.Device whose reads wait as configured.
type Gate struct {
	block.Device

	mu      sync.Mutex
	want    int           // reads that must be pending together (Barrier)
	pending int           // reads inside ReadV now
	most    int           // the largest pending seen
	all     chan struct{} // closed once want reads were pending together
	holds   map[uint64]chan struct{}
	arrived chan uint64 // offsets of reads as they start
	log     []string
}

// New wraps d.
func New(d block.Device) *Gate {
	return &Gate{Device: d, holds: map[uint64]chan struct{}{}, arrived: make(chan uint64, 1024)}
}

// Arrived delivers the byte offset of each read as it reaches the device.
func (g *Gate) Arrived() <-chan uint64 { return g.arrived }

// WaitArrived returns the offset of the next read to reach the device, or
// an error after a while.
func (g *Gate) WaitArrived() (uint64, error) {
	select {
	case off := <-g.arrived:
		return off, nil
	case <-time.After(waitLimit):
		return 0, errors.New("blocktest: no read reached the device")
	}
}

// Barrier makes every read wait until n reads are pending at once (or
// fail with ErrTimeout); n <= 1 turns it off.
func (g *Gate) Barrier(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.want, g.all = n, nil
	if n > 1 {
		g.all = make(chan struct{})
	}
}

// Hold makes the read at byte offset off wait until release is called.
func (g *Gate) Hold(off uint64) (release func()) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.holds[off] = ch
	g.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// MaxPending is the most reads that were pending at once.
func (g *Gate) MaxPending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.most
}

// Log is what happened, in order: "read OFF", "write OFF" as each
// finishes, "flush" as each starts.
func (g *Gate) Log() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.log...)
}

func (g *Gate) note(s string) {
	g.mu.Lock()
	g.log = append(g.log, s)
	g.mu.Unlock()
}

// ReadV implements block.Device.
func (g *Gate) ReadV(bufs [][]byte, off uint64) error {
	g.mu.Lock()
	g.pending++
	g.most = max(g.most, g.pending)
	all, hold := g.all, g.holds[off]
	if g.want > 1 && g.pending >= g.want {
		close(g.all)
		g.want = 0
	}
	g.mu.Unlock()
	select {
	case g.arrived <- off:
	default:
	}
	defer func() {
		g.mu.Lock()
		g.pending--
		g.mu.Unlock()
	}()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for _, ch := range []chan struct{}{all, hold} {
		if ch == nil {
			continue
		}
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("read at %d: %w", off, ErrTimeout)
		}
	}
	err := g.Device.ReadV(bufs, off)
	g.note(fmt.Sprintf("read %d", off))
	return err
}

// WriteV implements block.Device.
func (g *Gate) WriteV(bufs [][]byte, off uint64) error {
	err := g.Device.WriteV(bufs, off)
	g.note(fmt.Sprintf("write %d", off))
	return err
}

// Flush implements block.Device.
func (g *Gate) Flush() error {
	g.note("flush")
	return g.Device.Flush()
}
