package hyperv

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// fdTimers back TSCClock's AfterFunc with timerfds. A guest on synthetic
// timers re-arms one at every tick; with time.AfterFunc each re-arm earlier
// than the runtime's next timer wakes the runtime's poller thread
// (netpollBreak) only for it to sleep again: two context switches per guest
// tick, costly on a loaded host. Arming a timerfd wakes nobody; only its
// expiry does. Each timerfd is read blocking by a goroutine of its own: an
// expiry then costs the read that returns and the next one, where Go's
// poller added an epoll_wait, a read that finds nothing and the scheduler's
// spinning around them (BenchmarkSTimerPeriodic: cpu-ns/op). Timers are
// pooled: a guest re-arms far more often than it holds timers at once.
type fdTimers struct {
	mu     sync.Mutex
	free   []*fdTimer
	all    []*fdTimer
	closed bool
	wg     sync.WaitGroup
}

// errTimersClosed is returned by AfterFunc once the pool is closed.
var errTimersClosed = errors.New("hyperv: timers closed")

// fdTimer is one timerfd and the goroutine that reads its expiries,
// blocked in read(2) while the timer is idle.
type fdTimer struct {
	pool *fdTimers
	f    *os.File

	mu sync.Mutex
	// seq numbers the arms, so that a stale handle's Stop does nothing.
	seq uint64
	fn  func(uint64)
	arg uint64
	// deadline is the armed expiry (CLOCK_MONOTONIC ns), 0 when idle; an
	// expiry read before it belongs to an earlier arm and is ignored.
	deadline int64
}

// fdHandle is what AfterFunc returns: one arm of a pooled timer.
type fdHandle struct {
	t   *fdTimer
	seq uint64
}

// clockBase is the origin of monotonicNS; set once, at package init.
var clockBase = time.Now()

// monotonicNS is CLOCK_MONOTONIC (Go's monotonic clock) in ns from an
// arbitrary origin, read through the vDSO: unix.ClockGettime is a system
// call, two of which per timer expiry cost more than the rest of it
// together on a nested host.
func monotonicNS() int64 { return int64(time.Since(clockBase)) }

// afterFunc arms a pooled timer to call f(arg) after d.
func (p *fdTimers) afterFunc(d time.Duration, f func(uint64), arg uint64) (Timer, error) {
	t, err := p.get()
	if err != nil {
		return nil, err
	}
	d = max(d, 1) // a zero it_value would disarm
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	t.fn, t.arg = f, arg
	t.deadline = monotonicNS() + int64(d)
	if err := t.set(d); err != nil {
		t.fn, t.deadline = nil, 0
		p.put(t)
		return nil, err
	}
	return fdHandle{t: t, seq: t.seq}, nil
}

// set arms the timerfd d from now, or disarms it when d is 0.
func (t *fdTimer) set(d time.Duration) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	rc, err := t.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &spec, nil) }); err != nil {
		return err
	}
	return serr
}

// Stop implements Timer.
func (h fdHandle) Stop() bool {
	t := h.t
	t.mu.Lock()
	if t.seq != h.seq || t.deadline == 0 {
		t.mu.Unlock()
		return false
	}
	t.fn, t.deadline = nil, 0
	// Disarming resets the timerfd's expiry count, so nothing stale is
	// read after this; an expiry the reader took already finds no deadline.
	_ = t.set(0)
	t.mu.Unlock()
	t.pool.put(t)
	return true
}

func (p *fdTimers) get() (*fdTimer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errTimersClosed
	}
	if n := len(p.free); n > 0 {
		t := p.free[n-1]
		p.free = p.free[:n-1]
		return t, nil
	}
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	// Blocking, so os.File reads it with a plain read(2), not through
	// the poller; close wakes the reader by expiring the timer.
	t := &fdTimer{pool: p, f: os.NewFile(uintptr(fd), "hyperv-timer")}
	p.all = append(p.all, t)
	p.wg.Add(1)
	go t.read()
	return t, nil
}

func (p *fdTimers) put(t *fdTimer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.free = append(p.free, t)
	}
}

func (p *fdTimers) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// read runs f for each expiry of the current arm, until the pool closes.
func (t *fdTimer) read() {
	defer t.pool.wg.Done()
	var buf [8]byte
	for {
		if _, err := t.f.Read(buf[:]); err != nil || t.pool.isClosed() {
			return
		}
		t.mu.Lock()
		f, arg := t.fn, t.arg
		if f == nil || monotonicNS() < t.deadline {
			t.mu.Unlock()
			continue
		}
		t.fn, t.deadline = nil, 0
		t.mu.Unlock()
		t.pool.put(t)
		f(arg)
	}
}

// close releases every timerfd; pending callbacks never run. It waits
// for a callback in progress.
func (p *fdTimers) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	all := p.all
	p.all, p.free = nil, nil
	p.mu.Unlock()
	var errs []error
	for _, t := range all {
		t.mu.Lock()
		t.fn, t.deadline = nil, 0
		// Closing the file does not end a read(2) blocked on it; an
		// expiry does, and the reader then finds the pool closed. The
		// expiry waits in the timerfd for a reader not yet in read(2).
		if err := t.set(1); err != nil {
			errs = append(errs, fmt.Errorf("waking a timer's reader: %w", err))
		}
		t.mu.Unlock()
	}
	p.wg.Wait()
	for _, t := range all {
		errs = append(errs, t.f.Close())
	}
	return errors.Join(errs...)
}
