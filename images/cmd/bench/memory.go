package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The memory benchmark (-memory), issue 20: the same Linux guest under vmm
// and QEMU (-M microvm), each runner's memory beyond its guest RAM sampled
// alike by the outer init (scenario.SampleMemoryMiB), with vmm's own
// --report figure beside it; then the guest RAM vmm still holds after the
// guest has touched and freed 128 MiB (the agent's memfree check), without
// and with --balloon (free page reporting).

// memRepeat bounds the runs per runner of the footprint comparison.
const memRepeat = 3

// freeMiB is the guest RAM of the memory-freeing runs: the agent frees 128 MiB.
const freeMiB = 256

// Targets of issue 20.
const (
	targetOwnMiB       = 5
	targetOwnQEMURatio = 0.2
)

func memScenarioName(runner string) string { return "mem-" + runner }

// Names of the memory-freeing runs (vmm only).
const (
	freeName        = "free-vmm"
	freeBalloonName = "free-vmm-balloon"
)

func (o options) memoryScenarios() ([]scenario.Scenario, error) {
	var list []scenario.Scenario
	for _, runner := range o.runners {
		args, kill, err := o.bootGuest(runner)
		if err != nil {
			return nil, err
		}
		list = append(list, scenario.Scenario{
			Name: memScenarioName(runner), Runner: runner, Args: args, Repeat: min(o.n, memRepeat), Bench: true,
			WantChecks: map[string]string{"boot": scenario.Pass}, Timeout: kill.String(),
			Stream: true, Report: runner == scenario.RunnerVMM, SampleMemoryMiB: o.memory,
		})
	}
	for _, balloon := range []bool{false, true} {
		g := testhost.Guest{CPUs: o.cpus, MemoryMiB: freeMiB, Checks: []string{"boot", "memfree"}, Quiet: true, Timeout: o.timeout}
		name, check := freeName, "memfree"
		if balloon {
			name, check = freeBalloonName, "balloon"
			g.Checks = []string{"boot", "balloon"}
		}
		args, err := g.Args(scenario.RunnerVMM)
		if err != nil {
			return nil, err
		}
		if balloon {
			args = append(args, "--balloon")
		}
		list = append(list, scenario.Scenario{
			Name: name, Args: args, Bench: true, Timeout: (o.timeout + 30*time.Second).String(),
			WantChecks: map[string]string{"boot": scenario.Pass, check: scenario.Pass},
			Stream:     true, Report: true, SampleMemoryMiB: freeMiB,
		})
	}
	return list, nil
}

// memReport holds the memory figures, in MiB: medians over the runs.
type memReport struct {
	// Own is each runner's memory beyond its guest RAM (outer init's
	// samples), Guest its guest RAM resident at the peak.
	Own   map[string]float64 `json:"own_mib"`
	Guest map[string]float64 `json:"guest_peak_mib"`
	N     map[string]int     `json:"n"`
	// VMMReportOwn is vmm's own figure (--report: peak RSS minus guest RAM).
	VMMReportOwn float64 `json:"vmm_report_own_mib"`
	// Ratio is vmm's Own over QEMU's; 0 when either is missing.
	Ratio   float64         `json:"ratio_own_vmm_qemu"`
	Targets map[string]bool `json:"targets"`
	// Freed is the guest RAM vmm holds after the guest freed 128 MiB,
	// without and with the balloon.
	Freed map[string]freed `json:"freed"`
}

type freed struct {
	// ResidentMiB is guest RAM resident at the end (vmm's report), PeakMiB
	// the most at once; ReportedMiB what free page reports gave back.
	ResidentMiB float64 `json:"resident_mib"`
	PeakMiB     float64 `json:"peak_mib"`
	ReportedMiB float64 `json:"reported_mib"`
}

// memRunReport is the part of vmm's report the memory benchmark reads.
type memRunReport struct {
	Memory struct {
		GuestResidentKiB     uint64 `json:"guest_resident_kib"`
		GuestResidentPeakKiB uint64 `json:"guest_resident_peak_kib"`
		OverheadKiB          uint64 `json:"overhead_kib"`
	} `json:"memory"`
	Devices struct {
		Balloon *struct {
			ReportedKiB uint64 `json:"reported_kib"`
		} `json:"balloon"`
	} `json:"devices"`
}

func mib(kib uint64) float64 { return float64(kib) / 1024 }

// summarizeMemory reads the memory lines and reports the runs printed.
func summarizeMemory(runners []string, console map[string][]string) memReport {
	rep := memReport{Own: map[string]float64{}, Guest: map[string]float64{}, N: map[string]int{},
		Targets: map[string]bool{}, Freed: map[string]freed{}}
	for _, runner := range runners {
		mems, _ := scenario.ParseMemory(console[memScenarioName(runner)])
		var own, guest []float64
		for _, m := range mems {
			if m.Samples > 0 && m.GuestPeakKiB > 0 {
				own, guest = append(own, mib(m.OwnPeakKiB)), append(guest, mib(m.GuestPeakKiB))
			}
		}
		if len(own) > 0 {
			rep.Own[runner], rep.Guest[runner], rep.N[runner] = median(own), median(guest), len(own)
		}
	}
	reps, _ := scenario.ParseReports[memRunReport](console[memScenarioName(scenario.RunnerVMM)])
	var own []float64
	for _, r := range reps {
		own = append(own, mib(r.Memory.OverheadKiB))
	}
	rep.VMMReportOwn = median(own)
	v, okV := rep.Own[scenario.RunnerVMM]
	q, okQ := rep.Own[scenario.RunnerQEMU]
	if okV && okQ && q > 0 {
		rep.Ratio = v / q
		rep.Targets["own_fifth_of_qemu"] = rep.Ratio <= targetOwnQEMURatio
	}
	if okV {
		rep.Targets["own_under_5MiB"] = v <= targetOwnMiB
	}
	for _, name := range []string{freeName, freeBalloonName} {
		reps, _ := scenario.ParseReports[memRunReport](console[name])
		if len(reps) != 1 {
			continue
		}
		m := reps[0].Memory
		f := freed{ResidentMiB: mib(m.GuestResidentKiB), PeakMiB: mib(m.GuestResidentPeakKiB)}
		if b := reps[0].Devices.Balloon; b != nil {
			f.ReportedMiB = mib(b.ReportedKiB)
		}
		rep.Freed[name] = f
	}
	return rep
}

func (rep memReport) write(w io.Writer) {
	var b strings.Builder
	b.WriteString("memory beyond guest RAM (same Linux guest; the outer init samples each runner's smaps alike), medians:\n")
	for _, runner := range []string{scenario.RunnerVMM, scenario.RunnerQEMU} {
		if n, ok := rep.N[runner]; ok {
			fmt.Fprintf(&b, "  %-5s n=%d  own %.1f MiB  guest RAM resident %.1f MiB\n", runner, n, rep.Own[runner], rep.Guest[runner])
		}
	}
	if rep.VMMReportOwn > 0 {
		fmt.Fprintf(&b, "  vmm's --report: own %.1f MiB (peak RSS minus guest RAM)\n", rep.VMMReportOwn)
	}
	if rep.Ratio > 0 {
		fmt.Fprintf(&b, "  ratio own vmm/qemu %.2f (target <= %.1f: %t)", rep.Ratio, targetOwnQEMURatio, rep.Targets["own_fifth_of_qemu"])
	} else {
		b.WriteString("  ratio own vmm/qemu: n/a (a runner has no sampled run)")
	}
	if ok, measured := rep.Targets["own_under_5MiB"]; measured {
		fmt.Fprintf(&b, "; vmm own <= %d MiB: %t", targetOwnMiB, ok)
	}
	b.WriteString("\n")
	b.WriteString("guest RAM vmm holds after the guest touched and freed 128 MiB (256 MiB guest):\n")
	for _, row := range []struct{ name, title string }{{freeName, "without balloon"}, {freeBalloonName, "with --balloon"}} {
		f, ok := rep.Freed[row.name]
		if !ok {
			fmt.Fprintf(&b, "  %-16s n/a (no report)\n", row.title)
			continue
		}
		fmt.Fprintf(&b, "  %-16s resident at the end %.1f MiB (peak %.1f MiB)", row.title, f.ResidentMiB, f.PeakMiB)
		if row.name == freeBalloonName {
			fmt.Fprintf(&b, ", free page reports gave back %.1f MiB", f.ReportedMiB)
		}
		b.WriteString("\n")
	}
	_, _ = io.WriteString(w, b.String())
}
