package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The I/O benchmark's fixtures in the outer machine: one disk image, one
// tap with the agent's TCP peer. Every runner and disk interface gets the
// same image, recreated for every run.
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
	// ioQEMUDrive is QEMU's backend for the image on every interface.
	ioQEMUDrive = "id=d0,file=" + ioImage + ",format=raw,if=none,cache=writeback,aio=threads"
	// ioQEMUQcow2Drive is the same for the qcow2 row.
	ioQEMUQcow2Drive = "id=d0,file=" + ioImage + ",format=qcow2,if=none,cache=writeback,aio=threads"
)

// The disk interfaces compared, in report order: vmm's --disk if= values.
const (
	ifVirtio = "virtio"
	ifNVMe   = "nvme"
	ifAHCI   = "ahci"
	// ifQcow2 is virtio-blk on a fully allocated qcow2 image holding the
	// same data (issue 16: against the virtio row, raw; against QEMU's
	// qcow2 driver on the same image).
	ifQcow2 = "qcow2"
	// ifVMBus is a LUN of vmm's Hyper-V synthetic SCSI controller
	// (issue 14: against vmm's virtio-blk on the same image; QEMU has no
	// storvsc, so no QEMU run).
	ifVMBus = "vmbus"
	// ifNetVSC is the virtio-blk row with its NIC on VMBus: vmm's
	// synthetic NIC (netvsc) against its virtio-net on the same tap
	// (issue 15; QEMU has no netvsc, so no QEMU run). Only its TCP
	// figures count.
	ifNetVSC = "netvsc"
)

var ioInterfaces = []string{ifVirtio, ifNVMe, ifAHCI, ifQcow2, ifVMBus, ifNetVSC}

// ioNetVSCMAC is the netvsc row's NIC address: the agent finds the NIC by
// it, once VMBus has offered it.
const ioNetVSCMAC = "52:54:00:12:34:58"

// ioDrivers are the guest drivers that iobench must report per interface:
// figures from another driver are a miswired runner, not a measure.
var ioDrivers = map[string]string{ifVirtio: "virtio_blk", ifNVMe: "nvme", ifAHCI: "ahci", ifQcow2: "virtio_blk",
	ifVMBus: "hv_storvsc", ifNetVSC: "virtio_blk"}

// ioFigures are the iobench check's keys, in report order (higher is
// better for all).
var ioFigures = []string{"seq_read", "seq_write", "randread_4k", "tcp_tx", "tcp_rx"}

// ioInterfaceFigures are the figures an interface's scenario gives: TCP is
// measured beside virtio-blk, over virtio-net and over netvsc.
func ioInterfaceFigures(iface string) []string {
	switch iface {
	case ifVirtio:
		return ioFigures
	case ifNetVSC:
		return ioFigures[3:]
	}
	return ioFigures[:3]
}

// hasNet is whether an interface's scenario has a NIC.
func hasNet(iface string) bool { return iface == ifVirtio || iface == ifNetVSC }

func ioScenarioName(iface, runner string) string { return "iobench-" + iface + "-" + runner }

// ioScenarios are one I/O scenario per disk interface and runner: the
// agent's iobench check on the disk with serial ioSerial. virtio-blk runs
// with a virtio-net NIC (QEMU: virtio-mmio devices of microvm, no vhost);
// NVMe and AHCI compare vmm's controllers with QEMU's on -M q35 (its nvme
// device; its built-in ICH9 AHCI, ide.0 being the first port).
func (o options) ioScenarios() ([]scenario.Scenario, error) {
	var list []scenario.Scenario
	for _, iface := range ioInterfaces {
		if !slices.Contains(o.ioIfaces, iface) {
			continue
		}
		for _, runner := range o.runners {
			if (iface == ifVMBus || iface == ifNetVSC) && runner != scenario.RunnerVMM {
				continue
			}
			s, err := o.ioScenario(iface, runner)
			if err != nil {
				return nil, err
			}
			list = append(list, s)
		}
	}
	return list, nil
}

func (o options) ioScenario(iface, runner string) (scenario.Scenario, error) {
	cmdline := fmt.Sprintf("vmm.iobench=%s:%d", ioSerial, ioSeed)
	if hasNet(iface) {
		cmdline += fmt.Sprintf(" vmm.net=%s,%s:%d,%d", ioGuestAddr, ioTapAddr, ioPort, ioNetBytes)
	}
	if iface == ifNetVSC {
		cmdline += " vmm.net_mac=" + ioNetVSCMAC
	}
	g := testhost.Guest{CPUs: o.cpus, MemoryMiB: o.memory, Checks: []string{"boot", ioCheck}, Quiet: true, ExtraCmdline: cmdline}
	kill := o.timeout
	if runner == scenario.RunnerVMM {
		g.Timeout = o.timeout
		kill += 30 * time.Second
	}
	args, err := g.Args(runner)
	if err != nil {
		return scenario.Scenario{}, err
	}
	switch runner {
	case scenario.RunnerVMM:
		disk := ioImage + ",serial=" + ioSerial
		if iface != ifVirtio && iface != ifQcow2 && iface != ifNetVSC {
			disk += ",if=" + iface
		}
		if iface == ifVMBus || iface == ifNetVSC {
			// KVM's timers where the host has them: the row compares the
			// synthetic devices' I/O paths with virtio's, whose guest
			// keeps its LAPIC timer in KVM; vmm's userspace timers cost
			// each tick a userspace exit (docs/design.md).
			args = append(args, "--hyperv", testhost.KernelTimersHyperV, "--vmbus")
		}
		args = append(args, "--disk", disk)
		switch iface {
		case ifVirtio:
			args = append(args, "--net", "tap="+ioTap)
		case ifNetVSC:
			args = append(args, "--net", "tap="+ioTap+",if=vmbus,mac="+ioNetVSCMAC)
		}
	case scenario.RunnerQEMU:
		switch iface {
		case ifVirtio:
			args = append(args,
				"-drive", ioQEMUDrive,
				"-device", "virtio-blk-device,drive=d0,serial="+ioSerial,
				"-netdev", "tap,id=n0,ifname="+ioTap+",script=no,downscript=no,vhost=off",
				"-device", "virtio-net-device,netdev=n0")
		case ifNVMe:
			args = append(qemuQ35(args), "-drive", ioQEMUDrive, "-device", "nvme,drive=d0,serial="+ioSerial)
		case ifAHCI:
			args = append(qemuQ35(args), "-drive", ioQEMUDrive, "-device", "ide-hd,drive=d0,bus=ide.0,serial="+ioSerial)
		case ifQcow2:
			args = append(args, "-drive", ioQEMUQcow2Drive, "-device", "virtio-blk-device,drive=d0,serial="+ioSerial)
		}
	}
	s := scenario.Scenario{
		Name: ioScenarioName(iface, runner), Runner: runner, Args: args, Repeat: o.n, Bench: true, Stream: true,
		WantChecks: map[string]string{"boot": scenario.Pass, ioCheck: scenario.Pass}, Timeout: kill.String(),
		Disks:  []scenario.Disk{{Path: ioImage, Size: ioImageSize, Seed: ioSeed, WantSeed: ioSeed}},
		Report: o.ioReport && runner == scenario.RunnerVMM,
	}
	if iface == ifQcow2 {
		s.Disks[0].Format = "qcow2"
	}
	if hasNet(iface) {
		s.Tap = &scenario.Tap{Name: ioTap, Addr: ioTapAddr + "/24", Port: ioPort}
	}
	return s, nil
}

// qemuQ35 turns the microvm arguments into q35 ones: q35 boots the kernel
// through SeaBIOS, which the outer initramfs carries when named here.
func qemuQ35(args []string) []string {
	return append(withMachine(args, "q35"), "-bios", images.OuterSeaBIOS)
}

// withMachine returns QEMU arguments with -M's value replaced by machine.
func withMachine(args []string, machine string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "-M" {
			out[i+1] = machine
		}
	}
	return out
}

// ioReport holds the I/O figures of each run and their medians, per disk
// interface and runner.
type ioReport struct {
	// Runs and Medians are keyed by interface, then runner.
	Runs    map[string]map[string][]map[string]float64 `json:"runs"`
	Medians map[string]map[string]map[string]float64   `json:"medians"`
	// Ratios are vmm over QEMU per interface and figure (above 1: vmm is
	// faster).
	Ratios map[string]map[string]float64 `json:"ratios_vmm_qemu"`
	// Qcow2Raw is vmm's qcow2 row over its raw virtio row, per figure
	// (issue 16's goal: at least 0.8).
	Qcow2Raw map[string]float64 `json:"ratios_vmm_qcow2_raw,omitempty"`
	// VMBusVirtio is vmm's storvsc row over its virtio-blk row, per
	// figure (issue 14's goal: at least 0.8).
	VMBusVirtio map[string]float64 `json:"ratios_vmm_storvsc_virtio,omitempty"`
	// NetVSCVirtio is vmm's netvsc TCP over its virtio-net TCP, each way
	// (issue 15's goal: at least 0.8).
	NetVSCVirtio map[string]float64 `json:"ratios_vmm_netvsc_virtio,omitempty"`
	// VMMCounts are, with -io-report, the medians per interface of the
	// counters in vmm's reports that tell where an interface's I/O goes
	// (reportCounts).
	VMMCounts map[string]map[string]float64 `json:"vmm_counts,omitempty"`
	// Problems are passing iobench lines whose figures were left out.
	Problems []string `json:"problems,omitempty"`
}

// reportCounts flattens the counters of one vmm report that the I/O
// summary shows: exits by kind, synthetic MSR accesses, hypercalls, SINTs
// raised, synthetic timer expiries and each VMBus channel's packets and
// signals. Keys are the JSON paths, array elements by index.
func reportCounts(v any) map[string]float64 {
	out := map[string]float64{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(path+"."+k, e)
			}
		case []any:
			for i, e := range x {
				walk(path+"."+strconv.Itoa(i), e)
			}
		case float64:
			if wantCount(path) {
				out[strings.TrimPrefix(path, ".")] = x
			}
		}
	}
	walk("", v)
	return out
}

func wantCount(path string) bool {
	prefix := func(p string) bool { return strings.HasPrefix(path, p) }
	suffix := func(s ...string) bool {
		for _, x := range s {
			if strings.HasSuffix(path, "."+x) {
				return true
			}
		}
		return false
	}
	switch {
	case prefix(".exits."), prefix(".hyperv.msrs."):
		return true
	case prefix(".hyperv.hypercalls."):
		return suffix("calls")
	case prefix(".hyperv.vps."):
		return suffix("sints_raised", "expired", "delivered", "auto_eois")
	case prefix(".hyperv.vmbus.bus.channels."):
		return suffix("packets_in", "packets_out", "signals_in", "signals_out")
	}
	return false
}

// vmmCounts are the medians of reportCounts over the vmm reports of each
// interface's scenario.
func vmmCounts(console map[string][]string) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for _, iface := range ioInterfaces {
		reps, _ := scenario.ParseReports[any](console[ioScenarioName(iface, scenario.RunnerVMM)])
		samples := map[string][]float64{}
		for _, r := range reps {
			for k, v := range reportCounts(r) {
				samples[k] = append(samples[k], v)
			}
		}
		if len(samples) == 0 {
			continue
		}
		out[iface] = map[string]float64{}
		for k, s := range samples {
			// A counter absent from some runs was zero there.
			s = append(s, make([]float64, len(reps)-len(s))...)
			out[iface][k] = median(s)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
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

// detailWord returns the value of key=VALUE in a detail, or "".
func detailWord(detail, key string) string {
	for _, kv := range strings.Fields(detail) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// summarizeIO collects the iobench figures from the streamed consoles.
func summarizeIO(runners []string, console map[string][]string) ioReport {
	rep := ioReport{Runs: map[string]map[string][]map[string]float64{}, Medians: map[string]map[string]map[string]float64{},
		Ratios: map[string]map[string]float64{}, VMMCounts: vmmCounts(console)}
	for _, iface := range ioInterfaces {
		for _, runner := range runners {
			name := ioScenarioName(iface, runner)
			samples := map[string][]float64{}
			for _, line := range console[name] {
				d, ok := agentDetail(line, ioCheck)
				if !ok {
					continue
				}
				if drv := detailWord(d, "driver"); drv != ioDrivers[iface] {
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: driver %q, want %q", name, drv, ioDrivers[iface]))
					continue
				}
				figs := parseFigures(d)
				if rep.Runs[iface] == nil {
					rep.Runs[iface] = map[string][]map[string]float64{}
				}
				rep.Runs[iface][runner] = append(rep.Runs[iface][runner], figs)
				for k, v := range figs {
					samples[k] = append(samples[k], v)
				}
			}
			if len(samples) > 0 {
				if rep.Medians[iface] == nil {
					rep.Medians[iface] = map[string]map[string]float64{}
				}
				rep.Medians[iface][runner] = map[string]float64{}
				for k, s := range samples {
					rep.Medians[iface][runner][k] = median(s)
				}
			}
		}
		if iface == ifQcow2 || iface == ifVMBus || iface == ifNetVSC {
			ratios := map[string]*map[string]float64{ifQcow2: &rep.Qcow2Raw, ifVMBus: &rep.VMBusVirtio,
				ifNetVSC: &rep.NetVSCVirtio}[iface]
			qv, rv := rep.Medians[iface][scenario.RunnerVMM], rep.Medians[ifVirtio][scenario.RunnerVMM]
			for _, k := range ioInterfaceFigures(iface) {
				if qv[k] > 0 && rv[k] > 0 {
					if *ratios == nil {
						*ratios = map[string]float64{}
					}
					(*ratios)[k] = qv[k] / rv[k]
				}
			}
		}
		v, q := rep.Medians[iface][scenario.RunnerVMM], rep.Medians[iface][scenario.RunnerQEMU]
		for _, k := range ioInterfaceFigures(iface) {
			if v[k] > 0 && q[k] > 0 {
				if rep.Ratios[iface] == nil {
					rep.Ratios[iface] = map[string]float64{}
				}
				rep.Ratios[iface][k] = v[k] / q[k]
			}
		}
	}
	return rep
}

// write prints one row per interface and figure: the vmm and QEMU medians
// (with their run counts) and vmm/QEMU.
func (rep ioReport) write(w io.Writer) {
	var b strings.Builder
	b.WriteString("I/O medians (seq MB/s, 4 KiB random-read IOPS at queue depth 1, TCP MB/s guest->host (tx), host->guest (rx);\n" +
		"QEMU: microvm virtio-mmio for virtio, q35 nvme and ICH9 AHCI for nvme and ahci;\n" +
		"qcow2: virtio-blk on a fully allocated qcow2 of the same data, QEMU's qcow2 driver on microvm;\n" +
		"vmbus: a storvsc LUN (--hyperv all,kernel-timers --vmbus), no QEMU peer;\n" +
		"netvsc: TCP over the synthetic NIC (--net ...,if=vmbus) on the same tap, no QEMU peer):\n")
	fmt.Fprintf(&b, "%-7s %-12s %5s %10s %6s %10s %9s\n", "iface", "figure", "vmm_n", "vmm", "qemu_n", "qemu", "vmm/qemu")
	cell := func(iface, runner, k string) string {
		if x, ok := rep.Medians[iface][runner][k]; ok {
			return fmt.Sprintf("%.1f", x)
		}
		return "-"
	}
	for _, iface := range ioInterfaces {
		for _, k := range ioInterfaceFigures(iface) {
			ratio := "n/a"
			if x, ok := rep.Ratios[iface][k]; ok {
				ratio = fmt.Sprintf("%.2f", x)
			}
			fmt.Fprintf(&b, "%-7s %-12s %5d %10s %6d %10s %9s\n", iface, k,
				len(rep.Runs[iface][scenario.RunnerVMM]), cell(iface, scenario.RunnerVMM, k),
				len(rep.Runs[iface][scenario.RunnerQEMU]), cell(iface, scenario.RunnerQEMU, k), ratio)
		}
	}
	for _, r := range []struct {
		title  string
		ratios map[string]float64
		iface  string
	}{{"vmm qcow2/raw:", rep.Qcow2Raw, ifQcow2}, {"vmm storvsc/virtio-blk:", rep.VMBusVirtio, ifVMBus},
		{"vmm netvsc/virtio-net:", rep.NetVSCVirtio, ifNetVSC}} {
		if len(r.ratios) == 0 {
			continue
		}
		b.WriteString(r.title)
		for _, k := range ioInterfaceFigures(r.iface) {
			if x, ok := r.ratios[k]; ok {
				fmt.Fprintf(&b, " %s=%.2f", k, x)
			}
		}
		b.WriteString("\n")
	}
	for _, iface := range ioInterfaces {
		c := rep.VMMCounts[iface]
		if len(c) == 0 {
			continue
		}
		keys := make([]string, 0, len(c))
		for k, v := range c {
			if v > 0 {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		fmt.Fprintf(&b, "vmm counts per run, %s (medians of its reports):\n", iface)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %-48s %10.0f\n", k, c[k])
		}
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(&b, "left out: %s\n", p)
	}
	_, _ = io.WriteString(w, b.String())
}
