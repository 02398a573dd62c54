package e2e

import (
	"fmt"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The netvsc scenario's fixtures: its own tap and subnet, so that it never
// meets disk-net's.
const (
	netvscScenarioName = "vmbus-net"
	netvscTap          = "vmmtap1"
	netvscTapAddr      = "10.0.3.1/24"
	netvscGuestAddr    = "10.0.3.15/24"
	netvscPort         = 7778
	netvscMAC          = "52:54:00:12:34:57"
)

// netvscScenario boots with --vmbus and a synthetic NIC (--net
// ...,if=vmbus): hv_netvsc binds it, the interface comes up with the MAC
// given (vmm.net_mac), pings the peer on the tap in the outer machine and
// moves netBytes each way over TCP, each stream checked against its
// pattern. Two vCPUs: the guest asks for receive-side scaling, which the
// NIC declines (one queue).
func netvscScenario() (scenario.Scenario, error) {
	g := testhost.Guest{
		CPUs: 2, ExpectCPUs: 2, Quiet: true,
		Checks:  []string{"boot", "cpus", "vmbus", "net"},
		Timeout: 180 * time.Second,
		ExtraCmdline: strings.Join([]string{
			fmt.Sprintf("vmm.net=%s,%s:%d,%d", netvscGuestAddr, strings.TrimSuffix(netvscTapAddr, "/24"), netvscPort, netBytes),
			"vmm.net_mac=" + netvscMAC,
		}, " "),
	}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	if args, err = testhost.WithHyperV(scenario.RunnerVMM, args); err != nil {
		return scenario.Scenario{}, err
	}
	args = append(args, "--vmbus", "--net", "tap="+netvscTap+",if=vmbus,mac="+netvscMAC, "--log-level", "info")
	want := map[string]string{}
	for _, c := range g.Checks {
		want[c] = scenario.Pass
	}
	return scenario.Scenario{
		Name: netvscScenarioName, Args: args, WantExit: exitPoweroff, WantChecks: want, Report: true, Stream: true,
		Timeout: (g.Timeout + 30*time.Second).String(),
		Tap:     &scenario.Tap{Name: netvscTap, Addr: netvscTapAddr, Port: netvscPort},
	}, nil
}
