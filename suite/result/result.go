// Package result holds what `vmm test` found: one Case per suite case and a
// Run around them, their JSON form (--json, the input of `vmm test merge`),
// the merge of shard results, and what is read back from a case's directory
// (the vmm run report, the console log).
package result

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/vmmdev/vmm/suite"
)

// Version is the version of the JSON shape; it changes when a field changes
// meaning or disappears.
const Version = 1

// Verdict is a case's outcome.
type Verdict string

const (
	// Pass: vmm run exited with the expected code.
	Pass Verdict = "pass"
	// Fail: vmm run exited with another code.
	Fail Verdict = "fail"
	// Error: vmm run could not run the case (exit 1 where not expected, a
	// child that could not start or had to be killed).
	Error Verdict = "error"
	// Interrupted: vmm test was interrupted while the case ran.
	Interrupted Verdict = "interrupted"
	// Skipped: vmm test was interrupted before the case started.
	Skipped Verdict = "skipped"
)

// Case is one case's result.
type Case struct {
	Name     string            `json:"name"`
	Guest    string            `json:"guest"`
	Axes     []suite.AxisValue `json:"axes,omitempty"`
	Ablation *suite.Ablation   `json:"ablation,omitempty"`
	// Args are the case's vmm run flags (without its output files).
	Args    []string `json:"args"`
	Verdict Verdict  `json:"verdict"`
	// Detail says why a case did not pass, in one line.
	Detail       string `json:"detail,omitempty"`
	ExpectedExit int    `json:"expected_exit"`
	// Exit is vmm run's exit code; null when it did not run or was killed.
	Exit *int `json:"exit_code"`
	// StopReason and StopDetail are the report's stop.reason and stop.detail.
	StopReason string `json:"stop_reason,omitempty"`
	StopDetail string `json:"stop_detail,omitempty"`
	// Dir is the case's directory (console log, report, Hyper-V trace).
	Dir           string `json:"dir,omitempty"`
	StartedUnixNS int64  `json:"started_unix_ns,omitempty"`
	// WallMS is the vmm run process's wall time; GuestMS the report's
	// wall_ms (the guest's run); MatchMS the time to the --expect/--fail
	// line, FirstByteMS to the first console byte (null: never).
	WallMS      float64  `json:"wall_ms"`
	GuestMS     float64  `json:"guest_ms"`
	MatchMS     *float64 `json:"match_ms"`
	FirstByteMS *float64 `json:"first_console_byte_ms"`
	// Clocksource and Clockevent are what the guest's console said it
	// used (Linux's "Switched to clocksource", the agent's check lines).
	Clocksource string `json:"clocksource,omitempty"`
	Clockevent  string `json:"clockevent,omitempty"`
	// HyperV is what the guest used of Hyper-V (from the report's summary).
	HyperV *HyperVUse `json:"hyperv,omitempty"`
	// ConsoleTail is the end of the console log (and of vmm's own output),
	// for cases that did not pass.
	ConsoleTail string `json:"console_tail,omitempty"`
}

// HyperVUse lists the synthetic MSRs and hypercalls a guest used.
type HyperVUse struct {
	Features   string   `json:"features"`
	MSRs       []string `json:"msrs"`
	Hypercalls []string `json:"hypercalls"`
}

// Run is one `vmm test` run: a suite, or a shard of it, or merged shards.
type Run struct {
	Version int    `json:"version"`
	Suite   string `json:"suite"`
	File    string `json:"file"`
	// Shards are the shards this run holds ("1/1" for a whole suite).
	Shards []string `json:"shards"`
	// SuiteCases is how many cases the whole suite has.
	SuiteCases    int     `json:"suite_cases"`
	Jobs          int     `json:"jobs,omitempty"`
	StartedUnixNS int64   `json:"started_unix_ns"`
	WallMS        float64 `json:"wall_ms"`
	Interrupted   bool    `json:"interrupted,omitempty"`
	Cases         []Case  `json:"cases"`
}

// Counts are cases by verdict.
type Counts map[Verdict]int

// Counts counts r's cases by verdict.
func (r Run) Counts() Counts {
	c := Counts{}
	for _, k := range r.Cases {
		c[k.Verdict]++
	}
	return c
}

// OK reports whether every case passed.
func (r Run) OK() bool {
	for _, c := range r.Cases {
		if c.Verdict != Pass {
			return false
		}
	}
	return !r.Interrupted
}

// Sums are the run's total case and guest times, in milliseconds.
func (r Run) Sums() (caseMS, guestMS float64) {
	for _, c := range r.Cases {
		caseMS += c.WallMS
		guestMS += c.GuestMS
	}
	return caseMS, guestMS
}

// Elapsed is the run's wall time.
func (r Run) Elapsed() time.Duration { return time.Duration(r.WallMS * float64(time.Millisecond)) }

// Sentinel errors of Merge and Read.
var (
	// ErrMismatch: results of different suites.
	ErrMismatch = errors.New("results of different suites")
	// ErrDuplicate: a case or shard appears twice.
	ErrDuplicate = errors.New("duplicate")
	// ErrIncomplete: the merged results lack cases of the suite (a shard
	// is missing or was interrupted).
	ErrIncomplete = errors.New("incomplete results")
	// ErrFormat: not a result file of this version.
	ErrFormat = errors.New("not a vmm test result file")
)

// Merge combines the results of shards into one run, cases in name order.
// The merged run is returned even with ErrIncomplete, so that what there is
// can still be written.
func Merge(runs []Run) (Run, error) {
	if len(runs) == 0 {
		return Run{}, fmt.Errorf("%w: nothing to merge", ErrIncomplete)
	}
	out := Run{Version: Version, Suite: runs[0].Suite, File: runs[0].File, SuiteCases: runs[0].SuiteCases}
	seen := map[string]string{}
	var end float64
	for _, r := range runs {
		if r.Suite != out.Suite || r.SuiteCases != out.SuiteCases {
			return Run{}, fmt.Errorf("%w: %q (%d cases) and %q (%d cases)", ErrMismatch, out.Suite, out.SuiteCases, r.Suite, r.SuiteCases)
		}
		for _, s := range r.Shards {
			if slices.Contains(out.Shards, s) {
				return Run{}, fmt.Errorf("%w shard %s", ErrDuplicate, s)
			}
			out.Shards = append(out.Shards, s)
		}
		for _, c := range r.Cases {
			if prev, dup := seen[c.Name]; dup {
				return Run{}, fmt.Errorf("%w case %q (shards %s and %v)", ErrDuplicate, c.Name, prev, r.Shards)
			}
			seen[c.Name] = fmt.Sprint(r.Shards)
			out.Cases = append(out.Cases, c)
		}
		if out.StartedUnixNS == 0 || (r.StartedUnixNS != 0 && r.StartedUnixNS < out.StartedUnixNS) {
			out.StartedUnixNS = r.StartedUnixNS
		}
		end = max(end, float64(r.StartedUnixNS)/1e6+r.WallMS)
		out.Interrupted = out.Interrupted || r.Interrupted
		out.Jobs = max(out.Jobs, r.Jobs)
	}
	// Shards may run one after another or side by side: the merged wall
	// time is from the first start to the last end.
	out.WallMS = end - float64(out.StartedUnixNS)/1e6
	slices.Sort(out.Shards)
	slices.SortFunc(out.Cases, func(a, b Case) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	if len(out.Cases) != out.SuiteCases {
		return out, fmt.Errorf("%w: %d of the suite's %d cases (shards %v)", ErrIncomplete, len(out.Cases), out.SuiteCases, out.Shards)
	}
	return out, nil
}

// WriteJSON writes r to path.
func WriteJSON(path string, r Run) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// ReadJSON reads a result file written by WriteJSON.
func ReadJSON(path string) (Run, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Run{}, fmt.Errorf("read results: %w", err)
	}
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return Run{}, fmt.Errorf("%s: %w: %w", path, ErrFormat, err)
	}
	if r.Version != Version {
		return Run{}, fmt.Errorf("%s: %w: version %d, want %d", path, ErrFormat, r.Version, Version)
	}
	return r, nil
}
