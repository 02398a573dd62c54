// Package scenario is the protocol between the host-side e2e tools and the
// outer init of the nested test host: the scenario list the init reads from
// /scenarios.json and the "E2E:" lines it prints on its console. Both sides
// use this package so the format has one definition.
package scenario

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// Runners a scenario can name.
const (
	RunnerVMM  = "vmm"
	RunnerQEMU = "qemu"
	// RunnerExec is the runner of a Job's result line, not a scenario's.
	RunnerExec = "exec"
)

// Check results as the guest agent reports them.
const (
	Pass = "pass"
	Fail = "fail"
)

// DefaultTimeout bounds a scenario that names no timeout.
const DefaultTimeout = 120 * time.Second

// ErrInvalid is returned (wrapped) for a scenario list that cannot be run.
var ErrInvalid = errors.New("invalid scenario")

// Scenario is one inner VMM invocation and what it must produce.
type Scenario struct {
	Name string `json:"name"`
	// Runner is "vmm" (the default) or "qemu".
	Runner string `json:"runner,omitempty"`
	// Args are the runner's arguments, e.g. ["run", "--kernel", "/guest/vmlinuz", ...].
	Args []string `json:"args"`
	// WantExit is the runner's expected exit status.
	WantExit int `json:"want_exit"`
	// WantChecks maps agent check names to the result they must report.
	WantChecks map[string]string `json:"want_checks,omitempty"`
	// Timeout is a Go duration string; DefaultTimeout when empty.
	Timeout string `json:"timeout,omitempty"`
	// Repeat runs the scenario this many times (at least once).
	Repeat int `json:"repeat,omitempty"`
	// Bench scenarios run after the others, interleaved round-robin so that
	// runners being compared see the same machine load.
	Bench bool `json:"bench,omitempty"`
	// Parallel starts every one of the Repeat runs at once rather than one
	// after another (many guests in one outer machine); the scenario's
	// timeout bounds each run, as ever. Not for bench scenarios, whose
	// runners alternate, nor with Disks or a Tap, which one run owns.
	Parallel bool `json:"parallel,omitempty"`
	// Stream prints the runner's console live as "E2E-CON" lines.
	Stream bool `json:"stream,omitempty"`
	// Mark is a console text whose first appearance the outer init times
	// (Result.MarkS), e.g. a boot loader's menu line the benchmark measures
	// to; none when empty.
	Mark string `json:"mark,omitempty"`
	// KillOnMark has the outer init SIGKILL the runner's process group the
	// moment Mark appears, as a host crash would end it; the run then ends
	// with ExitNone, which WantExit must be. A durability test: what the
	// guest was told was durable before Mark must be in its Disks after.
	KillOnMark bool `json:"kill_on_mark,omitempty"`
	// TermOnMark has the outer init send SIGTERM to the runner (vmm
	// itself) the moment Mark appears, as a user or service manager
	// stopping it; the run's exit is then vmm's answer to the signal.
	TermOnMark bool `json:"term_on_mark,omitempty"`
	// Report has a vmm run write its --report JSON, which the outer init
	// prints after the run as console lines starting ReportPrefix (so the
	// scenario must stream); ParseReports collects them.
	Report bool `json:"report,omitempty"`
	// SampleMemoryMiB, when positive, has the outer init follow the
	// runner's memory while it runs (/proc/PID/smaps, every
	// MemorySampleInterval): its guest RAM, the largest writable anonymous
	// mapping of at least this many MiB, apart from the rest. It prints the
	// figures after the run as a console line starting MemoryPrefix (so the
	// scenario must stream); ParseMemory collects them.
	SampleMemoryMiB int `json:"sample_memory_mib,omitempty"`
	// Disks and Tap are set up by the outer init around the run (devices.go).
	Disks []Disk `json:"disks,omitempty"`
	Tap   *Tap   `json:"tap,omitempty"`
	// Files are written by the outer init before the run and removed after
	// it (path under /tmp -> content), e.g. a cloud-init seed directory.
	Files map[string]string `json:"files,omitempty"`
	// Blobs are Files whose content need not be text (a guest kernel the
	// benchmark builds); JSON carries them in base64.
	Blobs map[string][]byte `json:"blobs,omitempty"`
	// Concurrent names a group: the scenarios that share it run at the
	// same time, each its own runner process, where the first of them
	// would run (several guests booting one base image at once). They run
	// once, not as benchmarks, with no tap and no file or disk path in
	// common.
	Concurrent string `json:"concurrent,omitempty"`
}

// maxMarkBytes bounds Mark: it is looked for in every console line.
const maxMarkBytes = 200

// ReportPrefix starts each console line that carries a line of a run's
// --report JSON (Scenario.Report).
const ReportPrefix = "VMM-REPORT: "

// ParseReports decodes every report a streamed console carries, in order
// (one per run).
func ParseReports[T any](console []string) ([]T, error) {
	return parsePrefixed[T](console, ReportPrefix)
}

// MemoryPrefix starts the console line with a run's memory figures
// (Scenario.SampleMemoryMiB).
const MemoryPrefix = "VMM-MEMORY: "

// MemorySampleInterval is how often the outer init samples a runner's
// memory (Scenario.SampleMemoryMiB).
const MemorySampleInterval = 200 * time.Millisecond

// Memory is a runner's memory as the outer init sampled it, in KiB: the
// most of its own (everything resident but its guest RAM, smaps Rss) at
// once, its guest RAM resident at the last sample and the most at once, and
// the most at once of each part of its own: anonymous pages (heap, stacks,
// copied-on-write data: what only this process holds), file-backed pages
// (its binary and libraries, in the page cache and shared with every
// process mapping them), its page tables (VmPTE, guest RAM's included) and
// its proportional share (Pss, shared pages divided among their mappers).
// PerGuestPeakKiB is the most at once of anonymous plus page tables: what
// one more guest costs the host, its file pages being in memory already
// (docs/report.md).
type Memory struct {
	OwnPeakKiB        uint64 `json:"own_peak_kib"`
	GuestKiB          uint64 `json:"guest_kib"`
	GuestPeakKiB      uint64 `json:"guest_peak_kib"`
	AnonPeakKiB       uint64 `json:"anon_peak_kib"`
	FilePeakKiB       uint64 `json:"file_peak_kib"`
	FileDirtyPeakKiB  uint64 `json:"file_dirty_peak_kib"`
	PageTablesPeakKiB uint64 `json:"page_tables_peak_kib"`
	PssPeakKiB        uint64 `json:"pss_peak_kib"`
	PerGuestPeakKiB   uint64 `json:"per_guest_peak_kib"`
	Samples           int    `json:"samples"`
}

// ParseMemory decodes every run's memory figures a streamed console
// carries, in order.
func ParseMemory(console []string) ([]Memory, error) {
	return parsePrefixed[Memory](console, MemoryPrefix)
}

// parsePrefixed decodes the JSON values carried by the console lines that
// hold prefix, in order.
func parsePrefixed[T any](console []string, prefix string) ([]T, error) {
	var data []byte
	for _, l := range console {
		if _, after, ok := strings.Cut(l, prefix); ok {
			data = append(append(data, after...), '\n')
		}
	}
	var out []T
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var v T
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("decoding report %d: %w", len(out)+1, err)
		}
		out = append(out, v)
	}
}

// namePattern keeps names safe to embed unquoted in E2E lines and test names.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Runs is how many times the scenario runs.
func (s Scenario) Runs() int {
	if s.Repeat < 1 {
		return 1
	}
	return s.Repeat
}

// RunnerName is the runner with the default applied.
func (s Scenario) RunnerName() string {
	if s.Runner == "" {
		return RunnerVMM
	}
	return s.Runner
}

// Deadline is the scenario's timeout with the default applied.
func (s Scenario) Deadline() (time.Duration, error) {
	if s.Timeout == "" {
		return DefaultTimeout, nil
	}
	d, err := time.ParseDuration(s.Timeout)
	if err != nil {
		return 0, fmt.Errorf("%w: scenario %q: timeout: %w", ErrInvalid, s.Name, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%w: scenario %q: timeout %s is not positive", ErrInvalid, s.Name, d)
	}
	return d, nil
}

// Validate reports the first problem that would stop the scenario from running.
func (s Scenario) Validate() error {
	if !namePattern.MatchString(s.Name) {
		return fmt.Errorf("%w: name %q must match %s", ErrInvalid, s.Name, namePattern)
	}
	switch s.RunnerName() {
	case RunnerVMM, RunnerQEMU:
	default:
		return fmt.Errorf("%w: scenario %q: unknown runner %q", ErrInvalid, s.Name, s.Runner)
	}
	if len(s.Args) == 0 {
		return fmt.Errorf("%w: scenario %q: no args", ErrInvalid, s.Name)
	}
	if s.Repeat < 0 || s.Repeat > 1000 {
		return fmt.Errorf("%w: scenario %q: repeat %d out of range", ErrInvalid, s.Name, s.Repeat)
	}
	for name, want := range s.WantChecks {
		if want != Pass && want != Fail {
			return fmt.Errorf("%w: scenario %q: check %q: want %q, not pass or fail", ErrInvalid, s.Name, name, want)
		}
	}
	if len(s.Mark) > maxMarkBytes {
		return fmt.Errorf("%w: scenario %q: mark longer than %d bytes", ErrInvalid, s.Name, maxMarkBytes)
	}
	if s.KillOnMark && (s.Mark == "" || s.WantExit != ExitNone) {
		return fmt.Errorf("%w: scenario %q: kill on mark needs a mark and want_exit %d", ErrInvalid, s.Name, ExitNone)
	}
	if s.TermOnMark && (s.Mark == "" || s.KillOnMark) {
		return fmt.Errorf("%w: scenario %q: term on mark needs a mark and no kill on mark", ErrInvalid, s.Name)
	}
	if s.Report && (s.RunnerName() != RunnerVMM || !s.Stream) {
		return fmt.Errorf("%w: scenario %q: a report needs the vmm runner and a streamed console", ErrInvalid, s.Name)
	}
	if s.SampleMemoryMiB < 0 || (s.SampleMemoryMiB > 0 && !s.Stream) {
		return fmt.Errorf("%w: scenario %q: memory sampling needs a positive size and a streamed console", ErrInvalid, s.Name)
	}
	if s.Parallel && (s.Bench || len(s.Disks) > 0 || s.Tap != nil) {
		return fmt.Errorf("%w: scenario %q: parallel runs cannot be bench runs or share disks or a tap", ErrInvalid, s.Name)
	}
	if s.Concurrent != "" && (!namePattern.MatchString(s.Concurrent) || s.Runs() != 1 || s.Bench || s.Tap != nil) {
		return fmt.Errorf("%w: scenario %q: concurrent group %q: a name, one run, no bench, no tap", ErrInvalid, s.Name, s.Concurrent)
	}
	if err := s.validateDevices(); err != nil {
		return err
	}
	_, err := s.Deadline()
	return err
}

// Parse decodes and validates a scenario list; names must be unique.
func Parse(data []byte) ([]Scenario, error) {
	var list []Scenario
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("%w: decoding scenario list: %w", ErrInvalid, err)
	}
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("%w: duplicate scenario name %q", ErrInvalid, s.Name)
		}
		seen[s.Name] = true
	}
	if err := validateGroups(list); err != nil {
		return nil, err
	}
	return list, nil
}

// validateGroups checks that every concurrent group has two scenarios or
// more and that its members' files and disks are apart: each member's are
// set up and removed around its own run.
func validateGroups(list []Scenario) error {
	members := map[string]int{}
	paths := map[string]map[string]string{} // group -> path -> scenario
	for _, s := range list {
		if s.Concurrent == "" {
			continue
		}
		members[s.Concurrent]++
		if paths[s.Concurrent] == nil {
			paths[s.Concurrent] = map[string]string{}
		}
		own := make([]string, 0, len(s.Files)+len(s.Disks))
		for p := range s.Files {
			own = append(own, p)
		}
		for _, d := range s.Disks {
			own = append(own, d.Path)
		}
		for _, p := range own {
			for q, other := range paths[s.Concurrent] {
				if other != s.Name && (p == q || strings.HasPrefix(p, q+"/") || strings.HasPrefix(q, p+"/")) {
					return fmt.Errorf("%w: scenarios %q and %q run concurrently and both use %s", ErrInvalid, other, s.Name, p)
				}
			}
		}
		for _, p := range own {
			paths[s.Concurrent][p] = s.Name
		}
	}
	for g, n := range members {
		if n < 2 {
			return fmt.Errorf("%w: concurrent group %q has one scenario", ErrInvalid, g)
		}
	}
	return nil
}

// Encode validates a scenario list and renders it as /scenarios.json.
func Encode(list []Scenario) ([]byte, error) {
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding scenario list: %w", err)
	}
	if _, err := Parse(data); err != nil {
		return nil, err
	}
	return data, nil
}

// Batches splits a schedule into what runs at once: a concurrent group's
// adjacent runs together, all the repeats of a Parallel scenario together
// (Schedule keeps both adjacent), every other run alone.
func Batches(runs []Run) [][]Run {
	var out [][]Run
	for i := 0; i < len(runs); {
		j := i + 1
		for j < len(runs) && together(runs[i].Scenario, runs[j].Scenario) {
			j++
		}
		out = append(out, runs[i:j])
		i = j
	}
	return out
}

// together says whether run b goes with a batch that starts with run a.
func together(a, b Scenario) bool {
	if a.Concurrent != "" {
		return b.Concurrent == a.Concurrent
	}
	return a.Parallel && b.Name == a.Name
}

// Run is one execution of a scenario in the order the outer init runs them.
type Run struct {
	Scenario Scenario
	// Index counts from 1 within the scenario's repeats.
	Index int
}

// Schedule orders the runs: ordinary scenarios first, each repeated in place
// (a concurrent group's members adjacent, where the first of them is), then
// the bench scenarios round-robin (a1 b1 a2 b2 ...) so that compared runners
// alternate.
func Schedule(list []Scenario) []Run {
	var runs []Run
	maxBench := 0
	grouped := map[string]bool{}
	for _, s := range list {
		if s.Bench {
			maxBench = max(maxBench, s.Runs())
			continue
		}
		if g := s.Concurrent; g != "" {
			// The whole group at its first member's place, adjacent.
			if !grouped[g] {
				grouped[g] = true
				for _, m := range list {
					if m.Concurrent == g {
						runs = append(runs, Run{Scenario: m, Index: 1})
					}
				}
			}
			continue
		}
		for i := 1; i <= s.Runs(); i++ {
			runs = append(runs, Run{Scenario: s, Index: i})
		}
	}
	for i := 1; i <= maxBench; i++ {
		for _, s := range list {
			if s.Bench && i <= s.Runs() {
				runs = append(runs, Run{Scenario: s, Index: i})
			}
		}
	}
	return runs
}
