package vmm

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// StopKind says why a VM ended. Each kind maps to one exit code of `vmm run`.
type StopKind int

const (
	// StopPowerOff: the guest powered off (ACPI S5).
	StopPowerOff StopKind = iota
	// StopError: the VMM failed (KVM error, an exit it cannot handle).
	StopError
	// StopPanic: the guest panicked (pvpanic, a recognised console panic).
	StopPanic
	// StopTimeout: the run's deadline passed.
	StopTimeout
	// StopReset: the guest reset or triple-faulted.
	StopReset
	// StopDebugExit: the guest wrote to the debug-exit port.
	StopDebugExit
	// StopInterrupted: the user (a signal) stopped the VM.
	StopInterrupted
	// StopExpectMatched: the console matched --expect.
	StopExpectMatched
	// StopFailMatched: the console matched --fail.
	StopFailMatched
	// StopHalted: every vCPU halted with interrupts disabled (or never
	// started): nothing can wake the guest again.
	StopHalted
	// StopNoBoot: the firmware found nothing to boot (--firmware).
	StopNoBoot
	// StopHeartbeatLost: the guest's VMBus heartbeat stopped for longer
	// than --heartbeat-timeout after it had started.
	StopHeartbeatLost
)

func (k StopKind) String() string {
	switch k {
	case StopPowerOff:
		return "poweroff"
	case StopError:
		return "error"
	case StopPanic:
		return "panic"
	case StopTimeout:
		return "timeout"
	case StopReset:
		return "reset"
	case StopDebugExit:
		return "debug-exit"
	case StopInterrupted:
		return "interrupted"
	case StopExpectMatched:
		return "expect-matched"
	case StopFailMatched:
		return "fail-matched"
	case StopHalted:
		return "halted"
	case StopNoBoot:
		return "no-boot"
	case StopHeartbeatLost:
		return "heartbeat-lost"
	}
	return fmt.Sprintf("stop(%d)", int(k))
}

// Exit codes of `vmm run` (docs/design.md, the README and the usage text list them).
const (
	ExitPowerOff    = 0
	ExitError       = 1
	ExitUsage       = 2
	ExitPanic       = 3
	ExitTimeout     = 4
	ExitReset       = 5
	ExitFailMatched = 6   // even, so no debug-exit write (2k+1) can produce it
	ExitNoBoot      = 8   // even too: the firmware found no bootable device
	ExitHeartbeat   = 10  // even: the guest's VMBus heartbeat stopped (--heartbeat-timeout)
	ExitInterrupted = 130 // as a shell reports SIGINT: 128+2
)

// ExitCodes are the fixed exit codes of `vmm run`, in order; the debug-exit
// port's 2k+1 comes on top. Documentation is checked against this list.
func ExitCodes() []int {
	return []int{ExitPowerOff, ExitError, ExitUsage, ExitPanic, ExitTimeout, ExitReset, ExitFailMatched, ExitNoBoot, ExitHeartbeat, ExitInterrupted}
}

// StopReason is the one reason a VM ended.
type StopReason struct {
	Kind StopKind
	// Source names what produced the reason (a device, the run loop, a vCPU).
	Source string
	// Detail is a human-readable explanation.
	Detail string
	// Value is the value the guest wrote to the debug-exit port (StopDebugExit).
	Value uint32
	// Err is the underlying error for StopError.
	Err error
}

// ExitCode maps the reason to the exit code of `vmm run`. A debug-exit write
// of k gives 2k+1, truncated to 8 bits as a process exit status is (QEMU's
// isa-debug-exit does the same).
func (r StopReason) ExitCode() int {
	switch r.Kind {
	case StopPowerOff, StopExpectMatched:
		return ExitPowerOff
	case StopPanic, StopHalted:
		return ExitPanic
	case StopFailMatched:
		return ExitFailMatched
	case StopNoBoot:
		return ExitNoBoot
	case StopHeartbeatLost:
		return ExitHeartbeat
	case StopTimeout:
		return ExitTimeout
	case StopReset:
		return ExitReset
	case StopDebugExit:
		return int((r.Value<<1 | 1) & 0xff)
	case StopInterrupted:
		return ExitInterrupted
	}
	return ExitError
}

func (r StopReason) String() string {
	s := r.Kind.String()
	if r.Source != "" {
		s += " from " + r.Source
	}
	if r.Kind == StopDebugExit {
		s += fmt.Sprintf(" (value %#x)", r.Value)
	}
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// stopLatch records the first stop reason and signals everyone waiting.
// Later reasons are dropped: a VM has exactly one.
type stopLatch struct {
	once   sync.Once
	done   chan struct{}
	reason StopReason
	at     time.Time // when the reason was recorded
}

func newStopLatch() *stopLatch { return &stopLatch{done: make(chan struct{})} }

// Stop records r if no reason was recorded yet. It reports whether r won.
func (l *stopLatch) Stop(r StopReason) bool {
	won := false
	l.once.Do(func() {
		l.reason, l.at = r, time.Now()
		won = true
		close(l.done)
	})
	return won
}

// Done is closed once a reason is recorded.
func (l *stopLatch) Done() <-chan struct{} { return l.done }

// At is when the reason was recorded; valid after Done is closed.
func (l *stopLatch) At() time.Time {
	<-l.done
	return l.at
}

// Reason returns the recorded reason; valid after Done is closed.
func (l *stopLatch) Reason() StopReason {
	<-l.done
	return l.reason
}

// wait blocks until l has a reason. When timeout fires it records
// StopTimeout (after). When ctx is cancelled (the first SIGINT or
// SIGTERM) it asks graceful, if set, to have the guest shut itself down:
// graceful returns how long to wait for that, or false when it cannot (no
// shutdown channel open), and the run then stops as interrupted at once,
// or once the wait has passed without the guest powering off.
func (l *stopLatch) wait(ctx context.Context, timeout <-chan time.Time, after time.Duration,
	graceful func(cause string) (time.Duration, bool)) {
	interrupt := ctx.Done()
	var grace <-chan time.Time
	var cause string
	var limit time.Duration
	for {
		select {
		case <-l.Done():
			return
		case <-timeout:
			l.Stop(StopReason{Kind: StopTimeout, Source: "vmm", Detail: fmt.Sprintf("no result within %v", after)})
			return
		case <-interrupt:
			cause = context.Cause(ctx).Error()
			if graceful != nil {
				if d, ok := graceful(cause); ok {
					interrupt, limit = nil, d
					t := time.NewTimer(d)
					defer t.Stop()
					grace = t.C
					continue
				}
			}
			l.Stop(StopReason{Kind: StopInterrupted, Source: "vmm", Detail: cause})
			return
		case <-grace:
			l.Stop(StopReason{Kind: StopInterrupted, Source: "vmm",
				Detail: fmt.Sprintf("%s; the guest did not power off within %v of the shutdown request", cause, limit)})
			return
		}
	}
}
