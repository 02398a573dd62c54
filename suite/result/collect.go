package result

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vmmdev/vmm/suite"
	"github.com/vmmdev/vmm/vmm"
	"github.com/vmmdev/vmm/vmm/hyperv"
)

// VMMLog is the file in a case's directory that holds vmm run's own stdout
// and stderr.
const VMMLog = "vmm.log"

// Outcome is how a case's vmm run process ended, as the runner saw it.
type Outcome struct {
	Started time.Time
	Wall    time.Duration
	// Exit is the exit code; nil when the process did not exit by itself.
	Exit *int
	// Interrupted: vmm test stopped the case (SIGINT).
	Interrupted bool
	// Err is why the runner could not run or had to kill the case.
	Err error
}

// How much of the console a failed case carries.
const (
	tailBytes = 4 << 10
	tailLines = 40
)

// Collect builds a case's result from its outcome and the files in dir.
func Collect(c suite.Case, dir string, o Outcome) Case {
	r := Case{
		Name: c.Name, Guest: c.Guest, Axes: c.Axes, Ablation: c.Ablation, Args: c.Args,
		ExpectedExit: c.Exit, Exit: o.Exit, Dir: dir,
		WallMS: ms(o.Wall),
	}
	if !o.Started.IsZero() {
		r.StartedUnixNS = o.Started.UnixNano()
	}
	var rep vmm.Report
	repErr := readReport(filepath.Join(dir, suite.ReportFile), &rep)
	if repErr == nil {
		r.StopReason, r.StopDetail = rep.Stop.Reason, rep.Stop.Detail
		r.GuestMS = rep.Timing.WallMS
		r.MatchMS, r.FirstByteMS = rep.Timing.MatchMS, rep.Timing.FirstConsoleByteMS
		r.HyperV = hypervUse(rep.HyperV)
	}
	console, _ := tail(filepath.Join(dir, suite.ConsoleLog), 1<<20)
	r.Clocksource, r.Clockevent = clocks(console)

	switch {
	case o.Err != nil:
		r.Verdict, r.Detail = Error, o.Err.Error()
	case o.Interrupted:
		r.Verdict, r.Detail = Interrupted, "vmm test was interrupted"
	case o.Exit == nil:
		r.Verdict, r.Detail = Error, "vmm run did not exit"
	case *o.Exit == c.Exit:
		r.Verdict = Pass
	case *o.Exit == vmm.ExitError:
		r.Verdict, r.Detail = Error, fmt.Sprintf("vmm run failed (exit 1), expected exit %d", c.Exit)
	default:
		r.Verdict, r.Detail = Fail, fmt.Sprintf("exit %d, expected %d", *o.Exit, c.Exit)
	}
	if r.Verdict != Pass {
		if r.StopReason != "" {
			r.Detail += fmt.Sprintf(" (%s", r.StopReason)
			if r.StopDetail != "" {
				r.Detail += ": " + firstLine(r.StopDetail)
			}
			r.Detail += ")"
		} else if repErr != nil && o.Exit != nil {
			r.Detail += " (no report: " + repErr.Error() + ")"
		}
		r.ConsoleTail = lastLines(console, tailBytes, tailLines)
		if log, _ := tail(filepath.Join(dir, VMMLog), tailBytes); strings.TrimSpace(log) != "" {
			r.ConsoleTail += "\n--- vmm run's output ---\n" + lastLines(log, tailBytes, tailLines)
		}
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func readReport(path string, rep *vmm.Report) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read report: %w", err)
	}
	if err := json.Unmarshal(data, rep); err != nil {
		return fmt.Errorf("decode report %s: %w", path, err)
	}
	return nil
}

// hypervUse lists the MSRs and hypercalls of a report's Hyper-V summary.
func hypervUse(summary any) *HyperVUse {
	if summary == nil {
		return nil
	}
	data, err := json.Marshal(summary)
	if err != nil {
		return nil
	}
	var s hyperv.Summary
	if json.Unmarshal(data, &s) != nil {
		return nil
	}
	u := &HyperVUse{Features: s.Features, MSRs: s.SortedMSRNames(), Hypercalls: []string{}}
	for k := range s.Hypercalls {
		u.Hypercalls = append(u.Hypercalls, k)
	}
	slices.Sort(u.Hypercalls)
	if u.MSRs == nil {
		u.MSRs = []string{}
	}
	return u
}

// tail reads up to the last n bytes of a file.
func tail(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if fi.Size() > n {
		if _, err := f.Seek(fi.Size()-n, io.SeekStart); err != nil {
			return "", err
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, n))
	return string(data), err
}

// lastLines is the end of s: at most n bytes and lines lines, whole lines
// where it can.
func lastLines(s string, n, lines int) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\r", ""), "?")
	if len(s) > n {
		s = s[len(s)-n:]
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:]
		}
	}
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

var (
	// Linux: "clocksource: Switched to clocksource hyperv_clocksource_tsc_page";
	// the agent's check lines: "clocksource=tsc", and its clocksource
	// check's "current=kvm-clock" (quiet guests print no kernel line).
	clocksourceRE = regexp.MustCompile(`(?:Switched to clocksource |\bclocksource=|check=clocksource result=\w+ detail="current=)([A-Za-z0-9_.-]+)`)
	// The agent: clockevents=["Hyper-V clockevent" "lapic"] (one per CPU) or
	// clockevent=NAME.
	clockeventRE = regexp.MustCompile(`\bclockevents?=(\[[^\]]*\]|"[^"]*"|\S+)`)
	quotedRE     = regexp.MustCompile(`"([^"]*)"`)
)

// clocks finds the guest's last-reported clocksource and clockevent
// device(s) in its console output.
func clocks(console string) (clocksource, clockevent string) {
	if m := clocksourceRE.FindAllStringSubmatch(console, -1); m != nil {
		clocksource = m[len(m)-1][1]
	}
	if m := clockeventRE.FindAllStringSubmatch(console, -1); m != nil {
		// The agent quotes its detail, so names inside come as \"NAME\".
		v := strings.ReplaceAll(m[len(m)-1][1], `\"`, `"`)
		var names []string
		if q := quotedRE.FindAllStringSubmatch(v, -1); q != nil {
			for _, n := range q {
				if !slices.Contains(names, n[1]) {
					names = append(names, n[1])
				}
			}
		} else {
			names = []string{strings.Trim(v, "[]")}
		}
		clockevent = strings.Join(names, ", ")
	}
	return clocksource, clockevent
}
