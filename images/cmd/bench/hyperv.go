package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The Hyper-V benchmark (-hyperv): the cost of one guest clock read with
// the reference TSC page (read in the guest, no exit), for vmm --hyperv all
// and QEMU with the equivalent hv-* flags. The MSR clocksource cannot be
// chosen on Linux 6.1 while the TSC page is offered (it registers one or
// the other), so the MSR round trip is not measured here.
const clockCheck = "clock-cost"

// hvClocksources are the guest clocksources measured, by short name.
var hvClocksources = []struct{ short, cmdline string }{
	{"tscpage", ""},
}

// hvRepeat bounds the runs per scenario: each run already times a second
// of clock reads, and four scenarios per bench make them the costliest part.
const hvRepeat = 2

func hvScenarioName(runner, cs string) string { return "hvclock-" + runner + "-" + cs }

// hypervScenarios are one scenario per runner and clocksource.
func (o options) hypervScenarios() ([]scenario.Scenario, error) {
	var list []scenario.Scenario
	for _, cs := range hvClocksources {
		for _, runner := range o.runners {
			g := testhost.Guest{CPUs: o.cpus, MemoryMiB: o.memory, Checks: []string{"boot", clockCheck}, Quiet: true,
				ExtraCmdline: cs.cmdline}
			kill := o.timeout
			if runner == scenario.RunnerVMM {
				g.Timeout = o.timeout
				kill += 30 * time.Second
			}
			args, err := g.Args(runner)
			if err != nil {
				return nil, err
			}
			if args, err = testhost.WithHyperV(runner, args); err != nil {
				return nil, err
			}
			list = append(list, scenario.Scenario{
				Name: hvScenarioName(runner, cs.short), Runner: runner, Args: args, Repeat: min(o.n, hvRepeat), Bench: true, Stream: true,
				WantChecks: map[string]string{"boot": scenario.Pass, clockCheck: scenario.Pass}, Timeout: kill.String(),
			})
		}
	}
	return list, nil
}

// hvReport holds the clock read costs (ns) per clocksource and runner.
type hvReport struct {
	// Runs are the clocksource the guest used and its read cost, per scenario.
	Runs map[string][]hvRun `json:"runs"`
	// Medians are read_ns medians by clocksource then runner.
	Medians map[string]map[string]float64 `json:"medians_ns"`
	// Ratios are vmm over QEMU per clocksource (below 1: vmm is faster).
	Ratios map[string]float64 `json:"ratios_vmm_qemu"`
}

type hvRun struct {
	Clocksource string  `json:"clocksource"`
	ReadNS      float64 `json:"read_ns"`
}

// summarizeHyperV collects the clock-cost figures from the streamed consoles.
func summarizeHyperV(runners []string, console map[string][]string) hvReport {
	rep := hvReport{Runs: map[string][]hvRun{}, Medians: map[string]map[string]float64{}, Ratios: map[string]float64{}}
	for _, cs := range hvClocksources {
		for _, runner := range runners {
			name := hvScenarioName(runner, cs.short)
			var xs []float64
			for _, line := range console[name] {
				d, ok := agentDetail(line, clockCheck)
				if !ok {
					continue
				}
				r := hvRun{ReadNS: parseFigures(d)["read_ns"]}
				for _, f := range strings.Fields(d) {
					if v, ok := strings.CutPrefix(f, "clocksource="); ok {
						r.Clocksource = v
					}
				}
				rep.Runs[name] = append(rep.Runs[name], r)
				xs = append(xs, r.ReadNS)
			}
			if len(xs) > 0 {
				if rep.Medians[cs.short] == nil {
					rep.Medians[cs.short] = map[string]float64{}
				}
				rep.Medians[cs.short][runner] = median(xs)
			}
		}
		m := rep.Medians[cs.short]
		if v, q := m[scenario.RunnerVMM], m[scenario.RunnerQEMU]; v > 0 && q > 0 {
			rep.Ratios[cs.short] = v / q
		}
	}
	return rep
}

func (rep hvReport) write(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "Hyper-V clock read cost in the guest (ns per clock_gettime, median):\n%-8s %10s %10s %8s\n",
		"source", "vmm", "qemu", "vmm/qemu")
	for _, cs := range hvClocksources {
		m := rep.Medians[cs.short]
		fmt.Fprintf(&b, "%-8s %10.1f %10.1f %8.2f\n", cs.short, m[scenario.RunnerVMM], m[scenario.RunnerQEMU], rep.Ratios[cs.short])
	}
	b.WriteString("tscpage: the reference TSC page, read without an exit (target: vmm within 1.5x of QEMU)\n")
	_, _ = io.WriteString(w, b.String())
}
