package e2e

import (
	"time"

	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// firmwareScenario boots Debian's SeaBIOS under vmm with 2 vCPUs (the APs
// come up through firmware's INIT/SIPI) from the GRUB disk on virtio-blk:
// GRUB loads Debian's kernel and the agent from that disk, and the agent
// finds vmm's ACPI tables (handed over by fw_cfg's table loader) without a
// complaint, both CPUs online and the disk's virtio function working after
// SeaBIOS placed its BARs; poweroff ends vmm with 0.
func firmwareScenario() (scenario.Scenario, error) {
	const timeout = 150 * time.Second
	args, err := testhost.FirmwareArgs(scenario.RunnerVMM, 2, 256, timeout.String())
	if err != nil {
		return scenario.Scenario{}, err
	}
	return scenario.Scenario{
		Name: "firmware-grub", Args: args, WantExit: exitPoweroff, WantChecks: testhost.FirmwareChecks(),
		Mark: grubdisk.MenuMarker, Timeout: (timeout + 30*time.Second).String(),
	}, nil
}
