package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/internal/kvmtest"
)

// fakeEnv makes the test binary act as an inner VMM (see fakeVMM).
const fakeEnv = "OUTER_TEST_FAKE_VMM"

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnv) != "" {
		os.Exit(fakeVMM(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeVMM prints what an inner guest would and exits like vmm does.
func fakeVMM(args []string) int {
	switch args[0] {
	case "boot":
		fmt.Print("[    0.000000] Linux version 6.1.0\r\n")
		fmt.Print("VMM-AGENT: start\r\n")
		fmt.Print(`VMM-AGENT: check=boot result=pass detail="6.1.0"` + "\r\n")
		fmt.Fprint(os.Stderr, "vmm: guest powered off\n")
		fmt.Print(`VMM-AGENT: check=cpus result=fail detail="1 != 2"` + "\r\n")
		return 0
	case "hold":
		// Stays until its stdin closes, having said so once running.
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	case "exit":
		fmt.Print("no newline at the end")
		return 7
	case "report":
		// args: report --report FILE, as the runner appends them.
		if err := os.WriteFile(args[2], []byte("{\n  \"exit_code\": 0,\n  \"hyperv\": {\"vps\": [1, 2]}\n}\n"), 0o644); err != nil {
			return 98
		}
		return 0
	case "barrier":
		// args: barrier DIR N --report FILE. Each run leaves a file in DIR
		// and exits 0 once N runs have, or 98 after 20 s: runs started one
		// after another never meet.
		n, err := strconv.Atoi(args[2])
		if err != nil {
			return 97
		}
		f, err := os.CreateTemp(args[1], "run")
		if err != nil {
			return 97
		}
		f.Close()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if entries, _ := os.ReadDir(args[1]); len(entries) >= n {
				break
			}
			if time.Now().After(deadline) {
				return 98
			}
		}
		report := fmt.Sprintf("{\n  \"exit_code\": 0,\n  \"pid\": %d\n}\n", os.Getpid())
		if err := os.WriteFile(args[4], []byte(report), 0o644); err != nil {
			return 97
		}
		return 0
	case "fifo-write":
		// Opening a FIFO to write blocks until a reader opens it: only a
		// concurrent reader run lets this one finish.
		f, err := os.OpenFile(args[1], os.O_WRONLY, 0)
		if err != nil {
			return 97
		}
		defer f.Close()
		if _, err := f.WriteString("met\n"); err != nil {
			return 96
		}
		return 0
	case "fifo-read":
		data, err := os.ReadFile(args[1])
		if err != nil || string(data) != "met\n" {
			return 95
		}
		return 0
	case "hang":
		// Wait to be killed. A signal channel (not a bare select{}) keeps
		// the runtime from declaring a deadlock and exiting; it is set up
		// before the mark, on which TermOnMark sends SIGTERM.
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM)
		fmt.Println("VMM-AGENT: start")
		<-stop
	}
	return 99
}

type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) emit(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
}

func (r *recorder) events(t *testing.T) []scenario.Event {
	t.Helper()
	var evs []scenario.Event
	for _, l := range r.lines {
		ev, err := scenario.ParseLine(l)
		require.NoError(t, err, l)
		require.NotEqual(t, scenario.KindNone, ev.Kind, l)
		evs = append(evs, ev)
	}
	return evs
}

func newTestRunner(t *testing.T) (*runner, *recorder) {
	t.Setenv(fakeEnv, "1")
	rec := &recorder{}
	return &runner{vmm: os.Args[0], qemu: os.Args[0], emit: rec.emit}, rec
}

func TestRunPassCollectsChecksAndFirstLine(t *testing.T) {
	r, rec := newTestRunner(t)
	s := scenario.Scenario{Name: "boot", Args: []string{"boot"}, WantChecks: map[string]string{"boot": "pass", "cpus": "fail"}}
	res := r.run(context.Background(), scenario.Run{Scenario: s, Index: 2})
	require.True(t, res.Pass, res.Reason)
	require.Equal(t, 0, res.Exit)
	require.Equal(t, 2, res.Run)
	require.Equal(t, scenario.RunnerVMM, res.Runner)
	require.GreaterOrEqual(t, res.FirstLineS, 0.0)
	require.GreaterOrEqual(t, res.TotalS, res.FirstLineS)
	require.Empty(t, rec.lines, "a passing run prints no log")
}

func TestRunFailureLogsConsole(t *testing.T) {
	r, rec := newTestRunner(t)
	s := scenario.Scenario{Name: "bad", Runner: scenario.RunnerQEMU, Args: []string{"exit"}, WantExit: 0,
		WantChecks: map[string]string{"boot": "pass"}}
	res := r.run(context.Background(), scenario.Run{Scenario: s, Index: 1})
	require.False(t, res.Pass)
	require.Equal(t, 7, res.Exit)
	require.Equal(t, float64(scenario.NoFirstLine), res.FirstLineS)
	require.Equal(t, "exit 7, want 0; check boot not reported, want pass", res.Reason)
	evs := rec.events(t)
	require.Len(t, evs, 1)
	require.Equal(t, scenario.KindLog, evs[0].Kind)
	require.Equal(t, "bad", evs[0].Name)
	require.True(t, strings.HasSuffix(evs[0].Text, "] no newline at the end"), evs[0].Text)
}

func TestRunTimeoutKillsRunner(t *testing.T) {
	r, rec := newTestRunner(t)
	r.beat = 50 * time.Millisecond
	s := scenario.Scenario{Name: "hang", Args: []string{"hang"}, WantExit: 4, Timeout: "1s"}
	start := time.Now()
	res := r.run(context.Background(), scenario.Run{Scenario: s, Index: 1})
	require.Less(t, time.Since(start), waitDelay+10*time.Second)
	require.False(t, res.Pass)
	require.Equal(t, scenario.ExitNone, res.Exit)
	require.GreaterOrEqual(t, res.FirstLineS, 0.0)
	require.Contains(t, res.Reason, "killed after the scenario timeout of 1s")
	require.Contains(t, res.Reason, "exit -1, want 4")
	// The run took a second: heartbeats came, quoting the last console line.
	var last scenario.Event
	for _, ev := range rec.events(t) {
		if ev.Kind == scenario.KindHeartbeat {
			require.Equal(t, "hang", ev.Name)
			last = ev
		}
	}
	require.Equal(t, scenario.KindHeartbeat, last.Kind)
	require.Equal(t, 1, last.Lines)
	require.Equal(t, "VMM-AGENT: start", last.Text)
}

func TestRunKillOnMark(t *testing.T) {
	r, _ := newTestRunner(t)
	s := scenario.Scenario{Name: "kill", Args: []string{"hang"}, WantExit: scenario.ExitNone, Timeout: "60s",
		Mark: "VMM-AGENT: start", KillOnMark: true}
	require.NoError(t, s.Validate())
	start := time.Now()
	res := r.run(context.Background(), scenario.Run{Scenario: s, Index: 1})
	require.Less(t, time.Since(start), 10*time.Second, "killed at the mark, not at the timeout")
	require.True(t, res.Pass, res.Reason)
	require.Equal(t, scenario.ExitNone, res.Exit)
	require.GreaterOrEqual(t, res.MarkS, 0.0)
}

// TermOnMark sends SIGTERM to the runner at the mark: the fake VMM's
// "hang" answers it by exiting 99, which the scenario expects.
func TestRunTermOnMark(t *testing.T) {
	r, _ := newTestRunner(t)
	s := scenario.Scenario{Name: "term", Args: []string{"hang"}, WantExit: 99, Timeout: "60s",
		Mark: "VMM-AGENT: start", TermOnMark: true}
	require.NoError(t, s.Validate())
	start := time.Now()
	res := r.run(context.Background(), scenario.Run{Scenario: s, Index: 1})
	require.Less(t, time.Since(start), 10*time.Second, "signalled at the mark, not killed at the timeout")
	require.True(t, res.Pass, res.Reason)
	require.Equal(t, 99, res.Exit)
	s.KillOnMark = true
	require.ErrorIs(t, s.Validate(), scenario.ErrInvalid)
}

func TestRunMissingBinary(t *testing.T) {
	rec := &recorder{}
	r := &runner{vmm: "/nonexistent/vmm", emit: rec.emit}
	res := r.run(context.Background(), scenario.Run{Scenario: scenario.Scenario{Name: "x", Args: []string{"run"}}, Index: 1})
	require.False(t, res.Pass)
	require.Contains(t, res.Reason, "running vmm:")
}

func TestSuiteStreamsAndCounts(t *testing.T) {
	r, rec := newTestRunner(t)
	list := []scenario.Scenario{
		{Name: "demo", Args: []string{"boot"}, Stream: true},
		{Name: "bad", Args: []string{"exit"}, WantExit: 7, WantChecks: map[string]string{"boot": "pass"}},
		{Name: "streamed-bad", Args: []string{"exit"}, Stream: true},
	}
	pass, fail := r.suite(context.Background(), list)
	require.Equal(t, 1, pass)
	require.Equal(t, 2, fail)
	logs := map[string]int{}
	var consoles []string
	var results []scenario.Result
	for _, ev := range rec.events(t) {
		switch ev.Kind {
		case scenario.KindLog:
			logs[ev.Name]++
		case scenario.KindConsole:
			if ev.Name == "demo" {
				consoles = append(consoles, ev.Text)
			}
		case scenario.KindResult:
			results = append(results, ev.Result)
		}
	}
	require.Contains(t, consoles, "VMM-AGENT: start")
	require.Contains(t, consoles, "vmm: guest powered off")
	require.Len(t, results, 3)
	require.True(t, results[0].Pass)
	require.Equal(t, "check boot not reported, want pass", results[1].Reason)
	require.Equal(t, "exit 7, want 0", results[2].Reason)
	// A failed streamed run's console was already printed live: no E2E-LOG.
	require.Equal(t, map[string]int{"bad": 1}, logs)
}

// A parallel scenario's runs go at once (the fake VMMs wait for each
// other), and their reports come out whole, one after another.
func TestSuiteRunsParallelScenarioAtOnce(t *testing.T) {
	r, rec := newTestRunner(t)
	const n = 4
	list := []scenario.Scenario{{Name: "many", Args: []string{"barrier", t.TempDir(), strconv.Itoa(n)}, Repeat: n,
		Parallel: true, Stream: true, Report: true, Timeout: "60s"}}
	pass, fail := r.suite(context.Background(), list)
	require.Equal(t, n, pass)
	require.Zero(t, fail)
	var console []string
	runs := map[int]bool{}
	for _, ev := range rec.events(t) {
		switch ev.Kind {
		case scenario.KindConsole:
			console = append(console, ev.Text)
		case scenario.KindResult:
			runs[ev.Result.Run] = ev.Result.Pass
		}
	}
	require.Equal(t, map[int]bool{1: true, 2: true, 3: true, 4: true}, runs)
	type rep struct {
		PID int `json:"pid"`
	}
	reps, err := scenario.ParseReports[rep](console)
	require.NoError(t, err)
	pids := map[int]bool{}
	for _, p := range reps {
		pids[p.PID] = true
	}
	require.Len(t, pids, n, "one report from each run")
}

// TestSuiteConcurrentGroup runs two scenarios that can only finish
// together (a FIFO's writer and reader) as a concurrent group between two
// ordinary ones: both pass, and the results come in schedule order.
func TestSuiteConcurrentGroup(t *testing.T) {
	r, rec := newTestRunner(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	list := []scenario.Scenario{
		{Name: "before", Args: []string{"boot"}},
		{Name: "writer", Args: []string{"fifo-write", fifo}, Concurrent: "meet", Timeout: "20s"},
		{Name: "after", Args: []string{"boot"}},
		{Name: "reader", Args: []string{"fifo-read", fifo}, Concurrent: "meet", Timeout: "20s"},
	}
	pass, fail := r.suite(context.Background(), list)
	var order []string
	for _, ev := range rec.events(t) {
		if ev.Kind == scenario.KindResult {
			order = append(order, ev.Result.Name)
			require.True(t, ev.Result.Pass, "%s: %s", ev.Result.Name, ev.Result.Reason)
		}
	}
	require.Equal(t, []string{"before", "writer", "reader", "after"}, order)
	require.Equal(t, 4, pass)
	require.Zero(t, fail)
}

func TestConsoleBounds(t *testing.T) {
	c := newConsole(time.Now(), "", nil)
	long := strings.Repeat("x", 3*maxLineBytes)
	_, err := c.Write([]byte(long + "\n"))
	require.NoError(t, err)
	require.Len(t, c.lines, 1)
	require.Len(t, c.lines[0].text, maxLineBytes)
	for i := range maxLogLines + 5 {
		_, err := fmt.Fprintf(c, "line %d\n", i)
		require.NoError(t, err)
	}
	require.Len(t, c.lines, maxLogLines)
	require.Equal(t, 6, c.dropped)
	require.Equal(t, fmt.Sprintf("line %d", maxLogLines+4), c.lines[maxLogLines-1].text)
	// Bytes split across writes join into one line; invalid UTF-8 is replaced.
	_, _ = c.Write([]byte("VMM-AGENT: st"))
	_, _ = c.Write([]byte("art\r\n\xff\n"))
	require.GreaterOrEqual(t, c.first, time.Duration(0))
	require.Equal(t, "?", c.lines[len(c.lines)-1].text)
}

func TestConsoleMark(t *testing.T) {
	c := newConsole(time.Now(), "GRUB menu", nil)
	_, _ = c.Write([]byte("SeaBIOS (version 1.16.2)\n"))
	require.Less(t, c.markAt, time.Duration(0), "mark seen before it was printed")
	_, _ = c.Write([]byte("\x1b[2J  GRUB menu\r\nGRUB menu\n"))
	first := c.markAt
	require.GreaterOrEqual(t, first, time.Duration(0))
	// Only the first appearance counts; an empty mark matches nothing.
	_, _ = c.Write([]byte("GRUB menu\n"))
	require.Equal(t, first, c.markAt)
	none := newConsole(time.Now(), "", nil)
	_, _ = none.Write([]byte("GRUB menu\n"))
	require.Less(t, none.markAt, time.Duration(0))
}

func FuzzConsole(f *testing.F) {
	f.Add([]byte("VMM-AGENT: start\r\nVMM-AGENT: check=boot result=pass detail=\"\"\n"), 3)
	f.Add([]byte("\xff\xfe\n\n\r"), 1)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		c := newConsole(time.Now(), "GRUB", func(string) {})
		if split <= 0 || split > len(data) {
			split = len(data)
		}
		_, _ = c.Write(data[:split])
		_, _ = c.Write(data[split:])
		c.flush()
		if len(c.lines) > maxLogLines {
			t.Fatalf("%d lines kept", len(c.lines))
		}
		for name, res := range c.checks {
			if res != scenario.Pass && res != scenario.Fail {
				t.Fatalf("check %q recorded result %q", name, res)
			}
		}
	})
}

func TestCheckKVMMissing(t *testing.T) {
	require.ErrorContains(t, checkKVM("/nonexistent/kvm"), "opening /nonexistent/kvm")
}

func TestKVMCheckReal(t *testing.T) {
	kvmtest.Require(t)
	require.NoError(t, checkKVM(kvmtest.Path))
}

func TestLineEmitterTruncates(t *testing.T) {
	var b strings.Builder
	e := &lineEmitter{w: &b, prefix: "<2>", maxLine: 10}
	e.emit("short")
	e.emit(strings.Repeat("x", 20))
	require.Equal(t, "<2>short\n<2>xxxxxxxxxx...\n", b.String())
}
