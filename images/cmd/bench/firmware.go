package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The firmware benchmark (-firmware): Debian's SeaBIOS boots the GRUB disk
// from virtio-blk under vmm (--firmware seabios) and under QEMU -M pc with
// the same SeaBIOS image and disk, timed from runner start to GRUB's menu line
// (the scenario's Mark) and to the agent's first line.
func fwScenarioName(runner string) string { return "fw-" + runner }

func (o options) firmwareScenarios() ([]scenario.Scenario, error) {
	var list []scenario.Scenario
	for _, runner := range o.runners {
		kill, vmmTimeout := o.timeout, ""
		if runner == scenario.RunnerVMM {
			vmmTimeout = o.timeout.String()
			kill += 30 * time.Second
		}
		args, err := testhost.FirmwareArgs(runner, o.cpus, o.memory, vmmTimeout)
		if err != nil {
			return nil, err
		}
		want, wantExit := testhost.FirmwareChecks(), 0
		if runner == scenario.RunnerQEMU {
			// QEMU's SeaBIOS installs QEMU's own ACPI tables (OEM BOCHS), so
			// the agent's acpi-tables check fails there by design and the
			// agent reports it through isa-debug-exit: (1<<1)|1.
			want["acpi-tables"], wantExit = scenario.Fail, 3
		}
		list = append(list, scenario.Scenario{
			Name: fwScenarioName(runner), Runner: runner, Args: args, Repeat: o.n, Bench: true,
			Mark: grubdisk.MenuMarker, WantChecks: want, WantExit: wantExit, Timeout: kill.String(),
		})
	}
	return list, nil
}

// fwReport holds a firmware boot's medians per runner, over passing runs.
type fwReport struct {
	// Title says what booted; Mark names the line MarkS times.
	Title string `json:"title"`
	Mark  string `json:"mark"`
	// MarkS and AgentS are seconds to the mark and to the agent's first line.
	MarkS  map[string]float64 `json:"mark_s"`
	AgentS map[string]float64 `json:"agent_first_line_s"`
	N      map[string]int     `json:"n"`
}

// summarizeBoot gathers the results of the scenarios name(runner) into rep.
func summarizeBoot(rep fwReport, name func(string) string, runners []string, results []scenario.Result) fwReport {
	rep.MarkS, rep.AgentS, rep.N = map[string]float64{}, map[string]float64{}, map[string]int{}
	for _, runner := range runners {
		var mark, agent []float64
		for _, r := range results {
			if r.Name == name(runner) && r.Pass && r.MarkS >= 0 && r.FirstLineS >= 0 {
				mark, agent = append(mark, r.MarkS), append(agent, r.FirstLineS)
			}
		}
		if len(mark) > 0 {
			rep.MarkS[runner], rep.AgentS[runner], rep.N[runner] = median(mark), median(agent), len(mark)
		}
	}
	return rep
}

func summarizeFirmware(runners []string, results []scenario.Result) fwReport {
	return summarizeBoot(fwReport{Title: "firmware boot (SeaBIOS -> GRUB -> Linux, virtio-blk)", Mark: "GRUB menu"},
		fwScenarioName, runners, results)
}

func (rep fwReport) write(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, medians:\n", rep.Title)
	for _, runner := range []string{scenario.RunnerVMM, scenario.RunnerQEMU} {
		if n, ok := rep.N[runner]; ok {
			fmt.Fprintf(&b, "  %-5s n=%d  to %s %.2fs  to agent first line %.2fs\n", runner, n, rep.Mark, rep.MarkS[runner], rep.AgentS[runner])
		}
	}
	if q, ok := rep.MarkS[scenario.RunnerQEMU]; ok && q > 0 {
		if v, ok := rep.MarkS[scenario.RunnerVMM]; ok {
			fmt.Fprintf(&b, "  ratio vmm/qemu: %s %.2f  agent first line %.2f\n", rep.Mark, v/q, rep.AgentS[scenario.RunnerVMM]/rep.AgentS[scenario.RunnerQEMU])
		}
	}
	_, _ = io.WriteString(w, b.String())
}
