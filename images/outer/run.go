package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
)

// Bounds on what one run keeps of a (hostile) guest console.
const (
	maxLineBytes = 4096
	maxLogLines  = 2000
)

// waitDelay bounds how long a killed runner's output may keep its pipe open.
const waitDelay = 5 * time.Second

// logLine is one console line with its time since the runner started.
type logLine struct {
	at   time.Duration
	text string
}

// console splits a runner's combined output into timestamped lines, notes
// the agent's first line and check results, and keeps the last maxLogLines.
// exec calls Write from one goroutine at a time (Stdout == Stderr); the mutex
// makes reading the state after Wait safe for the race detector too.
type console struct {
	mu      sync.Mutex
	start   time.Time
	partial []byte
	lines   []logLine
	dropped int
	total   int           // lines seen, dropped ones included
	first   time.Duration // -1 until the agent's first line
	mark    string        // the scenario's Mark; none when empty
	markAt  time.Duration // -1 until mark is seen
	checks  map[string]string
	// stream, if set, gets each line as it completes.
	stream func(text string)
	// onMark, if set, is called (with mu held) when mark first appears.
	onMark func()
}

func newConsole(start time.Time, mark string, stream func(string)) *console {
	return &console{start: start, first: -1, mark: mark, markAt: -1, checks: map[string]string{}, stream: stream}
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Since(c.start)
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			c.partial = appendBounded(c.partial, rest)
			break
		}
		c.partial = appendBounded(c.partial, rest[:i])
		c.line(now)
		rest = rest[i+1:]
	}
	return len(p), nil
}

func appendBounded(dst, src []byte) []byte {
	room := maxLineBytes - len(dst)
	if room <= 0 {
		return dst
	}
	if len(src) > room {
		src = src[:room]
	}
	return append(dst, src...)
}

// line ends the partial line; the caller holds mu.
func (c *console) line(at time.Duration) {
	text := strings.ToValidUTF8(strings.TrimRight(string(c.partial), "\r"), "?")
	c.partial = c.partial[:0]
	if c.first < 0 && scenario.IsAgentStart(text) {
		c.first = at
	}
	if c.markAt < 0 && c.mark != "" && strings.Contains(text, c.mark) {
		c.markAt = at
		if c.onMark != nil {
			c.onMark()
		}
	}
	if chk, ok := scenario.ParseAgentCheck(text); ok {
		c.checks[chk.Name] = chk.Result
	}
	if c.stream != nil {
		c.stream(text)
	}
	if len(c.lines) == maxLogLines {
		copy(c.lines, c.lines[1:])
		c.lines = c.lines[:maxLogLines-1]
		c.dropped++
	}
	c.lines = append(c.lines, logLine{at: at, text: text})
	c.total++
}

// maxProgressText bounds the console line a heartbeat quotes.
const maxProgressText = 200

// progress returns the line count and the last line, for heartbeats.
func (c *console) progress() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := ""
	if len(c.lines) > 0 {
		last = c.lines[len(c.lines)-1].text
	}
	if len(last) > maxProgressText {
		last = strings.ToValidUTF8(last[:maxProgressText], "?")
	}
	return c.total, last
}

// flush ends an unterminated last line.
func (c *console) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.partial) > 0 {
		c.line(time.Since(c.start))
	}
}

// runner runs scenarios with the binaries at these paths.
type runner struct {
	vmm, qemu string
	// emit prints one protocol line on the outer console.
	emit func(line string)
	// beat is the heartbeat interval during a run; none when zero.
	beat time.Duration
	// root is where an exec job is chrooted; none when empty.
	root string
	// reportMu keeps the report lines of parallel runs apart.
	reportMu sync.Mutex
}

// heartbeat emits a heartbeat line every r.beat until stop is called: the
// host tells a slow guest from a stuck outer machine by them.
func (r *runner) heartbeat(name string, con *console) (stop func()) {
	if r.beat <= 0 {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(r.beat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				lines, last := con.progress()
				r.emit(scenario.HeartbeatLine(name, time.Since(con.start).Seconds(), lines, last))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// run executes one scenario run and reports it; on failure it has already
// emitted the run's console as E2E-LOG lines.
func (r *runner) run(ctx context.Context, run scenario.Run) scenario.Result {
	s := run.Scenario
	res := scenario.Result{
		Name: s.Name, Run: run.Index, Runner: s.RunnerName(), WantExit: s.WantExit,
		Exit: scenario.ExitNone, FirstLineS: scenario.NoFirstLine, MarkS: scenario.NoFirstLine,
	}
	timeout, err := s.Deadline()
	if err != nil {
		res.Reason = err.Error()
		return res
	}
	bin := r.vmm
	if s.RunnerName() == scenario.RunnerQEMU {
		bin = r.qemu
	}

	finishDevices, err := setupDevices(s)
	if err != nil {
		res.Reason = fmt.Sprintf("device setup: %v", err)
		return res
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := s.Args
	reportPath := ""
	if s.Report {
		reportPath = filepath.Join(os.TempDir(), fmt.Sprintf("vmm-report-%s-%d.json", s.Name, run.Index))
		args = append(slices.Clone(args), "--report", reportPath)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Kill the whole process group: a VMM may have helper processes.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	var stream func(string)
	if s.Stream {
		stream = func(text string) { r.emit(scenario.ConsoleLine(s.Name, text)) }
	}
	start := time.Now()
	con := newConsole(start, s.Mark, stream)
	if s.KillOnMark {
		// Output arrives only after Start, so cmd.Process is set by then.
		con.onMark = func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	}
	if s.TermOnMark {
		con.onMark = func() { _ = cmd.Process.Signal(syscall.SIGTERM) }
	}
	cmd.Stdout, cmd.Stderr = con, con

	runErr := cmd.Start()
	var mem *scenario.Memory
	if runErr == nil {
		stop := r.heartbeat(s.Name, con)
		stopSampling := func() scenario.Memory { return scenario.Memory{} }
		if s.SampleMemoryMiB > 0 {
			stopSampling = sampleMemory(cmd.Process.Pid, uint64(s.SampleMemoryMiB)<<10, scenario.MemorySampleInterval)
		}
		runErr = cmd.Wait()
		m := stopSampling()
		mem = &m
		stop()
	}
	res.TotalS = time.Since(start).Seconds()
	con.flush()
	if reportPath != "" {
		r.emitReport(s.Name, reportPath)
	}
	if s.SampleMemoryMiB > 0 && mem != nil {
		r.emit(scenario.ConsoleLine(s.Name, memoryLine(*mem)))
	}
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)

	con.mu.Lock()
	defer con.mu.Unlock()
	if con.first >= 0 {
		res.FirstLineS = con.first.Seconds()
	}
	if con.markAt >= 0 {
		res.MarkS = con.markAt.Seconds()
	}
	var exitErr *exec.ExitError
	switch {
	case runErr == nil:
		res.Exit = 0
	case errors.As(runErr, &exitErr) && exitErr.ExitCode() >= 0:
		res.Exit = exitErr.ExitCode()
	}
	res.Reason = verdict(s, res.Exit, runErr, timedOut, timeout, con.checks)
	// The images are checked after vmm has exited and closed them.
	if problems := finishDevices(); len(problems) > 0 {
		if res.Reason != "" {
			problems = append([]string{res.Reason}, problems...)
		}
		res.Reason = strings.Join(problems, "; ")
	}
	res.Pass = res.Reason == ""
	// A streamed run's console is already out; don't print it twice.
	if !res.Pass && !s.Stream {
		if con.dropped > 0 {
			r.emit(scenario.LogLine(s.Name, fmt.Sprintf("(%d earlier lines dropped)", con.dropped)))
		}
		for _, l := range con.lines {
			r.emit(scenario.LogLine(s.Name, fmt.Sprintf("[%8.3f] %s", l.at.Seconds(), l.text)))
		}
	}
	return res
}

// maxReportBytes bounds the report a run may print.
const maxReportBytes = 1 << 20

// emitReport prints a run's --report file as console lines, one per JSON
// line (short: vmm indents it), each starting scenario.ReportPrefix; a
// missing report prints nothing and the host's parse says so.
func (r *runner) emitReport(name, path string) {
	r.reportMu.Lock()
	defer r.reportMu.Unlock()
	f, err := os.Open(path)
	if err != nil {
		r.emit(scenario.LogLine(name, fmt.Sprintf("no report: %v", err)))
		return
	}
	defer os.Remove(path)
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxReportBytes))
	sc.Buffer(make([]byte, 0, maxLineBytes), maxLineBytes)
	for sc.Scan() {
		r.emit(scenario.ConsoleLine(name, scenario.ReportPrefix+sc.Text()))
	}
	if err := sc.Err(); err != nil {
		r.emit(scenario.LogLine(name, fmt.Sprintf("report: %v", err)))
	}
}

// verdict explains why a run failed, or returns "" when it passed.
func verdict(s scenario.Scenario, exit int, runErr error, timedOut bool, timeout time.Duration, checks map[string]string) string {
	var why []string
	if timedOut {
		why = append(why, fmt.Sprintf("killed after the scenario timeout of %s", timeout))
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		why = append(why, fmt.Sprintf("running %s: %v", s.RunnerName(), runErr))
	}
	if exit != s.WantExit {
		why = append(why, fmt.Sprintf("exit %d, want %d", exit, s.WantExit))
	}
	names := make([]string, 0, len(s.WantChecks))
	for name := range s.WantChecks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		got, ok := checks[name]
		switch {
		case !ok:
			why = append(why, fmt.Sprintf("check %s not reported, want %s", name, s.WantChecks[name]))
		case got != s.WantChecks[name]:
			why = append(why, fmt.Sprintf("check %s = %s, want %s", name, got, s.WantChecks[name]))
		}
	}
	return strings.Join(why, "; ")
}

// suite runs every scheduled run, a concurrent group's at once, emitting
// one result line each, and returns the pass and fail counts.
func (r *runner) suite(ctx context.Context, list []scenario.Scenario) (pass, fail int) {
	for _, batch := range scenario.Batches(scenario.Schedule(list)) {
		results := make([]scenario.Result, len(batch))
		var wg sync.WaitGroup
		for i, run := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = r.run(ctx, run)
			}()
		}
		wg.Wait()
		for _, res := range results {
			r.emit(res.Line())
			if res.Pass {
				pass++
			} else {
				fail++
			}
		}
	}
	return pass, fail
}

// lineEmitter serialises protocol lines onto one writer, one Write per line.
type lineEmitter struct {
	mu sync.Mutex
	w  io.Writer
	// prefix goes before every line (the kmsg priority).
	prefix string
	// maxLine, if > 0, truncates longer lines (kmsg rejects long records).
	maxLine int
}

func (e *lineEmitter) emit(line string) {
	if e.maxLine > 0 && len(line) > e.maxLine {
		line = strings.ToValidUTF8(line[:e.maxLine], "?") + "..."
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// The console is all we have; a failed write has nowhere to be reported.
	_, _ = io.WriteString(e.w, e.prefix+line+"\n")
}
