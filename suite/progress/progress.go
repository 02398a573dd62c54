// Package progress shows a `vmm test` run as it goes: a live bar on a
// terminal (running, passed, failed, elapsed, estimate), plain lines
// otherwise (CI logs). Both implement runner.Events.
package progress

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/vmmdev/vmm/suite"
	"github.com/vmmdev/vmm/suite/result"
)

// Plain writes one line per finished case.
type Plain struct {
	mu    sync.Mutex
	w     io.Writer
	total int
	done  int
}

// NewPlain reports to w on a run of total cases.
func NewPlain(w io.Writer, total int) *Plain { return &Plain{w: w, total: total} }

// Started is silent: a log reads best with one line per case.
func (p *Plain) Started(suite.Case) {}

// Finished writes the case's verdict line.
func (p *Plain) Finished(r result.Case) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	fmt.Fprintln(p.w, Line(r, p.done, p.total))
}

// Close does nothing; it matches Live.
func (p *Plain) Close() {}

// Line is a case's one-line verdict: "PASS [3/8] name (1.2s)", with the
// detail for a case that did not pass.
func Line(r result.Case, done, total int) string {
	s := fmt.Sprintf("%-5s [%d/%d] %s", verdictWord(r.Verdict), done, total, r.Name)
	if r.Verdict != result.Skipped {
		s += fmt.Sprintf(" (%s)", seconds(r.WallMS))
	}
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	return s
}

func verdictWord(v result.Verdict) string {
	switch v {
	case result.Pass:
		return "PASS"
	case result.Fail:
		return "FAIL"
	case result.Error:
		return "ERROR"
	case result.Interrupted:
		return "INTR"
	}
	return "SKIP"
}

func seconds(ms float64) string { return fmt.Sprintf("%.1fs", ms/1000) }

// Live is a progress bar that keeps itself current, with the lines of
// cases that did not pass printed above it.
type Live struct {
	mu      sync.Mutex
	w       io.Writer
	bar     *progressbar.ProgressBar
	total   int
	done    int
	running int
	counts  result.Counts
	stop    chan struct{}
	stopped sync.WaitGroup
}

// NewLive draws a bar on w (a terminal) for a run of total cases.
func NewLive(w io.Writer, total int) *Live {
	l := &Live{w: w, total: total, counts: result.Counts{}, stop: make(chan struct{})}
	l.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSetDescription(l.describe()),
	)
	// The elapsed time moves while cases run; the bar redraws only when told.
	l.stopped.Add(1)
	go func() {
		defer l.stopped.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.mu.Lock()
				l.bar.Describe(l.describe())
				l.mu.Unlock()
			case <-l.stop:
				return
			}
		}
	}()
	return l
}

// describe is the bar's text; called with l.mu held.
func (l *Live) describe() string {
	return fmt.Sprintf("running %d, passed %d, failed %d", l.running, l.counts[result.Pass],
		l.counts[result.Fail]+l.counts[result.Error])
}

// Started counts a running case.
func (l *Live) Started(suite.Case) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running++
	l.bar.Describe(l.describe())
}

// Finished moves the bar; a case that did not pass gets its line above it.
func (l *Live) Finished(r result.Case) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done++
	if r.Verdict != result.Skipped {
		l.running--
	}
	l.counts[r.Verdict]++
	if r.Verdict != result.Pass {
		_ = l.bar.Clear()
		fmt.Fprintln(l.w, Line(r, l.done, l.total))
	}
	_ = l.bar.Add(1)
	// After Add: Describe redraws, with the count and the text agreeing.
	l.bar.Describe(l.describe())
}

// Close stops the redraws and ends the bar's line.
func (l *Live) Close() {
	close(l.stop)
	l.stopped.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.bar.Exit()
	fmt.Fprintln(l.w)
}
