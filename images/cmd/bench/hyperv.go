package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The Hyper-V benchmark (-hyperv), for vmm --hyperv all and QEMU with the
// equivalent hv-* flags (in-kernel Hyper-V) in the same outer boot:
//   - tscpage: one guest clock read (the vDSO reading the reference TSC
//     page, no exit), from the clock-cost check;
//   - MSR reads through /dev/cpu/0/msr, from the msr-cost check: FS_BASE
//     (passed through, no exit: the driver's own cost), APIC_BASE (an exit
//     handled in the host kernel) and HV_X64_MSR_TIME_REF_COUNT (an exit to
//     whoever emulates Hyper-V: vmm in userspace, KVM for QEMU).
//
// Linux 6.1 registers the MSR clocksource only when the TSC page is not
// offered, so the TIME_REF_COUNT read through the msr driver stands in for
// the MSR clocksource's cost; hvmsr minus noexit is the round trip of one
// emulated MSR access.
const (
	clockCheck = "clock-cost"
	msrCheck   = "msr-cost"
)

// hvScenario is the one scenario per runner.
const hvScenario = "hvclock"

// noSTimer is a third column: vmm with every enlightenment but the
// synthetic timers, so that Linux ticks on the in-kernel LAPIC timer. Each
// guest tick otherwise costs vmm an MSR exit to userspace and a host timer
// on another thread; the column shows how much of vmm's gap that is.
const (
	noSTimer         = "vmm-nostimer"
	noSTimerFeatures = "all,stimer-direct=off,stimer=off"
)

// msrClock is a fourth column: vmm with every enlightenment but the
// reference TSC page, so that Linux registers the MSR clocksource and the
// clock-cost check times clock_gettime through it (a system call and a
// TIME_REF_COUNT exit to vmm per read). QEMU has no such column: its
// hv-time always brings the TSC page.
const (
	msrClock         = "vmm-msrclock"
	msrClockFeatures = "all,tsc-page=off"
	msrClocksource   = "hyperv_clocksource_msr"
	tscClocksource   = "hyperv_clocksource_tsc_page"
)

// hvColumns are the measured columns: the runners, and noSTimer and
// msrClock when vmm is one of them.
func hvColumns(runners []string) []string {
	cols := slices.Clone(runners)
	if slices.Contains(runners, scenario.RunnerVMM) {
		cols = append(cols, noSTimer, msrClock)
	}
	return cols
}

// columnFeatures is the --hyperv list of a vmm column other than the
// runner's own ("all"), or "".
func columnFeatures(col string) string {
	switch col {
	case noSTimer:
		return noSTimerFeatures
	case msrClock:
		return msrClockFeatures
	}
	return ""
}

// hvRepeat bounds the runs per runner: each run already takes several
// batches of each figure.
const hvRepeat = 3

// hvFigures are the figures, in the order printed, with where they come
// from (check and detail key) and what they are.
// A figure with a col comes from that column only; the others from every
// column but msrClock.
var hvFigures = []struct{ name, check, key, col, about string }{
	{"tscpage", clockCheck, "read_ns", "", "clock_gettime through the reference TSC page (no exit)"},
	{"msr-noexit", msrCheck, "noexit_ns", "", "rdmsr FS_BASE via /dev/cpu/0/msr (passed through: the driver's cost)"},
	{"msr-kvm", msrCheck, "kvmexit_ns", "", "rdmsr APIC_BASE via the driver (exit handled by the host kernel)"},
	{"msr-hv", msrCheck, "hvmsr_ns", "", "rdmsr HV_X64_MSR_TIME_REF_COUNT via the driver (vmm: userspace exit; QEMU: in-kernel)"},
	{"msrclock", clockCheck, "read_ns", msrClock, "clock_gettime through the MSR clocksource (vmm --hyperv " + msrClockFeatures + ")"},
}

// figureFrom reports whether column col gives a figure whose col is figCol.
func figureFrom(col, figCol string) bool {
	if figCol != "" {
		return col == figCol
	}
	return col != msrClock
}

func hvScenarioName(runner string) string { return hvScenario + "-" + runner }

// hypervScenarios are one scenario per runner.
func (o options) hypervScenarios() ([]scenario.Scenario, error) {
	var list []scenario.Scenario
	for _, col := range hvColumns(o.runners) {
		runner := col
		if columnFeatures(col) != "" {
			runner = scenario.RunnerVMM
		}
		checks := []string{"boot", clockCheck, msrCheck}
		if col == msrClock {
			// Only the clock read differs from the vmm column.
			checks = checks[:2]
		}
		g := testhost.Guest{CPUs: o.cpus, MemoryMiB: o.memory, Checks: checks, Quiet: true}
		kill := o.timeout
		if runner == scenario.RunnerVMM {
			g.Timeout = o.timeout
			kill += 30 * time.Second
		}
		args, err := g.Args(runner)
		if err != nil {
			return nil, err
		}
		if f := columnFeatures(col); f != "" {
			args = append(args, "--hyperv", f)
		} else if args, err = testhost.WithHyperV(runner, args); err != nil {
			return nil, err
		}
		want := map[string]string{}
		for _, c := range checks {
			want[c] = scenario.Pass
		}
		list = append(list, scenario.Scenario{
			Name: hvScenarioName(col), Runner: runner, Args: args, Repeat: min(o.n, hvRepeat), Bench: true, Stream: true,
			WantChecks: want, Timeout: kill.String(),
		})
	}
	return list, nil
}

// hvReport holds the figures (ns) per column (runner, or noSTimer).
type hvReport struct {
	// Runs are each run's figures and clocksource, per runner.
	Runs map[string][]hvRun `json:"runs"`
	// Medians are each figure's median over runs, by figure then runner.
	Medians map[string]map[string]float64 `json:"medians_ns"`
	// Ratios are vmm over QEMU per figure (below 1: vmm is faster).
	Ratios map[string]float64 `json:"ratios_vmm_qemu"`
	// RatiosNoSTimer are vmm without synthetic timers over QEMU.
	RatiosNoSTimer map[string]float64 `json:"ratios_vmm_nostimer_qemu"`
	// ExitRoundTrip is msr-hv minus msr-noexit per runner: one emulated
	// Hyper-V MSR access without the driver's own cost.
	ExitRoundTrip map[string]float64 `json:"msr_exit_round_trip_ns"`
}

// hvRun is one run: each figure's median over the guest's batches, and the
// fastest and slowest batch.
type hvRun struct {
	Clocksource string             `json:"clocksource"`
	NS          map[string]float64 `json:"ns"`
	MinNS       map[string]float64 `json:"min_ns"`
	MaxNS       map[string]float64 `json:"max_ns"`
}

// summarizeHyperV collects the figures from the streamed consoles. A run's
// two checks print in order, so the nth clock-cost and nth msr-cost lines
// are the nth run.
func summarizeHyperV(runners []string, console map[string][]string) hvReport {
	rep := hvReport{Runs: map[string][]hvRun{}, Medians: map[string]map[string]float64{}, Ratios: map[string]float64{},
		RatiosNoSTimer: map[string]float64{}, ExitRoundTrip: map[string]float64{}}
	for _, runner := range hvColumns(runners) {
		details := map[string][]string{}
		for _, line := range console[hvScenarioName(runner)] {
			for _, c := range []string{clockCheck, msrCheck} {
				if d, ok := agentDetail(line, c); ok {
					details[c] = append(details[c], d)
				}
			}
		}
		n := max(len(details[clockCheck]), len(details[msrCheck]))
		for i := range n {
			r := hvRun{NS: map[string]float64{}, MinNS: map[string]float64{}, MaxNS: map[string]float64{}}
			for _, f := range hvFigures {
				if i >= len(details[f.check]) || !figureFrom(runner, f.col) {
					continue
				}
				d := details[f.check][i]
				figs := parseFigures(d)
				v, ok := figs[f.key]
				if !ok {
					continue
				}
				r.NS[f.name] = v
				base := strings.TrimSuffix(f.key, "_ns")
				if f.check == clockCheck {
					base = ""
				} else {
					base += "_"
				}
				r.MinNS[f.name], r.MaxNS[f.name] = figs[base+"min_ns"], figs[base+"max_ns"]
				if f.check == clockCheck {
					for _, w := range strings.Fields(d) {
						if v, ok := strings.CutPrefix(w, "clocksource="); ok {
							r.Clocksource = v
						}
					}
				}
			}
			rep.Runs[runner] = append(rep.Runs[runner], r)
		}
		for _, f := range hvFigures {
			var xs []float64
			for _, r := range rep.Runs[runner] {
				if v, ok := r.NS[f.name]; ok {
					xs = append(xs, v)
				}
			}
			if len(xs) == 0 {
				continue
			}
			if rep.Medians[f.name] == nil {
				rep.Medians[f.name] = map[string]float64{}
			}
			rep.Medians[f.name][runner] = median(xs)
		}
		if hv, ok := rep.Medians["msr-hv"][runner]; ok {
			rep.ExitRoundTrip[runner] = hv - rep.Medians["msr-noexit"][runner]
		}
	}
	for name, m := range rep.Medians {
		if v, q := m[scenario.RunnerVMM], m[scenario.RunnerQEMU]; v > 0 && q > 0 {
			rep.Ratios[name] = v / q
		}
		if v, q := m[noSTimer], m[scenario.RunnerQEMU]; v > 0 && q > 0 {
			rep.RatiosNoSTimer[name] = v / q
		}
	}
	return rep
}

// spread is the lowest batch minimum and highest batch maximum of a figure
// over a runner's runs.
func (rep hvReport) spread(runner, name string) (lo, hi float64) {
	var los, his []float64
	for _, r := range rep.Runs[runner] {
		if _, ok := r.NS[name]; ok {
			los, his = append(los, r.MinNS[name]), append(his, r.MaxNS[name])
		}
	}
	if len(los) == 0 {
		return 0, 0
	}
	return slices.Min(los), slices.Max(his)
}

func (rep hvReport) write(w io.Writer) {
	var b strings.Builder
	b.WriteString("Hyper-V guest costs in ns (median of runs, each the median of its batches; [fastest-slowest batch]):\n")
	fmt.Fprintf(&b, "%-11s %24s %24s %8s %24s %8s\n", "figure", "vmm", "qemu", "vmm/qemu", noSTimer, "/qemu")
	cell := func(runner, name string) string {
		v, ok := rep.Medians[name][runner]
		if !ok {
			return "-"
		}
		lo, hi := rep.spread(runner, name)
		return fmt.Sprintf("%.1f [%.0f-%.0f]", v, lo, hi)
	}
	ratio := func(m map[string]float64, name string) string {
		if r, ok := m[name]; ok {
			return fmt.Sprintf("%.2f", r)
		}
		return "-"
	}
	for _, f := range hvFigures {
		if f.col != "" {
			continue
		}
		fmt.Fprintf(&b, "%-11s %24s %24s %8s %24s %8s\n", f.name, cell(scenario.RunnerVMM, f.name), cell(scenario.RunnerQEMU, f.name),
			ratio(rep.Ratios, f.name), cell(noSTimer, f.name), ratio(rep.RatiosNoSTimer, f.name))
	}
	if m, ok := rep.Medians["msrclock"][msrClock]; ok {
		fmt.Fprintf(&b, "%-11s %24s", "msrclock", cell(msrClock, "msrclock"))
		if t := rep.Medians["tscpage"][scenario.RunnerVMM]; t > 0 {
			fmt.Fprintf(&b, "   %.1fx vmm's TSC page read", m/t)
		}
		b.WriteString("\n")
	}
	v, q := rep.ExitRoundTrip[scenario.RunnerVMM], rep.ExitRoundTrip[scenario.RunnerQEMU]
	fmt.Fprintf(&b, "%-11s %24.1f %24.1f", "msr-exit", v, q)
	if v > 0 && q > 0 {
		fmt.Fprintf(&b, " %8.2f", v/q)
	}
	b.WriteString("\n")
	for _, f := range hvFigures {
		fmt.Fprintf(&b, "  %-10s %s\n", f.name+":", f.about)
	}
	b.WriteString("  msr-exit:   msr-hv minus msr-noexit: the round trip of one emulated Hyper-V MSR access. Linux 6.1 registers\n" +
		"              the MSR clocksource only when no TSC page is offered, so under QEMU this read stands in for its cost.\n" +
		"  " + noSTimer + ": vmm --hyperv " + noSTimerFeatures + " (Linux ticks on the in-kernel LAPIC timer, not on\n" +
		"              synthetic timers emulated in userspace): the part of vmm's gap its timer emulation costs.\n" +
		"Target: tscpage within 1.5x of QEMU's.\n")
	for _, runner := range []string{scenario.RunnerVMM, scenario.RunnerQEMU, noSTimer, msrClock} {
		want := tscClocksource
		if runner == msrClock {
			want = msrClocksource
		}
		for i, r := range rep.Runs[runner] {
			if r.Clocksource != "" && r.Clocksource != want {
				fmt.Fprintf(&b, "warning: %s run %d used clocksource %s, not %s\n", runner, i+1, r.Clocksource, want)
			}
		}
	}
	_, _ = io.WriteString(w, b.String())
}
