// Package e2e boots real Debian guests under vmm inside the nested test host
// (see images/testhost) and checks what the guest agent reports. The test
// runs only with VMM_E2E=1 (`make e2e`): one outer boot under QEMU/TCG takes
// minutes.
package e2e

import (
	"fmt"
	"regexp"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// Exit codes of `vmm run` (docs/design.md) the scenarios expect.
const (
	exitPoweroff = 0
	exitPanic    = 3
	exitTimeout  = 4
	exitReset    = 5
)

// Scenarios is the suite one outer boot runs. Every guest boot takes tens of
// seconds two levels down, so each scenario boots once and most boot quiet;
// boot-1cpu keeps the kernel log for diagnosing a failed boot.
func Scenarios() ([]scenario.Scenario, error) {
	allPass := map[string]string{"boot": scenario.Pass, "cpus": scenario.Pass, "clocksource": scenario.Pass}
	bootOnly := map[string]string{"boot": scenario.Pass}
	platformPass := map[string]string{"boot": scenario.Pass, "cpus": scenario.Pass, "pci": scenario.Pass,
		"rng": scenario.Pass, "console": scenario.Pass, "acpi": scenario.Pass}
	specs := []struct {
		name   string
		guest  testhost.Guest
		exit   int
		checks map[string]string
	}{
		// no-hyperv: without --hyperv, Linux must see none of it. modules:
		// the initramfs's modules load, hv_vmbus's "no such device" skipped.
		{"boot-1cpu", testhost.Guest{CPUs: 1, Quiet: true, Checks: append(testhost.DefaultChecks(), "no-hyperv", "modules")},
			exitPoweroff, withPass(allPass, "no-hyperv", "modules")},
		// Two vCPUs on the PC platform's PCI side: virtio-rng, and
		// virtio-console as the only console, so every agent line
		// travels through hvc0; dmesg must hold no ACPI complaint. No
		// clocksource check: under the TCG outer machine the host TSC is
		// unstable, and Linux finds two vCPUs' TSCs unsynchronised.
		{"platform-2cpu", testhost.Guest{
			CPUs: 2, ExpectCPUs: 2, Quiet: true, RNG: true, VirtioConsole: true,
			Checks:       []string{"boot", "cpus", "pci", "rng", "console", "acpi"},
			ExtraCmdline: "vmm.pci_devices=2",
		}, exitPoweroff, platformPass},
		{"panic", testhost.Guest{Action: "panic", Quiet: true}, exitPanic, bootOnly},
		{"hang", testhost.Guest{Action: "hang", Quiet: true, Timeout: 40 * time.Second}, exitTimeout, bootOnly},
		{"reboot", testhost.Guest{Action: "reboot", Quiet: true}, exitReset, bootOnly},
	}
	list := make([]scenario.Scenario, 0, len(specs))
	for _, s := range specs {
		g := s.guest
		if g.Timeout == 0 {
			// vmm's own limit, so a stuck boot ends as exit 4 with vmm's report
			// rather than as a kill.
			g.Timeout = 150 * time.Second
		}
		args, err := g.Args(scenario.RunnerVMM)
		if err != nil {
			return nil, err
		}
		list = append(list, scenario.Scenario{
			Name: s.name, Args: args, WantExit: s.exit, WantChecks: s.checks,
			Timeout: (g.Timeout + 30*time.Second).String(),
		})
	}
	ra, err := rebootACPIScenario()
	if err != nil {
		return nil, err
	}
	list = append(list, ra)
	bl, err := newBalloonScenario()
	if err != nil {
		return nil, err
	}
	list = append(list, bl)
	de, err := newDensityScenario()
	if err != nil {
		return nil, err
	}
	list = append(list, de)
	s3, err := suspendScenarios()
	if err != nil {
		return nil, err
	}
	list = append(list, s3...)
	dn, err := diskNetScenario()
	if err != nil {
		return nil, err
	}
	list = append(list, dn)
	nv, err := nvmeScenario()
	if err != nil {
		return nil, err
	}
	list = append(list, nv)
	ah, err := ahciScenario()
	if err != nil {
		return nil, err
	}
	list = append(list, ah)
	qc, err := qcow2Scenario()
	if err != nil {
		return nil, err
	}
	list = append(list, qc)
	du, err := durableScenario()
	if err != nil {
		return nil, err
	}
	list = append(list, du)
	fw, err := firmwareScenarios()
	if err != nil {
		return nil, err
	}
	list = append(list, fw...)
	uefi, err := uefiScenarios()
	if err != nil {
		return nil, err
	}
	list = append(list, uefi...)
	hv, err := hypervScenarios()
	if err != nil {
		return nil, err
	}
	list = append(list, hv...)
	sv, err := storvscScenario()
	if err != nil {
		return nil, err
	}
	list = append(list, sv)
	ic, err := vmbusICScenarioSpec()
	if err != nil {
		return nil, err
	}
	list = append(list, ic)
	hb, err := vmbusHeartbeatScenarioSpec()
	if err != nil {
		return nil, err
	}
	list = append(list, hb)
	nvsc, err := netvscScenario()
	if err != nil {
		return nil, err
	}
	list = append(list, nvsc)
	ipxe, err := ipxeScenario()
	if err != nil {
		return nil, err
	}
	list = append(list, ipxe)
	list = append(list, debianScenarios()...)
	return appendCI(list)
}

// selectScenarios keeps the scenarios whose names match the regular
// expression expr.
func selectScenarios(list []scenario.Scenario, expr string) ([]scenario.Scenario, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("scenario filter: %w", err)
	}
	var out []scenario.Scenario
	for _, s := range list {
		if re.MatchString(s.Name) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenario matches %q", expr)
	}
	return out, nil
}

// rebootACPI reboots with reboot=a, so Linux writes the FADT reset
// register first; its report must name that register as the stop's source
// (the BIOS stub or the i8042 would be the fallbacks).
const rebootACPI = "reboot-acpi"

func rebootACPIScenario() (scenario.Scenario, error) {
	g := testhost.Guest{Action: "reboot", Quiet: true, ExtraCmdline: "reboot=a", Timeout: 150 * time.Second}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	return scenario.Scenario{Name: rebootACPI, Args: args, WantExit: exitReset,
		WantChecks: map[string]string{"boot": scenario.Pass}, Stream: true, Report: true,
		Timeout: (g.Timeout + 30*time.Second).String()}, nil
}

// stopReport is the part of vmm's report checkResetReport reads.
type stopReport struct {
	Stop struct {
		Reason, Source, Detail string
	} `json:"stop"`
}

// checkResetReport checks that the guest reset through the ACPI reset register.
func checkResetReport(console []string) error {
	reps, err := scenario.ParseReports[stopReport](console)
	if err != nil {
		return err
	}
	if len(reps) != 1 {
		return fmt.Errorf("want one report, have %d", len(reps))
	}
	if st := reps[0].Stop; st.Source != "acpi" || st.Detail != "reset register" {
		return fmt.Errorf("stop %q from %q (%q), want the ACPI reset register", st.Reason, st.Source, st.Detail)
	}
	return nil
}
