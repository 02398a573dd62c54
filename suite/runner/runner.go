// Package runner runs suite cases as child `vmm run` processes, up to a
// number at once, each in a directory of its own, and collects their
// results. Cancelling the context stops the running cases the way a user's
// Ctrl-C stops vmm run (SIGINT: the guest stops and the report is written),
// and the cases not yet started are skipped.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmmdev/vmm/suite"
	"github.com/vmmdev/vmm/suite/result"
)

// Events receive progress; they are called from several goroutines.
type Events interface {
	Started(c suite.Case)
	Finished(r result.Case)
}

// Options configure Run.
type Options struct {
	// Exe is the vmm binary; Env the children's environment (nil: ours).
	Exe string
	Env []string
	// Jobs is how many cases run at once (at least 1).
	Jobs int
	// Dir holds one directory per case.
	Dir string
	// Grace is how long a case may outlive its --timeout before it is
	// killed, and how long a stopped case has to write its report.
	Grace time.Duration
	// Events, if set, hears of each case starting and finishing.
	Events Events
	Log    *slog.Logger
}

// DefaultGrace is Options.Grace when zero.
const DefaultGrace = 30 * time.Second

// Run runs cases and returns their results in the order of cases, the
// skipped ones included when ctx was cancelled.
func Run(ctx context.Context, cases []suite.Case, opt Options) []result.Case {
	if opt.Jobs < 1 {
		opt.Jobs = 1
	}
	if opt.Grace <= 0 {
		opt.Grace = DefaultGrace
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	out := make([]result.Case, len(cases))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(opt.Jobs, len(cases)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = runCase(ctx, cases[i], opt)
				if opt.Events != nil {
					opt.Events.Finished(out[i])
				}
			}
		}()
	}
	i := 0
feed:
	for ; i < len(cases); i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	for ; i < len(cases); i++ {
		c := cases[i]
		out[i] = result.Case{Name: c.Name, Guest: c.Guest, Axes: c.Axes, Ablation: c.Ablation, Args: c.Args,
			ExpectedExit: c.Exit, Verdict: result.Skipped, Detail: "vmm test was interrupted before it started"}
		if opt.Events != nil {
			opt.Events.Finished(out[i])
		}
	}
	return out
}

// CaseDir is the directory of the case named name under dir: the name's
// components, with characters that are awkward in paths replaced.
func CaseDir(dir, name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		p = strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("._=,+-", r):
				return r
			}
			return '_'
		}, p)
		if p == "" || p == "." || p == ".." {
			p = strings.Repeat("_", len(p)+1)
		}
		parts[i] = p
	}
	return filepath.Join(append([]string{dir}, parts...)...)
}

func runCase(ctx context.Context, c suite.Case, opt Options) result.Case {
	dir := CaseDir(opt.Dir, c.Name)
	if ctx.Err() != nil {
		return result.Collect(c, dir, result.Outcome{Interrupted: true})
	}
	if opt.Events != nil {
		opt.Events.Started(c)
	}
	o := execCase(ctx, c, dir, opt)
	r := result.Collect(c, dir, o)
	opt.Log.Debug("case finished", "case", c.Name, "verdict", r.Verdict, "wall", o.Wall)
	return r
}

// clean empties a case directory of an earlier run's files, so a stale
// report cannot pass for this run's.
func clean(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []string{suite.ConsoleLog, suite.ReportFile, suite.HyperVTrace, result.VMMLog} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func execCase(ctx context.Context, c suite.Case, dir string, opt Options) result.Outcome {
	if err := clean(dir); err != nil {
		return result.Outcome{Err: fmt.Errorf("case directory: %w", err)}
	}
	log, err := os.Create(filepath.Join(dir, result.VMMLog))
	if err != nil {
		return result.Outcome{Err: fmt.Errorf("case directory: %w", err)}
	}
	defer log.Close()
	cmd := exec.Command(opt.Exe, c.RunArgs(dir)...)
	cmd.Env = opt.Env
	cmd.Stdout, cmd.Stderr = log, log
	// A process group of its own: a terminal's Ctrl-C reaches vmm test
	// alone, which stops each case once (a second SIGINT would make vmm
	// run exit without its report).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result.Outcome{Started: start, Err: fmt.Errorf("start vmm run: %w", err)}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var deadline <-chan time.Time
	if c.Timeout > 0 {
		t := time.NewTimer(c.Timeout + opt.Grace)
		defer t.Stop()
		deadline = t.C
	}
	o := result.Outcome{Started: start}
	select {
	case <-done:
	case <-ctx.Done():
		o.Interrupted = true
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(opt.Grace):
			_ = cmd.Process.Kill()
			<-done
		}
	case <-deadline:
		_ = cmd.Process.Kill()
		<-done
		o.Err = fmt.Errorf("vmm run outlived its --timeout %v by %v: killed", c.Timeout, opt.Grace)
	}
	o.Wall = time.Since(start)
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Exited() {
		code := ws.ExitStatus()
		o.Exit = &code
	}
	return o
}
