package e2e

import (
	"fmt"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The durability scenario's fixtures: one image per disk interface, each
// rewritten by the guest and flushed before vmm is killed.
const (
	durableSize                                         = 4 << 20
	durableSeed                                         = 20
	durableVirtioSeed, durableNVMeSeed, durableAHCISeed = 21, 22, 23
	durableVMBusSeed                                    = 24
)

// durableScenario boots one vCPU with a virtio-blk, an NVMe, an AHCI and a
// VMBus SCSI disk (--hyperv all --vmbus): the agent writes a new pattern
// over each and syncs it (FLUSH, FLUSH, FLUSH CACHE EXT, SYNCHRONIZE
// CACHE), and the moment its durable check passes the
// outer init SIGKILLs vmm, which so gets no chance to flush at exit. Every
// image must hold its new pattern afterwards.
func durableScenario() (scenario.Scenario, error) {
	disks := []struct {
		iface, serial string
		seed          uint64
	}{
		{"virtio", "vmm-dur-vd", durableVirtioSeed},
		{"nvme", "vmm-dur-nv", durableNVMeSeed},
		{"ahci", "vmm-dur-sd", durableAHCISeed},
		{"vmbus", "vmm-dur-vb", durableVMBusSeed},
	}
	var specs []string
	var fixtures []scenario.Disk
	var devArgs []string
	for _, d := range disks {
		p := "/tmp/vmm-durable-" + d.iface + ".img"
		specs = append(specs, fmt.Sprintf("%s:%d", d.serial, d.seed))
		fixtures = append(fixtures, scenario.Disk{Path: p, Size: durableSize, Seed: durableSeed, WantSeed: d.seed})
		devArgs = append(devArgs, "--disk", p+",serial="+d.serial+",if="+d.iface)
	}
	g := testhost.Guest{
		CPUs: 1, ExpectCPUs: 1, Quiet: true, Action: "hang",
		Checks:       []string{"boot", "durable"},
		Timeout:      150 * time.Second,
		ExtraCmdline: "vmm.durable=" + strings.Join(specs, ","),
	}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	if args, err = testhost.WithHyperV(scenario.RunnerVMM, args); err != nil {
		return scenario.Scenario{}, err
	}
	args = append(args, "--vmbus")
	return scenario.Scenario{
		Name: "durable", Args: append(args, devArgs...), WantExit: scenario.ExitNone,
		WantChecks: map[string]string{"boot": scenario.Pass, "durable": scenario.Pass},
		Mark:       "VMM-AGENT: check=durable result=pass", KillOnMark: true,
		Timeout: (g.Timeout + 30*time.Second).String(),
		Disks:   fixtures,
	}, nil
}
