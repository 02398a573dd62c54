package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
	"github.com/vmmdev/vmm/vmm/hyperv"
)

// hypervScenarios boot Debian's kernel with every enlightenment vmm
// emulates (--hyperv all): once to poweroff, once on two vCPUs, whose
// report must show the multi-CPU paths used (checkSMPReport), and once
// panicking through sysrq-c, which Linux reports through the Hyper-V crash
// MSRs.
func hypervScenarios() ([]scenario.Scenario, error) {
	specs := []struct {
		name   string
		guest  testhost.Guest
		exit   int
		stream bool
		report bool
		extra  []string
	}{
		// Streamed: the test compares its "Hyper-V:" lines with QEMU's.
		{"hyperv", testhost.Guest{Quiet: true, Checks: []string{"boot", "hyperv", "hyperv-clock"}}, exitPoweroff, true, false, nil},
		// Streamed: the test reads vmm's stop reason (P0-P4) from its log.
		{"hyperv-panic", testhost.Guest{Action: "panic", Quiet: true, Checks: []string{"boot", "hyperv"}},
			exitPanic, true, false, nil},
		// Streamed for its report: the test reads per-vCPU SynIC and timers
		// and the IPI and TLB flush hypercall counts from it.
		// modules: hv_vmbus finds no VMBus device and is skipped.
		{hypervSMP, testhost.Guest{CPUs: 2, ExpectCPUs: 2, Quiet: true,
			Checks: []string{"boot", "cpus", "hyperv", "hyperv-clock", "hyperv-smp", "modules"}}, exitPoweroff, true, true, nil},
		// Streamed for its report: the test reads the VMBus summary.
		{vmbusScenario, testhost.Guest{Quiet: true, Checks: []string{"boot", "hyperv", "modules", "vmbus"}},
			exitPoweroff, true, true, []string{"--vmbus"}},
		// VMBus on two vCPUs with KVM's timers (kernel-timers): the SynIC
		// stays vmm's and is shared with KVM's; the report must say the
		// timers were KVM's (checkKernelTimersReport).
		{kernelTimersScenario, testhost.Guest{CPUs: 2, ExpectCPUs: 2, Quiet: true,
			Checks: []string{"boot", "cpus", "hyperv", "hyperv-clock", "modules", "vmbus"}},
			exitPoweroff, true, true, []string{"--vmbus", "--hyperv", "all,kernel-timers"}},
		// A panic with VMBus channels open still ends at once with 3
		// (Linux also unloads VMBus from a panic notifier).
		{"vmbus-panic", testhost.Guest{Action: "panic", Quiet: true, Checks: []string{"boot", "vmbus"}},
			exitPanic, true, true, []string{"--vmbus"}},
	}
	list := make([]scenario.Scenario, 0, len(specs)+1)
	for _, s := range specs {
		g := s.guest
		g.Timeout = 150 * time.Second
		args, err := g.Args(scenario.RunnerVMM)
		if err != nil {
			return nil, err
		}
		if args, err = testhost.WithHyperV(scenario.RunnerVMM, args); err != nil {
			return nil, err
		}
		args = append(args, s.extra...)
		args = append(args, "--log-level", "info")
		want := map[string]string{}
		for _, c := range g.Checks {
			want[c] = scenario.Pass
		}
		list = append(list, scenario.Scenario{
			Name: s.name, Args: args, WantExit: s.exit, WantChecks: want, Stream: s.stream, Report: s.report,
			Timeout: (g.Timeout + 30*time.Second).String(),
		})
	}
	q, err := hypervQEMUScenario()
	if err != nil {
		return nil, err
	}
	return append(list, q), nil
}

// hypervQEMUScenario boots the same guest under QEMU with the equivalent
// hv-* flags, so the test can compare the kernel's "Hyper-V:" lines.
func hypervQEMUScenario() (scenario.Scenario, error) {
	g := testhost.Guest{Quiet: true, Checks: []string{"boot", "hyperv", "hyperv-clock"}}
	args, err := g.Args(scenario.RunnerQEMU)
	if err != nil {
		return scenario.Scenario{}, err
	}
	if args, err = testhost.WithHyperV(scenario.RunnerQEMU, args); err != nil {
		return scenario.Scenario{}, err
	}
	want := map[string]string{}
	for _, c := range g.Checks {
		want[c] = scenario.Pass
	}
	return scenario.Scenario{Name: "hyperv-qemu", Runner: scenario.RunnerQEMU, Args: args, WantExit: exitPoweroff,
		WantChecks: want, Stream: true, Timeout: "180s"}, nil
}

// hypervLines returns the "Hyper-V:" kernel lines the agent's hyperv check
// reported in a streamed run's output.
func hypervLines(output []string) ([]string, bool) {
	for _, l := range output {
		_, after, ok := strings.Cut(l, "VMM-AGENT: check=hyperv result=pass detail=")
		if !ok {
			continue
		}
		var detail string
		if json.Unmarshal([]byte(after), &detail) != nil {
			return nil, false
		}
		_, list, ok := strings.Cut(detail, "Hyper-V lines: [")
		if !ok {
			return nil, false
		}
		return strings.Split(strings.TrimSuffix(list, "]"), " | "), true
	}
	return nil, false
}

// compareHyperV checks that Linux printed the same "Hyper-V:" feature
// lines under vmm and under QEMU with the equivalent hv-* flags. The
// privilege-flags line is left out: its bits differ by design (vmm
// advertises DeprecatingAEOI, QEMU its partition-dynamic bit).
func compareHyperV(console map[string][]string) error {
	mine, ok1 := hypervLines(console["hyperv"])
	theirs, ok2 := hypervLines(console["hyperv-qemu"])
	if !ok1 || !ok2 {
		return fmt.Errorf("no hyperv check line to compare (vmm: %t, qemu: %t)", ok1, ok2)
	}
	keep := func(lines []string) []string {
		var out []string
		for _, l := range lines {
			if !strings.HasPrefix(l, "privilege flags") {
				out = append(out, l)
			}
		}
		slices.Sort(out)
		return out
	}
	a, b := keep(mine), keep(theirs)
	if !slices.Equal(a, b) {
		return fmt.Errorf("Hyper-V lines differ:\nvmm:  %q\nqemu: %q", a, b)
	}
	// vapic (in "all" where the host's KVM serves it, as in the nested
	// host): Linux then EOIs, sends IPIs and sets TPR through the MSRs.
	if !slices.ContainsFunc(a, func(l string) bool { return strings.HasPrefix(l, enlightenedAPIC) }) {
		return fmt.Errorf("no %q line: vapic not in use (vmm: %q)", enlightenedAPIC, a)
	}
	return nil
}

// enlightenedAPIC starts the line Linux prints when the hints recommend
// the APIC access MSRs (arch/x86/hyperv/hv_apic.c).
const enlightenedAPIC = "Using enlightened APIC"

// consoleWants are lines a scenario's streamed output must contain: the
// panic must end vmm through the crash MSRs, with P0-P4 in its stop reason.
func consoleWants(name string) []string {
	switch name {
	case "hyperv-panic":
		return []string{"from hyperv: guest crash (Hyper-V crash MSRs) P0="}
	case uefiUnsigned:
		return []string{uefiRefused}
	}
	return nil
}

// withPass returns checks plus names, all wanted to pass.
func withPass(checks map[string]string, names ...string) map[string]string {
	out := maps.Clone(checks)
	for _, n := range names {
		out[n] = scenario.Pass
	}
	return out
}

// hypervSMP is the two-vCPU Hyper-V scenario.
const hypervSMP = "hyperv-2cpu"

// smpReport is the part of vmm's report checkSMPReport reads.
type smpReport struct {
	HyperV *hyperv.Summary `json:"hyperv"`
}

// checkSMPReport checks from the two-vCPU run's report that the guest used
// the enlightenments on both vCPUs: a direct-mode synthetic timer
// delivering on each, IPIs by HvCallSendSyntheticClusterIpi(Ex) and remote
// TLB flushes by hypercall, all answered with success.
func checkSMPReport(console []string) error {
	reps, err := scenario.ParseReports[smpReport](console)
	if err != nil {
		return err
	}
	if len(reps) != 1 || reps[0].HyperV == nil {
		return fmt.Errorf("want one report with a hyperv summary, have %d", len(reps))
	}
	s := reps[0].HyperV
	var problems []string
	if len(s.VPs) != 2 {
		problems = append(problems, fmt.Sprintf("%d vCPUs in the summary, want 2", len(s.VPs)))
	}
	// No SynIC check: Linux enables SCONTROL from its VMBus driver only,
	// which this guest does not load; direct-mode timers work without it.
	for _, vp := range s.VPs {
		if s.Timers == "kernel" {
			break // KVM's timers: vmm sees none (the in-guest hyperv-smp check still runs)
		}
		direct := false
		for _, tm := range vp.Timers {
			direct = direct || tm.Mode == "direct" && tm.Delivered > 0
		}
		if !direct {
			problems = append(problems, fmt.Sprintf("vCPU %d: no direct-mode timer delivered (%+v)", vp.VP, vp.Timers))
		}
	}
	calls := func(names ...string) (ok, all uint64) {
		for _, n := range names {
			c := s.Hypercalls[n]
			ok += c.Statuses["SUCCESS"]
			all += c.Calls
		}
		return ok, all
	}
	for _, family := range [][]string{
		{"HvSendSyntheticClusterIpi", "HvSendSyntheticClusterIpiEx"},
		{"HvFlushVirtualAddressSpace", "HvFlushVirtualAddressList", "HvFlushVirtualAddressSpaceEx", "HvFlushVirtualAddressListEx"},
	} {
		if ok, all := calls(family...); ok == 0 || ok != all {
			problems = append(problems, fmt.Sprintf("%s: %d calls, %d successful", strings.Join(family, "/"), all, ok))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s (hypercalls: %v)", strings.Join(problems, "; "), s.Hypercalls)
	}
	return nil
}

// kernelTimersScenario boots with --vmbus and kernel-timers on two vCPUs.
const kernelTimersScenario = "vmbus-kernel-timers"

// checkKernelTimersReport checks that the timers ran in KVM and VMBus
// worked over the shared SynIC (checkVMBusReport).
func checkKernelTimersReport(console []string) error {
	if err := checkVMBusReport(console); err != nil {
		return err
	}
	reps, err := scenario.ParseReports[smpReport](console)
	if err != nil {
		return err
	}
	s := reps[0].HyperV
	if s.Timers != "kernel" || !strings.Contains(s.Features, "kernel-timers") {
		return fmt.Errorf("timers %q with features %q, want KVM's (kernel-timers)", s.Timers, s.Features)
	}
	for _, vp := range s.VPs {
		if len(vp.Timers) != 0 {
			return fmt.Errorf("vCPU %d: vmm counted timers %+v, which were KVM's", vp.VP, vp.Timers)
		}
	}
	if c := s.MSRs["STIMER0_CONFIG"]; c.Reads+c.Writes != 0 {
		return fmt.Errorf("STIMER0_CONFIG reached vmm %d times", c.Reads+c.Writes)
	}
	return nil
}

// vmbusScenario boots with --vmbus: hv_vmbus connects, hv_utils binds the
// heartbeat and shutdown services (the agent's vmbus check), and the
// report's VMBus summary must agree (checkVMBusReport).
const vmbusScenario = "vmbus"

type vmbusReport struct {
	HyperV *struct {
		VMBus *struct {
			Bus struct {
				Connected bool   `json:"connected"`
				Version   string `json:"version"`
				Channels  []struct {
					Class string `json:"class"`
					Open  bool   `json:"open"`
				} `json:"channels"`
			} `json:"bus"`
			Heartbeat struct {
				State string `json:"state"`
			} `json:"heartbeat"`
			Shutdown struct {
				State string `json:"state"`
			} `json:"shutdown"`
			TimeSync struct {
				State    string `json:"state"`
				Answered uint64 `json:"answered"`
			} `json:"timesync"`
		} `json:"vmbus"`
	} `json:"hyperv"`
}

// checkVMBusReport checks that the guest connected at 5.3 (Linux 6.1's
// first choice), opened the four channels, negotiated heartbeat, shutdown
// and time sync and took the host's time.
func checkVMBusReport(console []string) error {
	reps, err := scenario.ParseReports[vmbusReport](console)
	if err != nil {
		return err
	}
	if len(reps) != 1 || reps[0].HyperV == nil || reps[0].HyperV.VMBus == nil {
		return fmt.Errorf("want one report with a hyperv.vmbus summary, have %d", len(reps))
	}
	v := reps[0].HyperV.VMBus
	var problems []string
	if !v.Bus.Connected || v.Bus.Version != "5.3" {
		problems = append(problems, fmt.Sprintf("bus connected=%t version %q, want 5.3", v.Bus.Connected, v.Bus.Version))
	}
	for _, c := range v.Bus.Channels {
		if !c.Open {
			problems = append(problems, "channel "+c.Class+" not open")
		}
	}
	// Heartbeat, shutdown, time sync and KVP (opened by hv_utils; with no
	// daemon its negotiation waits, so only its channel is checked).
	if len(v.Bus.Channels) != 4 {
		problems = append(problems, fmt.Sprintf("%d channels, want 4", len(v.Bus.Channels)))
	}
	if v.Heartbeat.State != "ready" || v.Shutdown.State != "ready" || v.TimeSync.State != "ready" {
		problems = append(problems, fmt.Sprintf("heartbeat %s, shutdown %s, timesync %s, want ready",
			v.Heartbeat.State, v.Shutdown.State, v.TimeSync.State))
	}
	if v.TimeSync.Answered == 0 {
		problems = append(problems, "the guest never answered a time sync")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
