package e2e

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
)

// The iPXE scenario's fixtures: its own tap and subnet.
const (
	ipxeScenarioName = "ipxe"
	ipxeTap          = "vmmtap2"
	ipxeTapAddr      = "10.0.4.1/24"
	ipxeClient       = "10.0.4.15"
	ipxePort         = 7779
	ipxeMAC          = "52:54:00:12:34:59"
	ipxeBootPath     = "/boot.ipxe"
	// ipxeFetched is what the served script prints: only a guest that
	// took the DHCP lease and fetched the script over HTTP shows it, with
	// the address it got.
	ipxeFetched = "VMM-IPXE: script fetched over HTTP by "
)

// ipxeScenario boots Debian's iPXE (ipxe.efi from an EFI system
// partition, under OVMF) with --hyperv all, --vmbus and a synthetic NIC:
// iPXE's own Hyper-V driver connects to VMBus (3.0, UNLOAD, then 0.13 with
// the interrupt page), its netvsc opens the NIC (NVSP 1, RNDIS), its
// autoboot takes a DHCP lease from the outer init (images/netboot) and
// fetches and runs the boot script over HTTP, which prints ipxeFetched
// and the address; --expect ends the run with 0 on that line.
func ipxeScenario() (scenario.Scenario, error) {
	const timeout = 300 * time.Second
	script := "#!ipxe\necho " + ipxeFetched + "${net0/ip}\n"
	args := []string{"run", "--firmware", "ovmf", "--disk", images.OuterIPXEDisk + ",readonly",
		"--cpus", "1", "--memory", "256M", "--console", "stdio", "--timeout", timeout.String(),
		"--hyperv", "all", "--vmbus", "--net", "tap=" + ipxeTap + ",if=vmbus,mac=" + ipxeMAC,
		"--expect", regexp.QuoteMeta(ipxeFetched + ipxeClient), "--log-level", "info"}
	return scenario.Scenario{
		Name: ipxeScenarioName, Args: args, WantExit: exitPoweroff, Report: true, Stream: true,
		Timeout: (timeout + 30*time.Second).String(),
		Tap: &scenario.Tap{Name: ipxeTap, Addr: ipxeTapAddr, Port: ipxePort,
			NetBoot: &scenario.NetBoot{Client: ipxeClient, Path: ipxeBootPath, Script: script}},
	}, nil
}

type ipxeReport struct {
	HyperV *struct {
		VMBus *struct {
			Bus struct {
				Version       string `json:"version"`
				InterruptPage bool   `json:"interrupt_page"`
				SharedSignals uint64 `json:"shared_signals"`
			} `json:"bus"`
			NetVSC []struct {
				MAC       string `json:"mac"`
				NVSP      string `json:"nvsp"`
				NDIS      string `json:"ndis"`
				RNDIS     string `json:"rndis"`
				TxPackets uint64 `json:"tx_packets"`
				RxPackets uint64 `json:"rx_packets"`
			} `json:"netvsc"`
		} `json:"vmbus"`
	} `json:"hyperv"`
}

// checkIPXEReport checks that iPXE, not a Linux driver, ran the NIC: VMBus
// 0.13 with the interrupt page and signals on connection 2, NVSP 1, NDIS
// 6.1, RNDIS 1.0, frames both ways (DHCP and HTTP). It returns a one-line
// summary.
func checkIPXEReport(console []string) (string, error) {
	reps, err := scenario.ParseReports[ipxeReport](console)
	if err != nil {
		return "", err
	}
	if len(reps) != 1 || reps[0].HyperV == nil || reps[0].HyperV.VMBus == nil || len(reps[0].HyperV.VMBus.NetVSC) != 1 {
		return "", fmt.Errorf("want one report with one hyperv.vmbus.netvsc NIC, have %d reports", len(reps))
	}
	v := reps[0].HyperV.VMBus
	n := v.NetVSC[0]
	summary := fmt.Sprintf("vmbus %s shared signals %d mac %s nvsp %s ndis %s rndis %s tx %d rx %d", v.Bus.Version,
		v.Bus.SharedSignals, n.MAC, n.NVSP, n.NDIS, n.RNDIS, n.TxPackets, n.RxPackets)
	var problems []string
	if v.Bus.Version != "0.13" || n.MAC != ipxeMAC || n.NVSP != "1" || n.NDIS != "6.1" || n.RNDIS != "1.0" {
		problems = append(problems, "want VMBus 0.13, MAC "+ipxeMAC+", NVSP 1, NDIS 6.1, RNDIS 1.0")
	}
	if !v.Bus.InterruptPage || v.Bus.SharedSignals == 0 {
		problems = append(problems, "want the interrupt page and signals on connection 2")
	}
	if n.TxPackets == 0 || n.RxPackets == 0 {
		problems = append(problems, "want frames both ways")
	}
	if len(problems) > 0 {
		return summary, errors.New(strings.Join(problems, "; "))
	}
	return summary, nil
}
