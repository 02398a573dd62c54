package e2e

import (
	"regexp"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
)

// The Debian scenarios boot the full Debian system (images.DebianDisk:
// GRUB on a GPT disk, systemd, cloud-init) as a CI job boots a
// distribution's cloud image: the qcow2 from the read-only image share in
// snapshot mode (writes go to an unlinked overlay), with a cloud-init seed
// whose user-data prints debianMarker, naming the datasource that found it,
// and powers off. --expect stops vmm with 0 at the marker; the seed is
// vmm's virtio-blk disk (seed=/dev/vdX), which only DataSourceNoCloud reads.
// debian-seabios boots through SeaBIOS from virtio-blk, debian-ovmf-nvme
// through OVMF from NVMe. TestE2E checks the base image's hash afterwards.
const (
	debianSeaBIOS = "debian-seabios"
	debianOVMF    = "debian-ovmf-nvme"
	// debianSeedDir is the seed directory --cloud-init names.
	debianSeedDir = "/tmp/vmm-debian-seed"
	// debianMarker starts the user-data's console line; debianExpect is
	// what vmm's --expect and the scenario's Mark look for.
	debianMarker = "VMM-E2E-DEBIAN"
	debianExpect = debianMarker + " DataSourceNoCloud [seed=/dev/vd"
)

// debianUserData is the seed's user-data: cloud-init's runcmd prints the
// marker with the datasource cloud-init recorded in its status (set once
// its init stage found the seed; runcmd runs in the final stage), and
// power_state powers off. Nothing else: every module more is boot time.
const debianUserData = "#cloud-config\nruncmd:\n" +
	"  - echo \"" + debianMarker + " $(grep -o 'DataSourceNoCloud [^]]*]' /run/cloud-init/status.json | head -n 1)\" > /dev/ttyS0\n" +
	"power_state:\n  mode: poweroff\n  delay: now\n"

// debianScenarios are the two Debian boots. Two levels down the login
// prompt comes after about 100 s and the marker later; the limits leave
// room for a loaded CI machine.
func debianScenarios() []scenario.Scenario {
	const timeout = 480 * time.Second
	var list []scenario.Scenario
	for _, s := range []struct{ name, firmware, iface string }{
		{debianSeaBIOS, "seabios", "virtio"},
		{debianOVMF, "ovmf", "nvme"},
	} {
		list = append(list, scenario.Scenario{
			Name: s.name,
			Args: []string{"run", "--firmware", s.firmware,
				"--disk", images.OuterDebianDisk + ",snapshot,if=" + s.iface,
				"--cloud-init", debianSeedDir, "--memory", "1G", "--console", "stdio",
				"--timeout", timeout.String(), "--expect", regexp.QuoteMeta(debianExpect)},
			WantExit: exitPoweroff, Mark: debianExpect, Timeout: (timeout + 30*time.Second).String(),
			Files: map[string]string{
				debianSeedDir + "/user-data": debianUserData,
				debianSeedDir + "/meta-data": "local-hostname: vmm-debian\n",
			},
		})
	}
	return list
}
