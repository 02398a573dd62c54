package e2e

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The synthetic SCSI scenario's fixtures: a disk the guest rewrites through
// hv_storvsc from each of two vCPUs, and a read-only one it must read.
const (
	storvscScenarioName = "disk-vmbus"
	storvscImage        = "/tmp/vmm-storvsc.img"
	storvscROImage      = "/tmp/vmm-storvsc-ro.img"
	storvscSerial       = "vmm-scsi-rw"
	storvscROSerial     = "vmm-scsi-ro"
	storvscImageSize    = 8 << 20
	storvscROSize       = 2 << 20
	// The rw image starts with storvscSeed and must end with
	// storvscNewSeed; the ro image keeps storvscROSeed.
	storvscSeed, storvscNewSeed, storvscROSeed = 30, 31, 32
)

// storvscScenario boots two vCPUs with --hyperv all and --vmbus and two
// if=vmbus disks (LUNs 0 and 1 of vmm's synthetic SCSI controller): Linux's
// hv_storvsc must bind, ask for a sub-channel (one per CPU beyond the
// first), and the agent reads and rewrites LUN 0 from each CPU, syncs, and
// reads LUN 1, which the guest must see read-only. The outer init checks
// the images after exit; checkStorvscReport reads the report.
func storvscScenario() (scenario.Scenario, error) {
	g := testhost.Guest{
		CPUs: 2, ExpectCPUs: 2, Quiet: true,
		Checks:  []string{"boot", "cpus", "vmbus", "disk-vmbus"},
		Timeout: 150 * time.Second,
		ExtraCmdline: fmt.Sprintf("vmm.disk_vmbus=%s:%d:%d,%s:%d",
			storvscSerial, storvscSeed, storvscNewSeed, storvscROSerial, storvscROSeed),
	}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	if args, err = testhost.WithHyperV(scenario.RunnerVMM, args); err != nil {
		return scenario.Scenario{}, err
	}
	args = append(args, "--vmbus",
		"--disk", storvscImage+",if=vmbus,serial="+storvscSerial,
		"--disk", storvscROImage+",if=vmbus,readonly,serial="+storvscROSerial,
		"--log-level", "info")
	want := map[string]string{}
	for _, c := range g.Checks {
		want[c] = scenario.Pass
	}
	return scenario.Scenario{
		Name: storvscScenarioName, Args: args, WantExit: exitPoweroff, WantChecks: want,
		Stream: true, Report: true,
		Timeout: (g.Timeout + 30*time.Second).String(),
		Disks: []scenario.Disk{
			{Path: storvscImage, Size: storvscImageSize, Seed: storvscSeed, WantSeed: storvscNewSeed},
			{Path: storvscROImage, Size: storvscROSize, Seed: storvscROSeed, WantSeed: storvscROSeed},
		},
	}, nil
}

// storvscReport is the part of vmm's report checkStorvscReport reads.
type storvscReport struct {
	HyperV *struct {
		VMBus *struct {
			Bus struct {
				Channels []struct {
					Class      string `json:"class"`
					Open       bool   `json:"open"`
					SubChannel uint16 `json:"sub_channel"`
					Stats      struct {
						PacketsIn uint64 `json:"packets_in"`
					} `json:"stats"`
				} `json:"channels"`
			} `json:"bus"`
			Storvsc *struct {
				Version     string `json:"version"`
				Channels    int    `json:"channels"`
				SubChannels int    `json:"sub_channels"`
				LUNs        []struct {
					Writes  uint64 `json:"writes"`
					Reads   uint64 `json:"reads"`
					Flushes uint64 `json:"flushes"`
				} `json:"luns"`
			} `json:"storvsc"`
		} `json:"vmbus"`
	} `json:"hyperv"`
}

// scsiClass is the synthetic SCSI controller's class as the report prints it.
const scsiClass = "ba6163d9-04a1-4d29-b605-72e2ffb1dc7f"

// checkStorvscReport checks that the guest negotiated storvsc 6.2 (Linux
// 6.1's first choice), opened the primary channel and one sub-channel and
// sent I/O on both, wrote and flushed LUN 0 and never wrote LUN 1.
func checkStorvscReport(console []string) (string, error) {
	reps, err := scenario.ParseReports[storvscReport](console)
	if err != nil {
		return "", err
	}
	if len(reps) != 1 || reps[0].HyperV == nil || reps[0].HyperV.VMBus == nil || reps[0].HyperV.VMBus.Storvsc == nil {
		return "", fmt.Errorf("want one report with a hyperv.vmbus.storvsc summary, have %d", len(reps))
	}
	v := reps[0].HyperV.VMBus
	s := v.Storvsc
	var problems []string
	if s.Version != "6.2" {
		problems = append(problems, fmt.Sprintf("storvsc version %q, want 6.2", s.Version))
	}
	if s.SubChannels != 1 {
		problems = append(problems, fmt.Sprintf("%d sub-channels asked for, want 1", s.SubChannels))
	}
	var scsi []string
	for _, c := range v.Bus.Channels {
		if c.Class != scsiClass {
			continue
		}
		scsi = append(scsi, fmt.Sprintf("sub %d open=%t packets_in=%d", c.SubChannel, c.Open, c.Stats.PacketsIn))
		if !c.Open || c.Stats.PacketsIn == 0 {
			problems = append(problems, fmt.Sprintf("SCSI channel %d: open=%t, %d packets", c.SubChannel, c.Open, c.Stats.PacketsIn))
		}
	}
	if len(scsi) != 2 {
		problems = append(problems, fmt.Sprintf("%d SCSI channels, want 2", len(scsi)))
	}
	if len(s.LUNs) != 2 {
		problems = append(problems, fmt.Sprintf("%d LUNs, want 2", len(s.LUNs)))
	} else {
		if s.LUNs[0].Writes == 0 || s.LUNs[0].Flushes == 0 || s.LUNs[0].Reads == 0 {
			problems = append(problems, fmt.Sprintf("LUN 0: %+v, want reads, writes and flushes", s.LUNs[0]))
		}
		if s.LUNs[1].Writes != 0 || s.LUNs[1].Reads == 0 {
			problems = append(problems, fmt.Sprintf("LUN 1 (read-only): %+v", s.LUNs[1]))
		}
	}
	summary := fmt.Sprintf("storvsc %s, channels [%s], LUNs %+v", s.Version, strings.Join(scsi, "; "), s.LUNs)
	if len(problems) > 0 {
		return summary, errors.New(strings.Join(problems, "; "))
	}
	return summary, nil
}
