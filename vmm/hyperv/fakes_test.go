package hyperv

import (
	"errors"
	"sort"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeMem is guest RAM from 0 to len(b).
type fakeMem struct{ b []byte }

var errOutside = errors.New("outside fake RAM")

func (m *fakeMem) Slice(gpa, n uint64) ([]byte, error) {
	if gpa > uint64(len(m.b)) || n > uint64(len(m.b))-gpa {
		return nil, errOutside
	}
	return m.b[gpa : gpa+n : gpa+n], nil
}

type irq struct {
	vcpu   int
	vector uint8
}

type fakeHost struct {
	mu      sync.Mutex
	irqs    []irq
	kicks   []int
	flushes [][]int
	resets  int
	crashes [][5]uint64
	runtime uint64
}

func (h *fakeHost) Interrupt(vcpu int, vector uint8) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.irqs = append(h.irqs, irq{vcpu, vector})
	return nil
}

func (h *fakeHost) Kick(vcpu int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kicks = append(h.kicks, vcpu)
}

func (h *fakeHost) FlushTLB(_ int, vcpus []int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.flushes = append(h.flushes, append([]int(nil), vcpus...))
	return nil
}

func (h *fakeHost) Runtime(int) uint64 { return h.runtime }
func (h *fakeHost) Reset()             { h.resets++ }
func (h *fakeHost) Crash(p [5]uint64)  { h.crashes = append(h.crashes, p) }

func (h *fakeHost) takeIRQs() []irq {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.irqs
	h.irqs = nil
	return out
}

// fakeClock is a manual reference clock: Advance runs due callbacks in
// expiry order, synchronously.
type fakeClock struct {
	mu     sync.Mutex
	now    uint64
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      uint64
	f       func()
	stopped bool
	fired   bool
}

func (c *fakeClock) Now() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d uint64, f func(uint64), arg uint64) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now + d, f: func() { f(arg) }}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

// Advance moves time forward by d, firing callbacks due on the way at their
// own time.
func (c *fakeClock) Advance(d uint64) {
	c.mu.Lock()
	end := c.now + d
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at < c.timers[j].at })
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.stopped && !t.fired && t.at <= end {
				next = t
				break
			}
		}
		if next == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		next.fired = true
		if next.at > c.now {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
	}
}

// armed counts live timers.
func (c *fakeClock) armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped && !t.fired {
			n++
		}
	}
	return n
}

type testPart struct {
	*Partition
	mem   *fakeMem
	host  *fakeHost
	clock *fakeClock
}

// testTSC is a 2.5 GHz guest TSC that read 1e9 at partition start.
var testTSCHz uint64 = 2_500_000_000

func newTestPartition(t *testing.T, features string, cpus int) testPart {
	t.Helper()
	f, err := ParseFeatures(features)
	require.NoError(t, err)
	tp := testPart{mem: &fakeMem{b: make([]byte, 1<<20)}, host: &fakeHost{}, clock: &fakeClock{}}
	tp.Partition, err = New(Config{Features: f, CPUs: cpus, Memory: tp.mem, Host: tp.host, Clock: tp.clock,
		TSC: NewTSCParams(testTSCHz, 1e9), TSCHz: testTSCHz})
	require.NoError(t, err)
	return tp
}

func (tp testPart) mustWrite(t *testing.T, vcpu int, msr uint32, v uint64) {
	t.Helper()
	require.True(t, tp.WriteMSR(vcpu, msr, v), "wrmsr %s <- %#x", msrName(msr), v)
}

func (tp testPart) mustRead(t *testing.T, vcpu int, msr uint32) uint64 {
	t.Helper()
	v, ok := tp.ReadMSR(vcpu, msr)
	require.True(t, ok, "rdmsr %s", msrName(msr))
	return v
}
