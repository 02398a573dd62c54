package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The I/O benchmark's fixtures in the outer machine: one disk image, one
// tap with the agent's TCP peer. Both runners get the same, recreated for
// every run.
const (
	ioImage     = "/tmp/vmm-bench.img"
	ioImageSize = 32 << 20
	ioSeed      = 7
	ioSerial    = "vmm-bench"
	ioTap       = "vmmtap0"
	ioTapAddr   = "10.0.2.1"
	ioGuestAddr = "10.0.2.15/24"
	ioPort      = 7777
	ioNetBytes  = 16 << 20
	ioCheck     = "iobench"
)

// ioFigures are the iobench check's keys, in report order, with whether
// higher is better (all are).
var ioFigures = []string{"seq_read", "seq_write", "randread_4k", "tcp_tx"}

func ioScenarioName(runner string) string { return "iobench-" + runner }

// ioScenarios are one I/O scenario per runner: the agent's iobench check on
// a virtio-blk disk and a virtio-net NIC (QEMU: virtio-mmio devices of
// microvm, no vhost).
func (o options) ioScenarios() ([]scenario.Scenario, error) {
	var list []scenario.Scenario
	for _, runner := range o.runners {
		g := testhost.Guest{CPUs: o.cpus, MemoryMiB: o.memory, Checks: []string{"boot", ioCheck}, Quiet: true,
			ExtraCmdline: fmt.Sprintf("vmm.iobench=%s:%d vmm.net=%s,%s:%d,%d", ioSerial, ioSeed, ioGuestAddr, ioTapAddr, ioPort, ioNetBytes)}
		kill := o.timeout
		if runner == scenario.RunnerVMM {
			g.Timeout = o.timeout
			kill += 30 * time.Second
		}
		args, err := g.Args(runner)
		if err != nil {
			return nil, err
		}
		switch runner {
		case scenario.RunnerVMM:
			args = append(args, "--disk", ioImage+",serial="+ioSerial, "--net", "tap="+ioTap)
		case scenario.RunnerQEMU:
			args = append(args,
				"-drive", "id=d0,file="+ioImage+",format=raw,if=none,cache=writeback,aio=threads",
				"-device", "virtio-blk-device,drive=d0,serial="+ioSerial,
				"-netdev", "tap,id=n0,ifname="+ioTap+",script=no,downscript=no,vhost=off",
				"-device", "virtio-net-device,netdev=n0")
		}
		list = append(list, scenario.Scenario{
			Name: ioScenarioName(runner), Runner: runner, Args: args, Repeat: o.n, Bench: true, Stream: true,
			WantChecks: map[string]string{"boot": scenario.Pass, ioCheck: scenario.Pass}, Timeout: kill.String(),
			Disks: []scenario.Disk{{Path: ioImage, Size: ioImageSize, Seed: ioSeed, WantSeed: ioSeed}},
			Tap:   &scenario.Tap{Name: ioTap, Addr: ioTapAddr + "/24", Port: ioPort},
		})
	}
	return list, nil
}

// ioReport holds the I/O figures of each run and their medians per runner.
type ioReport struct {
	Runs    map[string][]map[string]float64 `json:"runs"`
	Medians map[string]map[string]float64   `json:"medians"`
	// Ratios are vmm over QEMU per figure (above 1: vmm is faster).
	Ratios map[string]float64 `json:"ratios_vmm_qemu"`
}

// agentDetail returns the detail of check name in a console line.
func agentDetail(line, name string) (string, bool) {
	c, ok := scenario.ParseAgentCheck(line)
	if !ok || c.Name != name || c.Result != scenario.Pass {
		return "", false
	}
	_, quoted, ok := strings.Cut(line, " detail=")
	if !ok {
		return "", false
	}
	var d string
	if err := json.Unmarshal([]byte(strings.TrimRight(quoted, "\r\n")), &d); err != nil {
		return "", false
	}
	return d, true
}

// parseFigures reads "key=NUMBERunit" pairs; other words are skipped.
func parseFigures(detail string) map[string]float64 {
	out := map[string]float64{}
	for _, kv := range strings.Fields(detail) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		end := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if end >= 0 {
			v = v[:end]
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[k] = f
		}
	}
	return out
}

// summarizeIO collects the iobench figures from the streamed consoles.
func summarizeIO(runners []string, console map[string][]string) ioReport {
	rep := ioReport{Runs: map[string][]map[string]float64{}, Medians: map[string]map[string]float64{}, Ratios: map[string]float64{}}
	for _, runner := range runners {
		samples := map[string][]float64{}
		for _, line := range console[ioScenarioName(runner)] {
			d, ok := agentDetail(line, ioCheck)
			if !ok {
				continue
			}
			figs := parseFigures(d)
			rep.Runs[runner] = append(rep.Runs[runner], figs)
			for k, v := range figs {
				samples[k] = append(samples[k], v)
			}
		}
		if len(samples) > 0 {
			rep.Medians[runner] = map[string]float64{}
			for k, s := range samples {
				rep.Medians[runner][k] = median(s)
			}
		}
	}
	v, q := rep.Medians[scenario.RunnerVMM], rep.Medians[scenario.RunnerQEMU]
	for _, k := range ioFigures {
		if v[k] > 0 && q[k] > 0 {
			rep.Ratios[k] = v[k] / q[k]
		}
	}
	return rep
}

func (rep ioReport) write(w io.Writer) {
	var b strings.Builder
	runners := make([]string, 0, len(rep.Medians))
	for r := range rep.Medians {
		runners = append(runners, r)
	}
	sort.Strings(runners)
	fmt.Fprintf(&b, "I/O medians (seq MB/s, 4 KiB random-read IOPS, TCP guest->host MB/s):\n%-6s %3s", "runner", "n")
	for _, k := range ioFigures {
		fmt.Fprintf(&b, " %12s", k)
	}
	b.WriteString("\n")
	for _, r := range runners {
		fmt.Fprintf(&b, "%-6s %3d", r, len(rep.Runs[r]))
		for _, k := range ioFigures {
			fmt.Fprintf(&b, " %12.1f", rep.Medians[r][k])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%-10s", "vmm/qemu")
	for _, k := range ioFigures {
		if x, ok := rep.Ratios[k]; ok {
			fmt.Fprintf(&b, " %12.2f", x)
		} else {
			fmt.Fprintf(&b, " %12s", "n/a")
		}
	}
	b.WriteString("\n")
	_, _ = io.WriteString(w, b.String())
}
