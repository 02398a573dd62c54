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
// trips, under vmm (--testdev --hyperv all,kernel-timers: KVM's timers where
// the host has them), vmm with its own timers (--hyperv all, the
// vmm-userspace column) and QEMU -M pc (pc-testdev, QEMU's hv-* flags, its
// in-kernel Hyper-V) in the same outer boot.

// exitGuest is where the outer init writes the guest before each run.
const exitGuest = "/tmp/exitbench.elf"

// exitRepeat bounds the runs per runner: each run already times
// exitbench.Batches batches of every row.
const exitRepeat = 3

// The --hyperv lists of the vmm columns.
const (
	exitsHyperV          = testhost.KernelTimersHyperV
	exitsUserspace       = "vmm-userspace"
	exitsUserspaceHyperV = "all"
)

func exitScenarioName(column string) string { return "exits-" + column }

// exitColumns are the report's columns for runners: vmm brings two.
func exitColumns(runners []string) []string {
	var out []string
	for _, r := range runners {
		out = append(out, r)
		if r == scenario.RunnerVMM {
			out = append(out, exitsUserspace)
		}
	}
	return out
}

func (o options) exitScenarios() ([]scenario.Scenario, error) {
	var list []scenario.Scenario
	for _, column := range exitColumns(o.runners) {
		var args []string
		kill := o.timeout
		runner := column
		switch column {
		case scenario.RunnerVMM, exitsUserspace:
			hv := exitsHyperV
			if column == exitsUserspace {
				runner, hv = scenario.RunnerVMM, exitsUserspaceHyperV
			}
			args = exitbench.VMMArgs(exitGuest, o.timeout.String(), hv)
			kill += 30 * time.Second
		case scenario.RunnerQEMU:
			args = exitbench.QEMUArgs(exitGuest, images.OuterSeaBIOS, testhost.QEMUHyperVCPU)
		default:
			return nil, fmt.Errorf("%w: unknown runner %q", scenario.ErrInvalid, runner)
		}
		list = append(list, scenario.Scenario{
			Name: exitScenarioName(column), Runner: runner, Args: args, Repeat: min(o.n, exitRepeat), Bench: true,
			Stream: true, WantExit: 2*exitbench.ExitValue + 1, Timeout: kill.String(),
			Blobs: map[string][]byte{exitGuest: exitbench.ELF()},
		})
	}
	return list, nil
}

// exitsReport holds cycles per iteration, by row then column (a runner, or
// vmm-userspace).
type exitsReport struct {
	// Columns are the columns in the report's order.
	Columns []string `json:"columns"`
	// Batches are every batch's cycles per iteration over all runs, Paces
	// the same batches' paces (cycles per CPUID just before each).
	Batches map[string]map[string][]float64 `json:"batches_cycles"`
	Paces   map[string]map[string][]float64 `json:"batches_pace_cycles"`
	// Medians are the batches' medians.
	Medians map[string]map[string]float64 `json:"medians_cycles"`
	// Ratios are vmm (kernel-timers) over QEMU per row (below 1: vmm is
	// faster); RatiosUserspace vmm with its own timers over QEMU.
	Ratios          map[string]float64 `json:"ratios_vmm_qemu"`
	RatiosUserspace map[string]float64 `json:"ratios_vmm_userspace_qemu,omitempty"`
	// PacedRatios and PacedRatiosUserspace are the same of the medians of
	// cycles over pace, for the rows exitbench paces.
	PacedRatios          map[string]float64 `json:"paced_ratios_vmm_qemu"`
	PacedRatiosUserspace map[string]float64 `json:"paced_ratios_vmm_userspace_qemu,omitempty"`
	// Incomplete are columns a run of which did not reach the guest's end.
	Incomplete []string `json:"incomplete,omitempty"`
}

// summarizeExits collects the rows from the streamed consoles.
func summarizeExits(runners []string, results []scenario.Result, console map[string][]string) exitsReport {
	rep := exitsReport{Columns: exitColumns(runners), Batches: map[string]map[string][]float64{},
		Paces: map[string]map[string][]float64{}, Medians: map[string]map[string]float64{},
		Ratios: map[string]float64{}, RatiosUserspace: map[string]float64{},
		PacedRatios: map[string]float64{}, PacedRatiosUserspace: map[string]float64{}}
	paced := map[string]map[string]float64{} // row, column: median of cycles over pace
	for _, column := range rep.Columns {
		name := exitScenarioName(column)
		batches, done := exitbench.Parse(console[name])
		runs := 0
		for _, r := range results {
			if r.Name == name {
				runs++
			}
		}
		if !done || runs == 0 || countDone(console[name]) < runs {
			rep.Incomplete = append(rep.Incomplete, column)
		}
		for row, bs := range batches {
			if rep.Batches[row] == nil {
				rep.Batches[row], rep.Paces[row] = map[string][]float64{}, map[string][]float64{}
				rep.Medians[row], paced[row] = map[string]float64{}, map[string]float64{}
			}
			var cycles, paces, units []float64
			for _, b := range bs {
				cycles, paces, units = append(cycles, b.Cycles), append(paces, b.Pace), append(units, b.Paced())
			}
			rep.Batches[row][column], rep.Paces[row][column] = cycles, paces
			rep.Medians[row][column], paced[row][column] = median(cycles), median(units)
		}
	}
	ratios := func(m map[string]map[string]float64, out, outUserspace map[string]float64, rows map[string]bool) {
		for row, col := range m {
			if rows != nil && !rows[row] {
				continue
			}
			q := col[scenario.RunnerQEMU]
			if v := col[scenario.RunnerVMM]; v > 0 && q > 0 {
				out[row] = v / q
			}
			if v := col[exitsUserspace]; v > 0 && q > 0 {
				outUserspace[row] = v / q
			}
		}
	}
	pacedRows := map[string]bool{}
	for _, r := range exitbench.Rows {
		pacedRows[r.Name] = r.Paced
	}
	ratios(rep.Medians, rep.Ratios, rep.RatiosUserspace, nil)
	ratios(paced, rep.PacedRatios, rep.PacedRatiosUserspace, pacedRows)
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
	fmt.Fprintf(&b, "%-15s", "row")
	for _, c := range rep.Columns {
		fmt.Fprintf(&b, " %26s", c)
	}
	fmt.Fprintf(&b, " %8s %6s", "vmm/qemu", "paced")
	if len(rep.RatiosUserspace) > 0 {
		fmt.Fprintf(&b, " %18s %6s", exitsUserspace+"/qemu", "paced")
	}
	b.WriteString("\n")
	cell := func(row, column string) string {
		xs := rep.Batches[row][column]
		if len(xs) == 0 {
			return "-"
		}
		lo, hi := xs[0], xs[0]
		for _, x := range xs {
			lo, hi = min(lo, x), max(hi, x)
		}
		return fmt.Sprintf("%.0f [%.0f-%.0f]", rep.Medians[row][column], lo, hi)
	}
	ratio := func(m map[string]float64, row string) string {
		if v, ok := m[row]; ok {
			return fmt.Sprintf("%.2f", v)
		}
		return "-"
	}
	for _, r := range exitbench.Rows {
		fmt.Fprintf(&b, "%-15s", r.Name)
		for _, c := range rep.Columns {
			fmt.Fprintf(&b, " %26s", cell(r.Name, c))
		}
		fmt.Fprintf(&b, " %8s %6s", ratio(rep.Ratios, r.Name), ratio(rep.PacedRatios, r.Name))
		if len(rep.RatiosUserspace) > 0 {
			fmt.Fprintf(&b, " %18s %6s", ratio(rep.RatiosUserspace, r.Name), ratio(rep.PacedRatiosUserspace, r.Name))
		}
		b.WriteString("\n")
	}
	for _, r := range exitbench.Rows {
		fmt.Fprintf(&b, "  %-16s %s\n", r.Name+":", r.About)
	}
	fmt.Fprintf(&b, "  vmm: --hyperv %s (KVM's timers where the host has them); %s: --hyperv %s (vmm's timers)\n",
		exitsHyperV, exitsUserspace, exitsUserspaceHyperV)
	fmt.Fprintf(&b, "  paced: the ratio of the medians of each batch's cycles over its pace, %d CPUIDs timed right before it;\n"+
		"  CPUID's exit is the same host-kernel code under every VMM, so the pace cancels the host's speed at the time\n"+
		"  (rows that are mostly a wait for the host's timer, and cpuid itself, are not paced)\n", exitbench.PaceIterations)
	b.WriteString("Target: every row at most 1.0x QEMU's.\n")
	for _, c := range rep.Incomplete {
		fmt.Fprintf(&b, "warning: a %s run did not reach the guest's end; its rows may be missing\n", c)
	}
	_, _ = io.WriteString(w, b.String())
}
