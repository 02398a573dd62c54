package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The memory benchmark (-footprint), issue 20: the same Linux guest under vmm
// and QEMU (-M microvm), each runner's memory beyond its guest RAM sampled
// alike by the outer init (scenario.SampleMemoryMiB, scenario.Memory): the
// resident set and its parts, and the per-guest figure the targets are on
// (anonymous memory and page tables: what one more guest costs the host;
// the file-backed pages of the binary and its libraries sit in the page
// cache once for every runner process). vmm's own --report figure stands
// beside it, with its difference from the anonymous memory sampled in the
// same run; then the guest RAM vmm still holds after the
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
	// Runners holds each runner's memory beyond its guest RAM, from the
	// outer init's samples.
	Runners map[string]memFigures `json:"runners"`
	// VMMReportOwn is vmm's own figure (--report: anonymous memory beyond
	// guest RAM plus page tables, at vmm's own samples); ReportMinusPerGuest
	// is, per run, that minus the per-guest figure the outer init sampled
	// (median; ReportMinusPerGuestMost the largest in magnitude), in MiB.
	VMMReportOwn            float64 `json:"vmm_report_own_mib"`
	ReportMinusPerGuest     float64 `json:"vmm_report_minus_per_guest_mib"`
	ReportMinusPerGuestMost float64 `json:"vmm_report_minus_per_guest_most_mib"`
	// Ratio is vmm's per-guest figure over QEMU's, RSSRatio the same for
	// the resident sets beyond guest RAM; 0 when either is missing.
	Ratio    float64         `json:"ratio_per_guest_vmm_qemu"`
	RSSRatio float64         `json:"ratio_rss_vmm_qemu"`
	Targets  map[string]bool `json:"targets"`
	// Freed is the guest RAM vmm holds after the guest freed 128 MiB,
	// without and with the balloon.
	Freed map[string]freed `json:"freed"`
}

// memFigures is one runner's memory beyond its guest RAM (scenario.Memory
// says what each is), medians of each run's peaks.
type memFigures struct {
	RSS        float64 `json:"rss_mib"`
	Anon       float64 `json:"anon_mib"`
	File       float64 `json:"file_mib"`
	FileDirty  float64 `json:"file_dirty_mib"`
	PageTables float64 `json:"page_tables_mib"`
	Pss        float64 `json:"pss_mib"`
	PerGuest   float64 `json:"per_guest_mib"`
	Guest      float64 `json:"guest_peak_mib"`
	N          int     `json:"n"`
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
	rep := memReport{Runners: map[string]memFigures{}, Targets: map[string]bool{}, Freed: map[string]freed{}}
	sampled := map[string][]scenario.Memory{}
	for _, runner := range runners {
		mems, _ := scenario.ParseMemory(console[memScenarioName(runner)])
		var ms []scenario.Memory
		for _, m := range mems {
			if m.Samples > 0 && m.GuestPeakKiB > 0 {
				ms = append(ms, m)
			}
		}
		sampled[runner] = mems
		if len(ms) == 0 {
			continue
		}
		fig := func(pick func(scenario.Memory) uint64) float64 {
			var xs []float64
			for _, m := range ms {
				xs = append(xs, mib(pick(m)))
			}
			return median(xs)
		}
		rep.Runners[runner] = memFigures{
			RSS:        fig(func(m scenario.Memory) uint64 { return m.OwnPeakKiB }),
			Anon:       fig(func(m scenario.Memory) uint64 { return m.AnonPeakKiB }),
			File:       fig(func(m scenario.Memory) uint64 { return m.FilePeakKiB }),
			FileDirty:  fig(func(m scenario.Memory) uint64 { return m.FileDirtyPeakKiB }),
			PageTables: fig(func(m scenario.Memory) uint64 { return m.PageTablesPeakKiB }),
			Pss:        fig(func(m scenario.Memory) uint64 { return m.PssPeakKiB }),
			PerGuest:   fig(func(m scenario.Memory) uint64 { return m.PerGuestPeakKiB }),
			Guest:      fig(func(m scenario.Memory) uint64 { return m.GuestPeakKiB }),
			N:          len(ms),
		}
	}
	reps, _ := scenario.ParseReports[memRunReport](console[memScenarioName(scenario.RunnerVMM)])
	var own, diff []float64
	for i, r := range reps {
		own = append(own, mib(r.Memory.OverheadKiB))
		// Each run prints its report and its sampled memory, in run order.
		if mems := sampled[scenario.RunnerVMM]; i < len(mems) && mems[i].Samples > 0 {
			d := mib(r.Memory.OverheadKiB) - mib(mems[i].PerGuestPeakKiB)
			diff = append(diff, d)
			if math.Abs(d) > math.Abs(rep.ReportMinusPerGuestMost) {
				rep.ReportMinusPerGuestMost = d
			}
		}
	}
	rep.VMMReportOwn, rep.ReportMinusPerGuest = median(own), median(diff)
	v, okV := rep.Runners[scenario.RunnerVMM]
	q, okQ := rep.Runners[scenario.RunnerQEMU]
	if okV && okQ && q.PerGuest > 0 && q.RSS > 0 {
		rep.Ratio, rep.RSSRatio = v.PerGuest/q.PerGuest, v.RSS/q.RSS
		rep.Targets["per_guest_fifth_of_qemu"] = rep.Ratio <= targetOwnQEMURatio
	}
	if okV {
		rep.Targets["per_guest_under_5MiB"] = v.PerGuest <= targetOwnMiB
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
	b.WriteString("memory beyond guest RAM, MiB (same Linux guest; the outer init samples each runner's /proc/PID/smaps and status alike), medians of each run's peaks:\n")
	fmt.Fprintf(&b, "  %-5s %2s %7s %7s %7s %7s %7s %7s %9s %9s\n", "", "n", "RSS", "anon", "file", "(dirty)", "ptables", "PSS", "per-guest", "guest RAM")
	for _, runner := range []string{scenario.RunnerVMM, scenario.RunnerQEMU} {
		if f, ok := rep.Runners[runner]; ok {
			fmt.Fprintf(&b, "  %-5s %2d %7.1f %7.1f %7.1f %7.1f %7.1f %7.1f %9.1f %9.1f\n",
				runner, f.N, f.RSS, f.Anon, f.File, f.FileDirty, f.PageTables, f.Pss, f.PerGuest, f.Guest)
		}
	}
	b.WriteString("  RSS: resident beyond guest RAM = anon (heap, stacks, copied-on-write data) + file (binary and libraries: page cache, shared\n" +
		"  by every process that maps them; dirty: not on disk, as all of an initramfs is); per-guest = anon + page tables: what one\n" +
		"  more guest costs the host (docs/report.md)\n")
	if rep.VMMReportOwn > 0 {
		fmt.Fprintf(&b, "  vmm's --report: overhead %.1f MiB (anon + page tables, at its own samples); minus sampled per-guest of the same run: median %+.1f, largest %+.1f MiB\n",
			rep.VMMReportOwn, rep.ReportMinusPerGuest, rep.ReportMinusPerGuestMost)
	}
	if rep.Ratio > 0 {
		fmt.Fprintf(&b, "  per-guest vmm/qemu %.2f (target <= %.1f: %t); RSS vmm/qemu %.2f",
			rep.Ratio, targetOwnQEMURatio, rep.Targets["per_guest_fifth_of_qemu"], rep.RSSRatio)
	} else {
		b.WriteString("  ratio vmm/qemu: n/a (a runner has no sampled run)")
	}
	if ok, measured := rep.Targets["per_guest_under_5MiB"]; measured {
		fmt.Fprintf(&b, "; vmm per-guest <= %d MiB: %t", targetOwnMiB, ok)
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
