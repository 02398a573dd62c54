package testhost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
)

// Errors a caller may branch on.
var (
	// ErrOuterTimeout: the outer machine ran past Machine.Timeout.
	ErrOuterTimeout = errors.New("outer machine timed out")
	// ErrIncomplete: the outer machine stopped without "E2E: done".
	ErrIncomplete = errors.New("outer machine stopped before the suite finished")
	// ErrOuterSilent: the outer machine printed nothing, heartbeats
	// included, for Machine.IdleTimeout: its kernel is stuck.
	ErrOuterSilent = errors.New("outer machine went silent")
)

// DefaultIdleTimeout is Machine.IdleTimeout's default: the outer init beats
// every 30 s during a run, and its boot to "kvm ready" takes well under it.
const DefaultIdleTimeout = 4 * time.Minute

// DefaultAppend is the outer kernel's command line: printk.devkmsg=on lets
// the outer init print its lines through /dev/kmsg without rate limits. The
// outer's timer runs as a periodic LAPIC tick (nohz=off highres=off
// lapic=notscdeadline): with one-shot TSC-deadline timers the outer machine
// often went idle for good when a nested guest stopped, as if a timer
// interrupt had been lost while the guest ran (TCG's nested SVM); a periodic
// tick re-arms itself. Five of five boots passed with it, none hung.
const DefaultAppend = "console=ttyS0 quiet panic=-1 printk.devkmsg=on nohz=off highres=off lapic=notscdeadline"

// tailLines is how much of the outer console an Outcome keeps for diagnosis.
const tailLines = 60

// Machine is one boot of the outer machine.
type Machine struct {
	QEMU   string // the outer QEMU (OuterQEMU)
	Kernel string // the outer kernel (Debian's vmlinuz)
	Initrd string // outer.cpio.gz
	// MemoryMiB defaults to 3072.
	MemoryMiB int
	// CPUs defaults to 1: with more, multi-threaded TCG made no inner boot
	// faster and hung one early in boot (reference/nested-host.md).
	CPUs int
	// Append is the outer kernel's command line; default DefaultAppend.
	Append string
	// Timeout bounds the whole boot; required.
	Timeout time.Duration
	// IdleTimeout stops a machine whose console stays silent this long;
	// default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Extra are more QEMU arguments (devices), after the others.
	Extra []string
	// Console, if set, receives the outer console verbatim.
	Console io.Writer
	// OnEvent, if set, sees every protocol event as it arrives.
	OnEvent func(scenario.Event)
}

// Args is the outer QEMU's command line.
func (m Machine) Args() []string {
	mem, cpus, app := m.MemoryMiB, m.CPUs, m.Append
	if mem <= 0 {
		mem = 3072
	}
	if cpus <= 0 {
		cpus = 1
	}
	if app == "" {
		app = DefaultAppend
	}
	return append([]string{
		"-accel", "tcg", "-cpu", "max", "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nographic", "-no-reboot", "-nic", "none",
		"-kernel", m.Kernel, "-initrd", m.Initrd, "-append", app,
	}, m.Extra...)
}

// Run boots the outer machine and collects what its init reports. The
// Outcome is returned even with an error, holding whatever arrived.
func (m Machine) Run(ctx context.Context) (*Outcome, error) {
	if m.Timeout <= 0 {
		return nil, errors.New("outer machine: no timeout set")
	}
	idle := m.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, m.Timeout, ErrOuterTimeout)
	defer cancelTimeout()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cmd := exec.CommandContext(ctx, m.QEMU, m.Args()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw

	out := NewOutcome()
	onEvent := m.OnEvent
	if err := cmd.Start(); err != nil {
		return out, fmt.Errorf("starting outer QEMU %s: %w", m.QEMU, err)
	}
	// Every console line feeds the watchdog below.
	alive := make(chan struct{}, 1)
	out.onLine = func() {
		select {
		case alive <- struct{}{}:
		default:
		}
	}
	out.OnEvent = onEvent
	read := make(chan error, 1)
	go func() { read <- out.Read(pr, m.Console) }()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	watchdog := time.NewTimer(idle)
	defer watchdog.Stop()
	var waitErr error
	for done := false; !done; {
		select {
		case waitErr = <-waited:
			done = true
		case <-alive:
			watchdog.Reset(idle)
		case <-watchdog.C:
			cancel(fmt.Errorf("%w for %s", ErrOuterSilent, idle))
		}
	}
	pw.Close()
	readErr := <-read

	switch cause := context.Cause(ctx); {
	case cause != nil && !errors.Is(cause, context.Canceled):
		if errors.Is(cause, ErrOuterTimeout) {
			cause = fmt.Errorf("%w after %s", ErrOuterTimeout, m.Timeout)
		}
		return out, fmt.Errorf("%w (%s)", cause, out.Summary())
	case waitErr != nil:
		return out, fmt.Errorf("outer QEMU: %w (%s)", waitErr, out.Summary())
	case readErr != nil:
		return out, fmt.Errorf("reading outer console: %w", readErr)
	case !out.Done:
		return out, fmt.Errorf("%w (%s)", ErrIncomplete, out.Summary())
	}
	return out, nil
}

// Outcome is what one outer boot reported.
type Outcome struct {
	KVMReady bool
	// KVMFailed is the reason the KVM modules did not load, if they did not.
	KVMFailed string
	// Errors are "E2E: error" reasons: the suite could not run.
	Errors []string
	// Results are the scenario runs, in the order they ran.
	Results []scenario.Result
	// Logs holds the E2E-LOG lines of failed runs, by scenario name.
	Logs map[string][]string
	// Console holds the E2E-CON lines of streamed runs, by scenario name.
	Console map[string][]string
	// Done is set by "E2E: done"; Pass and Fail are its counts.
	Done       bool
	Pass, Fail int
	// Malformed are lines that looked like protocol lines but did not parse.
	Malformed []string
	// Tail is the last console lines, for when the outer machine dies.
	Tail []string
	// LastHeartbeat is the latest heartbeat (Kind is KindNone before any).
	LastHeartbeat scenario.Event
	// OnEvent, if set, sees every event as Add records it.
	OnEvent func(scenario.Event)
	// onLine, if set, is called for every line (Machine's watchdog).
	onLine func()
}

// NewOutcome returns an empty Outcome.
func NewOutcome() *Outcome {
	return &Outcome{Logs: map[string][]string{}, Console: map[string][]string{}}
}

// Read adds every line of r (copying it to raw when set) until EOF.
func (o *Outcome) Read(r io.Reader, raw io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if raw != nil {
			if _, err := io.WriteString(raw, line+"\n"); err != nil {
				raw = nil // a broken log must not stop the suite
			}
		}
		o.Add(line)
	}
	if err := sc.Err(); err != nil {
		// Drain so QEMU never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, r)
		return err
	}
	return nil
}

// Add records one console line.
func (o *Outcome) Add(line string) {
	line = strings.TrimRight(line, "\r")
	if o.onLine != nil {
		o.onLine()
	}
	if len(o.Tail) == tailLines {
		copy(o.Tail, o.Tail[1:])
		o.Tail = o.Tail[:tailLines-1]
	}
	o.Tail = append(o.Tail, line)
	ev, err := scenario.ParseLine(line)
	if err != nil {
		o.Malformed = append(o.Malformed, line)
		return
	}
	switch ev.Kind {
	case scenario.KindNone:
		return
	case scenario.KindKVMReady:
		o.KVMReady = true
	case scenario.KindKVMFailed:
		o.KVMFailed = ev.Reason
	case scenario.KindError:
		o.Errors = append(o.Errors, ev.Reason)
	case scenario.KindResult:
		o.Results = append(o.Results, ev.Result)
	case scenario.KindDone:
		o.Done, o.Pass, o.Fail = true, ev.Pass, ev.Fail
	case scenario.KindLog:
		o.Logs[ev.Name] = append(o.Logs[ev.Name], ev.Text)
	case scenario.KindConsole:
		o.Console[ev.Name] = append(o.Console[ev.Name], ev.Text)
	case scenario.KindHeartbeat:
		o.LastHeartbeat = ev
	}
	if o.OnEvent != nil {
		o.OnEvent(ev)
	}
}

// ResultsFor returns the runs of one scenario, in order.
func (o *Outcome) ResultsFor(name string) []scenario.Result {
	var rs []scenario.Result
	for _, r := range o.Results {
		if r.Name == name {
			rs = append(rs, r)
		}
	}
	return rs
}

// Summary says in one line how far the outer machine got.
func (o *Outcome) Summary() string {
	switch {
	case o.KVMFailed != "":
		return "KVM failed in the outer machine: " + o.KVMFailed
	case len(o.Errors) > 0:
		return "outer init error: " + strings.Join(o.Errors, "; ")
	case !o.KVMReady:
		return "outer init never reported KVM ready; last console lines:\n" + strings.Join(o.Tail, "\n")
	case !o.Done:
		beat := "no heartbeat"
		if hb := o.LastHeartbeat; hb.Kind == scenario.KindHeartbeat {
			beat = fmt.Sprintf("last heartbeat: %s at %.0fs, %d console lines, last %q", hb.Name, hb.ElapsedS, hb.Lines, hb.Text)
		}
		return fmt.Sprintf("%d scenario runs reported, no E2E: done; %s; last console lines:\n%s",
			len(o.Results), beat, strings.Join(o.Tail, "\n"))
	}
	return fmt.Sprintf("done: pass=%d fail=%d", o.Pass, o.Fail)
}
