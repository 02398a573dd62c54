package hyperv

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitFired waits for a callback's signal, failing after a generous bound.
func waitFired(t *testing.T, ch <-chan int64, what string) int64 {
	t.Helper()
	select {
	case at := <-ch:
		return at
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never fired", what)
		return 0
	}
}

func TestFDTimerFiresNotBeforeItsTime(t *testing.T) {
	var p fdTimers
	defer func() { require.NoError(t, p.close()) }()
	fired := make(chan int64, 1)
	for i := range 50 {
		d := time.Duration(i%5) * 200 * time.Microsecond
		start := monotonicNS()
		_, err := p.afterFunc(d, func(uint64) { fired <- monotonicNS() }, 0)
		require.NoError(t, err)
		at := waitFired(t, fired, "timer")
		require.GreaterOrEqual(t, at-start, int64(d), "arm %d fired early", i)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	require.Len(t, p.all, 1, "sequential arms reuse one timerfd")
}

func TestFDTimerStop(t *testing.T) {
	var p fdTimers
	defer func() { require.NoError(t, p.close()) }()
	var stopped atomic.Int32
	a, err := p.afterFunc(5*time.Millisecond, func(uint64) { stopped.Add(1) }, 0)
	require.NoError(t, err)
	require.True(t, a.Stop())
	require.False(t, a.Stop(), "a second Stop finds nothing armed")

	// The pool hands the stopped timer out again; the old handle must not
	// stop the new arm.
	fired := make(chan int64, 1)
	b, err := p.afterFunc(20*time.Millisecond, func(uint64) { fired <- monotonicNS() }, 0)
	require.NoError(t, err)
	require.Same(t, a.(fdHandle).t, b.(fdHandle).t, "reused")
	require.False(t, a.Stop(), "stale handle")
	waitFired(t, fired, "the re-armed timer")
	require.Zero(t, stopped.Load(), "a stopped timer's callback ran")
	require.False(t, b.Stop(), "already fired")
}

func TestFDTimerConcurrentArms(t *testing.T) {
	var p fdTimers
	defer func() { require.NoError(t, p.close()) }()
	const n = 8
	fired := make(chan int64, n)
	// One callback for every arm: each gets its own arm's argument.
	f := func(arg uint64) { fired <- int64(arg) }
	for i := range n {
		_, err := p.afterFunc(time.Duration(n-i)*time.Millisecond, f, uint64(i))
		require.NoError(t, err)
	}
	seen := map[int64]bool{}
	for range n {
		seen[waitFired(t, fired, "one of the timers")] = true
	}
	require.Len(t, seen, n, "each callback once")
}

func TestTSCClockCloseCancels(t *testing.T) {
	c := &TSCClock{Params: NewTSCParams(2_500_000_000, rdtsc())}
	var ran atomic.Int32
	c.AfterFunc(1_000_000, func(uint64) { ran.Add(1) }, 0) // 100 ms
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "idempotent")
	tm := c.AfterFunc(0, func(uint64) { ran.Add(1) }, 0)
	require.False(t, tm.Stop(), "nothing is armed after Close")
	// Close waited for the readers: none is left to run a callback.
	require.Zero(t, ran.Load())
}
