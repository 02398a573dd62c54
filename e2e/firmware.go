package e2e

import (
	"time"

	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// firmwareScenarios boot Debian's SeaBIOS under vmm with 2 vCPUs (the APs
// come up through firmware's INIT/SIPI): firmware-grub from the GRUB disk
// on virtio-blk, firmware-ahci and firmware-nvme from the same disk through
// SeaBIOS's AHCI and NVMe drivers, firmware-cdrom from the GRUB ISO (El
// Torito) on the AHCI CD-ROM. GRUB loads Debian's kernel and the agent from
// its medium, and the agent finds vmm's ACPI tables (handed over by fw_cfg's
// table loader) without a complaint, both CPUs online and a virtio
// function working after SeaBIOS placed its BARs (the disk's, or the
// virtio-rng device the others add); poweroff ends vmm with 0.
func firmwareScenarios() ([]scenario.Scenario, error) {
	const timeout = 150 * time.Second
	var list []scenario.Scenario
	for _, m := range []struct {
		name   string
		medium testhost.FirmwareMedium
	}{
		{"firmware-grub", testhost.MediumVirtio},
		{"firmware-ahci", testhost.MediumAHCI},
		{"firmware-nvme", testhost.MediumNVMe},
		{"firmware-cdrom", testhost.MediumCDROM},
	} {
		args, err := testhost.FirmwareBootArgs(scenario.RunnerVMM, m.medium, 2, 256, timeout.String())
		if err != nil {
			return nil, err
		}
		list = append(list, scenario.Scenario{
			Name: m.name, Args: args, WantExit: exitPoweroff, WantChecks: testhost.FirmwareChecks(),
			Mark: grubdisk.MenuMarker, Timeout: (timeout + 30*time.Second).String(),
		})
	}
	return list, nil
}
