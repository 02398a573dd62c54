package hyperv

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// fdTimers back TSCClock's AfterFunc with timerfds read through Go's
// poller. A guest on synthetic timers re-arms one at every tick; with
// time.AfterFunc each re-arm earlier than the runtime's next timer wakes the
// runtime's poller thread (netpollBreak) only for it to sleep again: two
// context switches per guest tick, costly on a loaded host. Arming a
// timerfd wakes nobody; only its expiry does. Timers are pooled: a guest
// re-arms far more often than it holds timers at once.
type fdTimers struct {
	mu     sync.Mutex
	free   []*fdTimer
	all    []*fdTimer
	closed bool
	wg     sync.WaitGroup
}

// errTimersClosed is returned by AfterFunc once the pool is closed.
var errTimersClosed = errors.New("hyperv: timers closed")

// fdTimer is one timerfd and the goroutine that reads its expiries.
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

func monotonicNS() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

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
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	// Non-blocking, so os.File reads it through the poller and Close
	// wakes the reader.
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

// read runs f for each expiry of the current arm, until the file closes.
func (t *fdTimer) read() {
	defer t.pool.wg.Done()
	var buf [8]byte
	for {
		if _, err := t.f.Read(buf[:]); err != nil {
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
		t.mu.Unlock()
		errs = append(errs, t.f.Close())
	}
	p.wg.Wait()
	return errors.Join(errs...)
}
