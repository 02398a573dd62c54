package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/vmmdev/vmm/images/scenario"
)

// report is the benchmark's outcome.
type report struct {
	Runs []benchRun `json:"runs"`
	// Medians are per runner, over passing runs that reached the agent.
	Medians map[string]stat `json:"medians"`
	// Ratio is the vmm median over the QEMU median of the time to the
	// agent's first line; 0 when either is missing.
	Ratio float64 `json:"ratio_vmm_qemu"`
	// IO are the I/O figures, with -io.
	IO *ioReport `json:"io,omitempty"`
	// HyperV are the Hyper-V clock read costs, with -hyperv.
	HyperV *hvReport `json:"hyperv,omitempty"`
	// Firmware are the SeaBIOS/GRUB boot times, with -firmware.
	Firmware *fwReport `json:"firmware,omitempty"`
	// UEFI are the OVMF/GRUB boot times, with -uefi.
	UEFI *fwReport `json:"uefi,omitempty"`
	// Memory are the memory figures, with -footprint.
	Memory *memReport `json:"memory,omitempty"`
	// Exits are the exit round trips, with -exits.
	Exits *exitsReport `json:"exits,omitempty"`
	// CloudInit are the Debian image's times to cloud-init's final
	// message, with -cloudinit.
	CloudInit *ciReport `json:"cloud_init,omitempty"`
}

type benchRun struct {
	Runner     string  `json:"runner"`
	Run        int     `json:"run"`
	Pass       bool    `json:"pass"`
	Exit       int     `json:"exit"`
	FirstLineS float64 `json:"first_line_s"`
	TotalS     float64 `json:"total_s"`
}

type stat struct {
	N          int     `json:"n"`
	FirstLineS float64 `json:"first_line_s"`
	TotalS     float64 `json:"total_s"`
}

// summarize keeps the bench runs of the given runners, in the order they ran.
func summarize(runners []string, results []scenario.Result) report {
	rep := report{Medians: map[string]stat{}}
	firsts, totals := map[string][]float64{}, map[string][]float64{}
	for _, r := range results {
		runner := ""
		for _, name := range runners {
			if r.Name == scenarioName(name) {
				runner = name
			}
		}
		if runner == "" {
			continue
		}
		rep.Runs = append(rep.Runs, benchRun{Runner: runner, Run: r.Run, Pass: r.Pass, Exit: r.Exit, FirstLineS: r.FirstLineS, TotalS: r.TotalS})
		if r.Pass && r.FirstLineS >= 0 {
			firsts[runner] = append(firsts[runner], r.FirstLineS)
			totals[runner] = append(totals[runner], r.TotalS)
		}
	}
	for runner, f := range firsts {
		rep.Medians[runner] = stat{N: len(f), FirstLineS: median(f), TotalS: median(totals[runner])}
	}
	v, okV := rep.Medians[scenario.RunnerVMM]
	q, okQ := rep.Medians[scenario.RunnerQEMU]
	if okV && okQ && q.FirstLineS > 0 {
		rep.Ratio = v.FirstLineS / q.FirstLineS
	}
	return rep
}

// median of a non-empty sample; the mean of the middle two for even sizes.
func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (rep report) write(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "%-6s %4s %-5s %5s %14s %9s\n", "runner", "run", "pass", "exit", "first_line_s", "total_s")
	for _, r := range rep.Runs {
		fmt.Fprintf(&b, "%-6s %4d %-5t %5d %14.2f %9.2f\n", r.Runner, r.Run, r.Pass, r.Exit, r.FirstLineS, r.TotalS)
	}
	runners := make([]string, 0, len(rep.Medians))
	for r := range rep.Medians {
		runners = append(runners, r)
	}
	sort.Strings(runners)
	for _, r := range runners {
		m := rep.Medians[r]
		fmt.Fprintf(&b, "median %-5s n=%d  time to agent first line %.2fs  total %.2fs\n", r, m.N, m.FirstLineS, m.TotalS)
	}
	if rep.Ratio > 0 {
		fmt.Fprintf(&b, "ratio vmm/qemu (time to agent first line): %.2f\n", rep.Ratio)
	} else {
		fmt.Fprintf(&b, "ratio vmm/qemu: n/a (a runner has no successful run)\n")
	}
	_, _ = io.WriteString(w, b.String())
}
