package e2e

import (
	"context"
	"errors"
	"github.com/vmmdev/vmm/internal/testenv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
	"github.com/vmmdev/vmm/vmm"
)

func TestScenariosValid(t *testing.T) {
	list, err := Scenarios()
	require.NoError(t, err)
	data, err := scenario.Encode(list)
	require.NoError(t, err)
	back, err := scenario.Parse(data)
	require.NoError(t, err)
	names := map[string]int{}
	for _, s := range back {
		names[s.Name] = s.WantExit
		if s.Name == "hyperv-qemu" {
			require.Equal(t, scenario.RunnerQEMU, s.RunnerName(), s.Name)
		} else {
			require.Equal(t, scenario.RunnerVMM, s.RunnerName(), s.Name)
		}
		if s.Name == uefiUnsigned || s.Name == ipxeScenarioName || usesDebianImage(s) {
			require.Empty(t, s.WantChecks, "%s boots no agent", s.Name)
			continue
		}
		require.Equal(t, scenario.Pass, s.WantChecks["boot"], s.Name)
	}
	require.Equal(t, map[string]int{"boot-1cpu": 0, "platform-2cpu": 0, "panic": 3, "hang": 4, "reboot": 5, "reboot-acpi": 5, "balloon": 0, "density": 0, "s3-rtcwake": 0, "disk-net": 0, "disk-nvme": 0, "disk-ahci": 0, "disk-qcow2": 0,
		"hyperv": 0, "hyperv-panic": 3, "hyperv-2cpu": 0, "hyperv-qemu": 0, "vmbus": 0, "vmbus-kernel-timers": 0, "vmbus-panic": 3, "vmbus-ic": 0, "vmbus-heartbeat": vmm.ExitHeartbeat, "vmbus-net": 0, "ipxe": 0, "disk-vmbus": 0, "expect-summary": 0, "fail-panic": 6,
		"firmware-grub": 0, "firmware-ahci": 0, "firmware-nvme": 0, "firmware-cdrom": 0, "durable": scenario.ExitNone,
		"uefi-grub": 0, "uefi-ahci": 0, "uefi-nvme": 0, "uefi-vars": 0, "uefi-vars-kill": scenario.ExitNone,
		"uefi-secure-boot": 0, "uefi-unsigned": vmm.ExitNoBoot, "debian-seabios": 0, "debian-ovmf-nvme": 0, "debian-storvsc": 0}, names)
}

func TestSelectScenarios(t *testing.T) {
	list, err := Scenarios()
	require.NoError(t, err)
	sel, err := selectScenarios(list, "^hyperv(-2cpu)?$")
	require.NoError(t, err)
	require.Len(t, sel, 2)
	require.Equal(t, "hyperv", sel[0].Name)
	require.Equal(t, hypervSMP, sel[1].Name)
	_, err = selectScenarios(list, "nothing-matches")
	require.ErrorContains(t, err, "no scenario matches")
	_, err = selectScenarios(list, "(")
	require.Error(t, err)
}

// TestE2E boots the nested test host once and runs every scenario in it
// (or those whose names match the regular expression VMM_E2E_RUN),
// reporting one subtest per scenario.
func TestE2E(t *testing.T) {
	if os.Getenv("VMM_E2E") == "" {
		testenv.Skip(t, "the nested-host e2e suite runs with VMM_E2E=1 (make e2e)")
	}
	ci := os.Getenv("CI") == "true"
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-30*time.Second))
		defer cancel()
	}
	list, err := Scenarios()
	require.NoError(t, err)
	if only := os.Getenv("VMM_E2E_RUN"); only != "" {
		// A subset, for iterating on a few scenarios in one outer boot.
		list, err = selectScenarios(list, only)
		require.NoError(t, err)
	}

	root, err := images.ModuleRoot()
	require.NoError(t, err)
	logPath := filepath.Join(root, "build", "e2e", "outer-console.log")
	require.NoError(t, os.MkdirAll(filepath.Dir(logPath), 0o755))
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	defer logFile.Close()

	suite := testhost.Suite{
		Scenarios:   list,
		InstallQEMU: ci && os.Geteuid() == 0,
		Console:     logFile,
		OnEvent: func(ev scenario.Event) {
			switch ev.Kind {
			case scenario.KindResult:
				t.Logf("%s", ev.Result.Line())
			case scenario.KindHeartbeat:
				t.Logf("%s still running after %.0fs: %d console lines, last %q", ev.Name, ev.ElapsedS, ev.Lines, ev.Text)
			}
		},
	}
	// The Debian scenarios boot the cached image in snapshot mode: its
	// file must be byte for byte what it was (hashed here, on the host).
	debianHash := func() string { return "" }
	debianKernel := ""
	if slices.ContainsFunc(list, usesDebianImage) {
		img, err := images.DebianDisk(ctx, images.Config{})
		require.NoError(t, err, "the Debian scenarios need the Debian image (go run ./images/cmd/mkimages -outer=false -debian builds it, as root)")
		debianKernel = img.Kernel
		debianHash = func() string {
			h, err := images.HashPath(img.QCOW2)
			require.NoError(t, err)
			return h
		}
	}
	debianBefore := debianHash()
	t.Logf("building what is missing, then booting the outer machine; its console goes to %s", logPath)
	out, runErr := suite.Run(ctx)
	require.Equal(t, debianBefore, debianHash(), "the Debian base image changed")
	switch {
	case errors.Is(runErr, testhost.ErrNoQEMU) && !ci:
		testenv.Skip(t, "%v: install qemu-system-x86 (make setup) to run the nested-host e2e suite", runErr)
	case (errors.Is(runErr, images.ErrOuterQEMUDeps) || errors.Is(runErr, images.ErrNoQEMUSource)) && !ci:
		testenv.Skip(t, "%v: make outer-qemu (as root) builds the nested host's QEMU", runErr)
	case errors.Is(runErr, testhost.ErrVMMBuild):
		t.Fatalf("vmm must build for the e2e suite (CGO_ENABLED=0 go build ./cmd/vmm): %v", runErr)
	case out == nil:
		t.Fatalf("preparing the nested test host: %v", runErr)
	}
	if out.KVMFailed != "" {
		t.Fatalf("the outer machine has no KVM: %s", out.KVMFailed)
	}
	if len(out.Errors) > 0 {
		t.Fatalf("the outer init could not run the suite: %s", strings.Join(out.Errors, "; "))
	}
	for _, s := range list {
		t.Run(s.Name, func(t *testing.T) {
			results := out.ResultsFor(s.Name)
			if len(results) == 0 {
				t.Fatal("scenario did not report (the outer machine's error is below)")
			}
			for _, r := range results {
				t.Logf("exit=%d first_line_s=%.1f mark_s=%.1f total_s=%.1f", r.Exit, r.FirstLineS, r.MarkS, r.TotalS)
				if s.Mark != "" && r.MarkS < 0 {
					t.Errorf("the console never showed %q", s.Mark)
				}
				if !r.Pass {
					t.Errorf("%s\nconsole:\n%s", r.Reason, strings.Join(out.Logs[s.Name], "\n"))
				}
			}
			for _, w := range consoleWants(s.Name) {
				if !strings.Contains(strings.Join(out.Console[s.Name], "\n"), w) {
					t.Errorf("output lacks %q:\n%s", w, strings.Join(out.Console[s.Name], "\n"))
				}
			}
		})
	}
	ran := func(names ...string) bool {
		return !slices.ContainsFunc(names, func(n string) bool {
			return !slices.ContainsFunc(list, func(s scenario.Scenario) bool { return s.Name == n })
		})
	}
	if ran(hypervSMP) {
		if err := checkSMPReport(out.Console[hypervSMP]); err != nil {
			t.Errorf("%s report: %v", hypervSMP, err)
		}
	}
	for name, store := range map[string]string{uefiVars: uefiVarsStore, uefiVarsKill: uefiVarsKillStore} {
		if ran(name) {
			if err := checkEFIVarsRuns(out.Console[name], store); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	if ran(kernelTimersScenario) {
		if err := checkKernelTimersReport(out.Console[kernelTimersScenario]); err != nil {
			t.Errorf("%s report: %v", kernelTimersScenario, err)
		}
	}
	if ran(vmbusScenario) {
		if err := checkVMBusReport(out.Console[vmbusScenario]); err != nil {
			t.Errorf("%s report: %v", vmbusScenario, err)
		}
	}
	if ran(storvscScenarioName) {
		summary, err := checkStorvscReport(out.Console[storvscScenarioName])
		if err != nil {
			t.Errorf("%s report: %v", storvscScenarioName, err)
		}
		t.Logf("%s: %s", storvscScenarioName, summary)
	}
	if ran(vmbusICScenario) {
		summary, err := checkVMBusICReport(out.Console[vmbusICScenario])
		if err != nil {
			t.Errorf("%s report: %v", vmbusICScenario, err)
		}
		t.Logf("%s: %s", vmbusICScenario, summary)
	}
	if ran(vmbusHeartbeatScenario) {
		summary, err := checkHeartbeatReport(out.Console[vmbusHeartbeatScenario])
		if err != nil {
			t.Errorf("%s report: %v", vmbusHeartbeatScenario, err)
		}
		t.Logf("%s: %s", vmbusHeartbeatScenario, summary)
	}
	if ran(netvscScenarioName) {
		summary, err := checkNetVSCReport(out.Console[netvscScenarioName])
		if err != nil {
			t.Errorf("%s report: %v", netvscScenarioName, err)
		}
		t.Logf("%s: %s", netvscScenarioName, summary)
	}
	if ran(ipxeScenarioName) {
		summary, err := checkIPXEReport(out.Console[ipxeScenarioName])
		if err != nil {
			t.Errorf("%s report: %v", ipxeScenarioName, err)
		}
		t.Logf("%s: %s", ipxeScenarioName, summary)
	}
	if ran(balloonScenario) {
		summary, err := checkBalloonReport(out.Console[balloonScenario])
		if err != nil {
			t.Errorf("%s report: %v", balloonScenario, err)
		}
		t.Logf("%s: %s", balloonScenario, summary)
	}
	if ran(densityScenario) {
		summary, err := checkDensityReport(out.Console[densityScenario])
		if err != nil {
			t.Errorf("%s report: %v", densityScenario, err)
		}
		t.Logf("%s: %s", densityScenario, summary)
	}
	if ran(suspendScenario) {
		summary, err := checkSleepReport(out.Console[suspendScenario])
		if err != nil {
			t.Errorf("%s report: %v", suspendScenario, err)
		}
		t.Logf("%s: %s", suspendScenario, summary)
	}
	if ran(debianSeaBIOS) {
		if err := checkDebianLogin(out.Console[debianSeaBIOS], debianKernel); err != nil {
			t.Errorf("%s console: %v", debianSeaBIOS, err)
		}
	}
	if ran(rebootACPI) {
		if err := checkResetReport(out.Console[rebootACPI]); err != nil {
			t.Errorf("%s report: %v", rebootACPI, err)
		}
	}
	if ran("hyperv", "hyperv-qemu") {
		if err := compareHyperV(out.Console); err != nil {
			t.Errorf("vmm vs QEMU: %v", err)
		}
	}
	if runErr != nil {
		t.Errorf("outer machine: %v", runErr)
	}
	for _, l := range out.Malformed {
		t.Errorf("malformed protocol line: %q", l)
	}
}
