package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/exitbench"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The exit benchmark (-exits): images/exitbench's guest, a multiboot ELF
// that times exits the way kvm-unit-tests' vmexit test does (CPUID, a PM
// timer read, an MMIO read, a self-IPI) and Hyper-V synthetic timer round
// trips, under vmm (--testdev --hyperv all) and QEMU -M pc (pc-testdev,
// QEMU's hv-* flags, its in-kernel Hyper-V) in the same outer boot.

// exitGuest is where the outer init writes the guest before each run.
const exitGuest = "/tmp/exitbench.elf"

// exitRepeat bounds the runs per runner: each run already times
// exitbench.Batches batches of every row.
const exitRepeat = 3

func exitScenarioName(runner string) string { return "exits-" + runner }

func (o options) exitScenarios() ([]scenario.Scenario, error) {
	var list []scenario.Scenario
	for _, runner := range o.runners {
		var args []string
		kill := o.timeout
		switch runner {
		case scenario.RunnerVMM:
			args = exitbench.VMMArgs(exitGuest, o.timeout.String())
			kill += 30 * time.Second
		case scenario.RunnerQEMU:
			args = exitbench.QEMUArgs(exitGuest, images.OuterSeaBIOS, testhost.QEMUHyperVCPU)
		default:
			return nil, fmt.Errorf("%w: unknown runner %q", scenario.ErrInvalid, runner)
		}
		list = append(list, scenario.Scenario{
			Name: exitScenarioName(runner), Runner: runner, Args: args, Repeat: min(o.n, exitRepeat), Bench: true,
			Stream: true, WantExit: 2*exitbench.ExitValue + 1, Timeout: kill.String(),
			Blobs: map[string][]byte{exitGuest: exitbench.ELF()},
		})
	}
	return list, nil
}

// exitsReport holds cycles per iteration, by row then runner.
type exitsReport struct {
	// Batches are every batch's cycles per iteration over all runs.
	Batches map[string]map[string][]float64 `json:"batches_cycles"`
	// Medians are the batches' medians.
	Medians map[string]map[string]float64 `json:"medians_cycles"`
	// Ratios are vmm over QEMU per row (below 1: vmm is faster).
	Ratios map[string]float64 `json:"ratios_vmm_qemu"`
	// Incomplete are runners a run of which did not reach the guest's end.
	Incomplete []string `json:"incomplete,omitempty"`
}

// summarizeExits collects the rows from the streamed consoles.
func summarizeExits(runners []string, results []scenario.Result, console map[string][]string) exitsReport {
	rep := exitsReport{Batches: map[string]map[string][]float64{}, Medians: map[string]map[string]float64{}, Ratios: map[string]float64{}}
	for _, runner := range runners {
		cycles, done := exitbench.Parse(console[exitScenarioName(runner)])
		runs := 0
		for _, r := range results {
			if r.Name == exitScenarioName(runner) {
				runs++
			}
		}
		if !done || runs == 0 || countDone(console[exitScenarioName(runner)]) < runs {
			rep.Incomplete = append(rep.Incomplete, runner)
		}
		for row, xs := range cycles {
			if rep.Batches[row] == nil {
				rep.Batches[row], rep.Medians[row] = map[string][]float64{}, map[string]float64{}
			}
			rep.Batches[row][runner] = xs
			rep.Medians[row][runner] = median(xs)
		}
	}
	for row, m := range rep.Medians {
		if v, q := m[scenario.RunnerVMM], m[scenario.RunnerQEMU]; v > 0 && q > 0 {
			rep.Ratios[row] = v / q
		}
	}
	return rep
}

// countDone is how many runs of a console reached the guest's end.
func countDone(lines []string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, exitbench.Line+" done") {
			n++
		}
	}
	return n
}

func (rep exitsReport) write(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "Exit round trips in guest TSC cycles per iteration (median of %d-iteration batches [fastest-slowest]):\n", exitbench.Iterations)
	fmt.Fprintf(&b, "%-13s %26s %26s %8s\n", "row", "vmm", "qemu", "vmm/qemu")
	cell := func(row, runner string) string {
		xs := rep.Batches[row][runner]
		if len(xs) == 0 {
			return "-"
		}
		lo, hi := xs[0], xs[0]
		for _, x := range xs {
			lo, hi = min(lo, x), max(hi, x)
		}
		return fmt.Sprintf("%.0f [%.0f-%.0f]", rep.Medians[row][runner], lo, hi)
	}
	for _, r := range exitbench.Rows {
		ratio := "-"
		if v, ok := rep.Ratios[r.Name]; ok {
			ratio = fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(&b, "%-13s %26s %26s %8s\n", r.Name, cell(r.Name, scenario.RunnerVMM), cell(r.Name, scenario.RunnerQEMU), ratio)
	}
	for _, r := range exitbench.Rows {
		fmt.Fprintf(&b, "  %-13s %s\n", r.Name+":", r.About)
	}
	b.WriteString("Target: every row at most 1.0x QEMU's.\n")
	for _, runner := range rep.Incomplete {
		fmt.Fprintf(&b, "warning: a %s run did not reach the guest's end; its rows may be missing\n", runner)
	}
	_, _ = io.WriteString(w, b.String())
}
