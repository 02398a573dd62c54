package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/suite"
	"github.com/vmmdev/vmm/suite/htmlreport"
	"github.com/vmmdev/vmm/suite/junit"
	"github.com/vmmdev/vmm/suite/progress"
	"github.com/vmmdev/vmm/suite/result"
	"github.com/vmmdev/vmm/suite/runner"
	"github.com/vmmdev/vmm/vmm"
)

// Exit codes of vmm test beyond vmm run's 0, 1, 2 and 130.
const (
	// exitCasesFailed: at least one case did not meet its expectation.
	exitCasesFailed = 9
)

// ResultsFile is the results JSON in every --out directory: the input of
// vmm test merge.
const resultsFile = "results.json"

const testUsage = `usage: vmm test SUITE [--jobs N] [--shard K/N] [--out DIR] [--junit FILE] [--json FILE] [--html FILE] [--list]
       vmm test merge [--junit FILE] [--json FILE] [--html FILE] OUT|RESULTS.json...

exit codes: 0 every case met its expectation   1 vmm test could not run or write results
  2 usage error or bad suite (nothing started)   9 a case did not meet its expectation
  130 interrupted (results so far are written)
`

// outputFlags are the result writers both commands have.
type outputFlags struct{ junit, json, html string }

func (o *outputFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&o.junit, "junit", "", "write JUnit XML to `FILE`")
	fs.StringVar(&o.json, "json", "", "write the results JSON to `FILE`")
	fs.StringVar(&o.html, "html", "", "write a self-contained HTML page to `FILE`")
}

// write writes the results in every form asked for.
func (o *outputFlags) write(r result.Run) error {
	if o.json != "" {
		if err := result.WriteJSON(o.json, r); err != nil {
			return err
		}
	}
	if o.junit != "" {
		if err := junit.WriteFile(o.junit, r); err != nil {
			return err
		}
	}
	if o.html != "" {
		if err := htmlreport.WriteFile(o.html, r); err != nil {
			return err
		}
	}
	return nil
}

// parseInterspersed parses flags that may come after positional arguments
// (vmm test SUITE --jobs 2), as people type them.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func usageError(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "vmm test: "+format+" (vmm test -h for usage)\n", args...)
	return vmm.ExitUsage
}

func cmdTest(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "merge" {
		return cmdMerge(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("vmm test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	jobs := fs.Int("jobs", 0, "cases run at once (0: from the host's CPUs and memory)")
	shardSpec := fs.String("shard", "1/1", "run the K-th of N shares of the cases (`K/N`)")
	out := fs.String("out", "", "directory for the case directories and results.json (default vmm-test-SUITENAME)")
	list := fs.Bool("list", false, "list the cases (of the shard) without running them")
	var o outputFlags
	o.register(fs)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, testUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	if len(pos) != 1 {
		return usageError(stderr, "want one suite file, got %d arguments", len(pos))
	}
	if *jobs < 0 {
		return usageError(stderr, "--jobs %d: want 1 or more (0: automatic)", *jobs)
	}
	shard, err := suite.ParseShard(*shardSpec)
	if err != nil {
		return usageError(stderr, "--shard: %v", err)
	}
	s, err := suite.Load(pos[0], runSchema(), checkRunArgs)
	if err != nil {
		fmt.Fprintf(stderr, "vmm test: %v\n", err)
		return vmm.ExitUsage
	}
	cases := shard.Select(s.Cases)
	if *list {
		for _, c := range cases {
			fmt.Fprintln(stdout, c.Name)
		}
		return 0
	}
	if *out == "" {
		*out = "vmm-test-" + s.Name
	}
	if *jobs == 0 {
		*jobs = defaultJobs(cases)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "vmm test: find the vmm binary: %v\n", err)
		return vmm.ExitError
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(stderr, "vmm test: --out: %v\n", err)
		return vmm.ExitError
	}
	outAbs, err := filepath.Abs(*out)
	if err != nil {
		fmt.Fprintf(stderr, "vmm test: --out: %v\n", err)
		return vmm.ExitError
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one ends vmm test at once.
		<-ctx.Done()
		stop()
	}()
	events := newEvents(stdout, stderr, len(cases))
	fmt.Fprintf(stdout, "vmm test: %s: %d of %d cases (shard %s), %d at once, in %s\n",
		s.Name, len(cases), len(s.Cases), shard, *jobs, outAbs)
	start := time.Now()
	results := runner.Run(ctx, cases, runner.Options{
		Exe: exe, Jobs: *jobs, Dir: outAbs, Events: events,
		Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	events.Close()
	run := result.Run{
		Version: result.Version, Suite: s.Name, File: s.File, Shards: []string{shard.String()},
		SuiteCases: len(s.Cases), Jobs: *jobs, StartedUnixNS: start.UnixNano(),
		WallMS: float64(time.Since(start)) / float64(time.Millisecond), Interrupted: ctx.Err() != nil,
		Cases: results,
	}
	code := finish(run, filepath.Join(outAbs, resultsFile), o, stdout, stderr)
	if run.Interrupted {
		return vmm.ExitInterrupted
	}
	return code
}

// finish writes the results and says how the run went; it returns the exit code.
func finish(run result.Run, resultsPath string, o outputFlags, stdout, stderr io.Writer) int {
	code := 0
	if resultsPath != "" {
		if err := result.WriteJSON(resultsPath, run); err != nil {
			fmt.Fprintf(stderr, "vmm test: %v\n", err)
			code = vmm.ExitError
		}
	}
	if err := o.write(run); err != nil {
		fmt.Fprintf(stderr, "vmm test: %v\n", err)
		code = vmm.ExitError
	}
	fmt.Fprintln(stdout, summary(run))
	if code == 0 && !run.OK() {
		code = exitCasesFailed
	}
	return code
}

// summary is the run's last line: verdicts, and vmm test's overhead (each
// case's process time beyond its guest's run, and the wall time against the
// sum of the cases' times).
func summary(r result.Run) string {
	c := r.Counts()
	caseMS, guestMS := r.Sums()
	s := fmt.Sprintf("vmm test: %s: %d cases: %d passed, %d failed, %d errors", r.Suite, len(r.Cases),
		c[result.Pass], c[result.Fail], c[result.Error])
	if n := c[result.Skipped] + c[result.Interrupted]; n > 0 {
		s += fmt.Sprintf(", %d interrupted or skipped", n)
	}
	s += fmt.Sprintf("; wall %.1fs, cases %.1fs, guests %.1fs", r.WallMS/1000, caseMS/1000, guestMS/1000)
	if ran := len(r.Cases) - c[result.Skipped]; ran > 0 {
		s += fmt.Sprintf(", overhead %.0f ms per case", (caseMS-guestMS)/float64(ran))
	}
	return s
}

type events interface {
	runner.Events
	Close()
}

// newEvents is a live display on a terminal, plain lines otherwise.
func newEvents(stdout, stderr io.Writer, total int) events {
	if f, ok := stderr.(*os.File); ok && isTerminal(f) && os.Getenv("CI") == "" {
		return progress.NewLive(stderr, total)
	}
	return progress.NewPlain(stdout, total)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// defaultJobs is one case per host CPU, as far as the largest guest's RAM
// (plus vmm's own) fits into available memory.
func defaultJobs(cases []suite.Case) int {
	var largest uint64 = vmm.DefaultMemory
	for _, c := range cases {
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--memory="); ok {
				if n, err := parseSize(v); err == nil {
					largest = max(largest, n)
				}
			}
		}
	}
	return runner.DefaultJobs(runtime.NumCPU(), runner.AvailableMemory(), largest+runner.CaseOverhead)
}

func cmdMerge(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmm test merge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o outputFlags
	o.register(fs)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, testUsage)
		return 0
	}
	if err != nil {
		return usageError(stderr, "merge: %v", err)
	}
	if len(pos) == 0 {
		return usageError(stderr, "merge: name the shards' --out directories or results files")
	}
	var runs []result.Run
	for _, p := range pos {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			p = filepath.Join(p, resultsFile)
		}
		r, err := result.ReadJSON(p)
		if err != nil {
			fmt.Fprintf(stderr, "vmm test merge: %v\n", err)
			return vmm.ExitError
		}
		runs = append(runs, r)
	}
	merged, err := result.Merge(runs)
	if err != nil && !errors.Is(err, result.ErrIncomplete) {
		fmt.Fprintf(stderr, "vmm test merge: %v\n", err)
		return vmm.ExitError
	}
	code := finish(merged, "", o, stdout, stderr)
	if err != nil {
		// Written anyway, so people can see what there is; but a missing
		// shard must not pass.
		fmt.Fprintf(stderr, "vmm test merge: %v\n", err)
		return vmm.ExitError
	}
	return code
}
