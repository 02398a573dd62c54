package e2e

import (
	"errors"
	"fmt"
	"slices"
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
	// netvscFlap is how long the outer machine holds the tap down.
	netvscFlap = time.Second
)

// netvscScenario boots with --vmbus and a synthetic NIC (--net
// ...,if=vmbus): hv_netvsc binds it, the interface comes up with the MAC
// given (vmm.net_mac), pings the peer on the tap in the outer machine and
// moves netBytes each way over TCP, each stream checked against its
// pattern; then the outer machine takes the tap down and up again
// (vmm.net_flap), the guest's carrier must go down and come back, and the
// bytes cross again. Two vCPUs: the guest asks for receive-side scaling, which the
// NIC declines (one queue).
func netvscScenario() (scenario.Scenario, error) {
	g := testhost.Guest{
		CPUs: 2, ExpectCPUs: 2, Quiet: true,
		Checks:  []string{"boot", "cpus", "vmbus", "net"},
		Timeout: 180 * time.Second,
		ExtraCmdline: strings.Join([]string{
			fmt.Sprintf("vmm.net=%s,%s:%d,%d", netvscGuestAddr, strings.TrimSuffix(netvscTapAddr, "/24"), netvscPort, netBytes),
			"vmm.net_mac=" + netvscMAC,
			fmt.Sprintf("vmm.net_flap=%d", netvscFlap.Milliseconds()),
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

type netvscReport struct {
	HyperV *struct {
		VMBus *struct {
			NetVSC []struct {
				MAC         string   `json:"mac"`
				NVSP        string   `json:"nvsp"`
				NDIS        string   `json:"ndis"`
				RNDIS       string   `json:"rndis"`
				OIDsQueried []string `json:"oids_queried"`
				TxPackets   uint64   `json:"tx_packets"`
				TxBytes     uint64   `json:"tx_bytes"`
				RxPackets   uint64   `json:"rx_packets"`
				RxBytes     uint64   `json:"rx_bytes"`
				Bad         uint64   `json:"bad"`
				TxChecksum  uint64   `json:"tx_csum_offloaded"`
				TxLSO       uint64   `json:"tx_lso"`
				RxChecksum  uint64   `json:"rx_csum_verified"`
				Link        bool     `json:"link"`
				LinkChanges uint64   `json:"link_changes"`
			} `json:"netvsc"`
		} `json:"vmbus"`
	} `json:"hyperv"`
}

// checkNetVSCReport checks that Linux negotiated NVSP 6.1 and RNDIS 1.0,
// queried the MAC and the offload capabilities, that the TCP streams
// crossed the NIC each way twice with checksum and segmentation offloads,
// that its link followed the tap's flap, and that the NIC refused nothing Linux sent. It returns a one-line summary.
func checkNetVSCReport(console []string) (string, error) {
	reps, err := scenario.ParseReports[netvscReport](console)
	if err != nil {
		return "", err
	}
	if len(reps) != 1 || reps[0].HyperV == nil || reps[0].HyperV.VMBus == nil || len(reps[0].HyperV.VMBus.NetVSC) != 1 {
		return "", fmt.Errorf("want one report with one hyperv.vmbus.netvsc NIC, have %d reports", len(reps))
	}
	n := reps[0].HyperV.VMBus.NetVSC[0]
	summary := fmt.Sprintf("mac %s nvsp %s ndis %s rndis %s oids %v tx %d/%dB (csum %d lso %d) rx %d/%dB (csum verified %d) "+
		"bad %d link %v changes %d", n.MAC, n.NVSP, n.NDIS, n.RNDIS, n.OIDsQueried, n.TxPackets, n.TxBytes, n.TxChecksum, n.TxLSO,
		n.RxPackets, n.RxBytes, n.RxChecksum, n.Bad, n.Link, n.LinkChanges)
	var problems []string
	if n.MAC != netvscMAC || n.NVSP != "6.1" || n.RNDIS != "1.0" || n.NDIS == "" {
		problems = append(problems, "want MAC "+netvscMAC+", NVSP 6.1, RNDIS 1.0 and an NDIS version")
	}
	for _, oid := range []string{"0x01010101", "0xfc01020d"} {
		if !slices.Contains(n.OIDsQueried, oid) {
			problems = append(problems, "OID "+oid+" not queried")
		}
	}
	if n.TxBytes < 2*netBytes || n.RxBytes < 2*netBytes {
		problems = append(problems, fmt.Sprintf("want at least %d bytes each way (before and after the flap)", 2*netBytes))
	}
	// The tap takes offloads: Linux segments nothing itself (the upload
	// leaves in LSO packets), checksums nothing, and the download arrives
	// verified.
	if n.TxLSO == 0 || n.TxChecksum < n.TxLSO || n.RxChecksum < netBytes/1514 {
		problems = append(problems, fmt.Sprintf("want LSO and checksum offloads used: %d LSO packets, %d checksummed, %d received verified",
			n.TxLSO, n.TxChecksum, n.RxChecksum))
	}
	if !n.Link || n.LinkChanges < 2 {
		// The tap went down and up: the NIC followed it, and ends up.
		problems = append(problems, "want the link up after at least 2 changes")
	}
	if n.Bad != 0 {
		// Linux sends nothing the NIC should refuse.
		problems = append(problems, fmt.Sprintf("%d guest messages refused", n.Bad))
	}
	if len(problems) > 0 {
		return summary, errors.New(strings.Join(problems, "; "))
	}
	return summary, nil
}
