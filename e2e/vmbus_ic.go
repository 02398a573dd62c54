package e2e

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
	"github.com/vmmdev/vmm/vmm"
)

// vmbusICScenario boots with --vmbus, a NIC (the net check gives it
// guestAddr) and --kvp: the agent starts Debian's hv_kvp_daemon, which
// answers vmm's KVP enumeration (OS, kernel, addresses) and stores the
// pushed key; the moment the agent sees that key the outer init sends
// SIGTERM to vmm, which asks the guest through the shutdown channel to
// power off: Linux does, and vmm exits 0. checkVMBusICReport reads the
// report: shutdown accepted, heartbeats, the guest's pool.
const vmbusICScenario = "vmbus-ic"

// The key vmm pushes and the agent waits for.
const kvpKey, kvpValue = "vmm-e2e", "pushed-by-vmm"

func vmbusICScenarioSpec() (scenario.Scenario, error) {
	g := testhost.Guest{
		Quiet: true, Action: "hang", Timeout: 150 * time.Second,
		Checks: []string{"boot", "vmbus", "net", "kvp"},
		ExtraCmdline: strings.Join([]string{
			fmt.Sprintf("vmm.net=%s,%s:%d,%d", guestAddr, strings.TrimSuffix(tapAddr, "/24"), peerPort, 64<<10),
			"vmm.kvp=" + kvpKey + "=" + kvpValue,
		}, " "),
	}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	if args, err = testhost.WithHyperV(scenario.RunnerVMM, args); err != nil {
		return scenario.Scenario{}, err
	}
	args = append(args, "--vmbus", "--kvp", kvpKey+"="+kvpValue, "--heartbeat-timeout", "60s",
		"--shutdown-timeout", "60s", "--net", "tap="+tapName+",mac=52:54:00:12:34:57", "--log-level", "info")
	want := map[string]string{}
	for _, c := range g.Checks {
		want[c] = scenario.Pass
	}
	return scenario.Scenario{
		Name: vmbusICScenario, Args: args, WantExit: exitPoweroff, WantChecks: want, Stream: true, Report: true,
		Mark: "VMM-AGENT: check=kvp result=pass", TermOnMark: true,
		Timeout: (g.Timeout + 30*time.Second).String(),
		Tap:     &scenario.Tap{Name: tapName, Addr: tapAddr, Port: peerPort},
	}, nil
}

type vmbusICReport struct {
	Stop struct {
		Reason string `json:"reason"`
	} `json:"stop"`
	HyperV *struct {
		VMBus *struct {
			Bus struct {
				NeverOpened []string `json:"never_opened"`
				Waiting     []any    `json:"waiting"`
			} `json:"bus"`
			Heartbeat struct {
				Beats uint64 `json:"beats"`
			} `json:"heartbeat"`
			Shutdown struct {
				Requested bool `json:"requested"`
				Accepted  bool `json:"accepted"`
			} `json:"shutdown"`
			KVP struct {
				State  string            `json:"state"`
				Auto   map[string]string `json:"auto"`
				Pushed int               `json:"pushed"`
			} `json:"kvp"`
		} `json:"vmbus"`
	} `json:"hyperv"`
}

// checkVMBusICReport: the run ended by the guest's own poweroff after
// vmm's shutdown request; the guest beat; its daemon reported Debian, a
// 6.1 kernel and the NIC's address, and took the pushed key.
func checkVMBusICReport(console []string) (string, error) {
	reps, err := scenario.ParseReports[vmbusICReport](console)
	if err != nil {
		return "", err
	}
	if len(reps) != 1 || reps[0].HyperV == nil || reps[0].HyperV.VMBus == nil {
		return "", fmt.Errorf("want one report with a hyperv.vmbus summary, have %d", len(reps))
	}
	r := reps[0]
	v := r.HyperV.VMBus
	var problems []string
	if r.Stop.Reason != "poweroff" || !v.Shutdown.Requested || !v.Shutdown.Accepted {
		problems = append(problems, fmt.Sprintf("stop %q, shutdown requested %t accepted %t, want the guest's poweroff",
			r.Stop.Reason, v.Shutdown.Requested, v.Shutdown.Accepted))
	}
	if v.Heartbeat.Beats == 0 {
		problems = append(problems, "no heartbeat")
	}
	a := v.KVP.Auto
	if !strings.Contains(a["OSName"], "Debian") || !strings.HasPrefix(a["OSBuildNumber"], "6.1.") ||
		!strings.Contains(a["NetworkAddressIPv4"], strings.TrimSuffix(guestAddr, "/24")) {
		problems = append(problems, fmt.Sprintf("KVP auto pool %v: want OSName Debian, OSBuildNumber 6.1.*, NetworkAddressIPv4 %s",
			a, guestAddr))
	}
	if v.KVP.State != "ready" || v.KVP.Pushed != 1 {
		problems = append(problems, fmt.Sprintf("KVP %s, %d keys pushed, want ready and 1", v.KVP.State, v.KVP.Pushed))
	}
	if len(v.Bus.NeverOpened) > 0 || len(v.Bus.Waiting) > 0 {
		problems = append(problems, fmt.Sprintf("never opened %v, waiting %v", v.Bus.NeverOpened, v.Bus.Waiting))
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	return fmt.Sprintf("%d heartbeats; KVP OSName=%q OSBuildNumber=%q NetworkAddressIPv4=%q", v.Heartbeat.Beats,
		a["OSName"], a["OSBuildNumber"], a["NetworkAddressIPv4"]), nil
}

// vmbusHeartbeatScenario boots with --vmbus and --heartbeat-timeout: once
// vmm has counted the guest's heartbeats, the agent unbinds the heartbeat
// device from hv_utils (the heartbeat-stop check), which closes its
// channel while Linux runs on, and hangs. vmm must end the run as
// documented, with exit 10 and stop reason heartbeat-lost
// (checkHeartbeatReport), a few seconds later.
const vmbusHeartbeatScenario = "vmbus-heartbeat"

// heartbeatTimeout is the scenario's --heartbeat-timeout: vmm's least.
const heartbeatTimeout = 3 * time.Second

func vmbusHeartbeatScenarioSpec() (scenario.Scenario, error) {
	g := testhost.Guest{Quiet: true, Action: "hang", Timeout: 150 * time.Second,
		Checks: []string{"boot", "vmbus", "heartbeat-stop"}}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	if args, err = testhost.WithHyperV(scenario.RunnerVMM, args); err != nil {
		return scenario.Scenario{}, err
	}
	args = append(args, "--vmbus", "--heartbeat-timeout", heartbeatTimeout.String(), "--log-level", "info")
	want := map[string]string{}
	for _, c := range g.Checks {
		want[c] = scenario.Pass
	}
	return scenario.Scenario{
		Name: vmbusHeartbeatScenario, Args: args, WantExit: vmm.ExitHeartbeat, WantChecks: want, Stream: true, Report: true,
		Timeout: (g.Timeout + 30*time.Second).String(),
	}, nil
}

type heartbeatReport struct {
	ExitCode int `json:"exit_code"`
	Stop     struct {
		Reason string `json:"reason"`
		Detail string `json:"detail"`
	} `json:"stop"`
	HyperV *struct {
		VMBus *struct {
			Heartbeat struct {
				State string `json:"state"`
				Beats uint64 `json:"beats"`
			} `json:"heartbeat"`
		} `json:"vmbus"`
	} `json:"hyperv"`
}

// checkHeartbeatReport: vmm stopped the run for the lost heartbeat, after
// the guest had beaten, and its stop detail says so.
func checkHeartbeatReport(console []string) (string, error) {
	reps, err := scenario.ParseReports[heartbeatReport](console)
	if err != nil {
		return "", err
	}
	if len(reps) != 1 || reps[0].HyperV == nil || reps[0].HyperV.VMBus == nil {
		return "", fmt.Errorf("want one report with a hyperv.vmbus summary, have %d", len(reps))
	}
	r := reps[0]
	hb := r.HyperV.VMBus.Heartbeat
	if r.ExitCode != vmm.ExitHeartbeat || r.Stop.Reason != vmm.StopHeartbeatLost.String() ||
		!strings.Contains(r.Stop.Detail, "no heartbeat for") || hb.Beats == 0 || hb.State != "closed" {
		return "", fmt.Errorf("exit %d, stop %q (%q), %d beats, heartbeat channel %s: want exit %d, %s after beats, channel closed",
			r.ExitCode, r.Stop.Reason, r.Stop.Detail, hb.Beats, hb.State, vmm.ExitHeartbeat, vmm.StopHeartbeatLost)
	}
	return fmt.Sprintf("stop %s: %s", r.Stop.Reason, r.Stop.Detail), nil
}
