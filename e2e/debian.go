package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/debdisk"
	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
)

// The Debian scenarios boot the full Debian system (images.DebianDisk:
// GRUB on a GPT disk, systemd, cloud-init) as a CI job boots a
// distribution's cloud image: the qcow2 from the read-only image share in
// snapshot mode (writes go to an unlinked overlay), with a cloud-init seed
// (vmm's last virtio-blk disk, /dev/vdX, which only DataSourceNoCloud
// reads) whose user-data prints debianMarker with the datasource that found
// the seed and the root filesystem's device, and powers off. TestE2E checks
// the base image's hash afterwards.
//
//   - debian-seabios boots through SeaBIOS and GRUB from virtio-blk and
//     stops at the serial getty's login prompt (--expect 'login:'); the
//     console must show each stage in order (checkDebianLogin).
//   - debian-ovmf-nvme (OVMF, GRUB, NVMe) and debian-storvsc run at once
//     from the one base image, each with its own overlay and seed, and
//     both stop at the marker. debian-storvsc boots the image's own kernel
//     and initrd directly with root=/dev/sda3 on a storvsc disk (--disk
//     ...,if=vmbus with --hyperv all --vmbus): the image's initramfs
//     (its disk drivers only) loads hv_vmbus and hv_storvsc, and the
//     marker must name /dev/sda3 as the root, the only SCSI disk the
//     guest has.
const (
	debianSeaBIOS = "debian-seabios"
	debianOVMF    = "debian-ovmf-nvme"
	debianStorvsc = "debian-storvsc"
	// debianGroup is the concurrent group of the two runs at once.
	debianGroup = "debian-base"
	// debianSeedDir is the seed directory --cloud-init names; each
	// concurrent run has its own (the outer init removes a run's files
	// when it ends).
	debianSeedDir = "/tmp/vmm-debian-seed"
	// debianMarker starts the user-data's console line; debianExpect is
	// what vmm's --expect and the scenario's Mark look for.
	debianMarker = images.DebianSeedMarker
	debianExpect = debianMarker + " DataSourceNoCloud [seed=/dev/vd"
	// debianStorvscRoot is the root device debian-storvsc names: the
	// root partition (debdisk's third) of LUN 0 of vmm's SCSI controller.
	debianStorvscRoot = "/dev/sda3"
	// debianStorvscExpect is debian-storvsc's marker: the seed is the only
	// virtio-blk disk there.
	debianStorvscExpect = debianMarker + " DataSourceNoCloud [seed=/dev/vda] root=" + debianStorvscRoot
	// debianLogin is the getty's prompt debian-seabios waits for.
	debianLogin = "login:"
)

// debianUserData is the seed's user-data (images.DebianUserData): it
// prints debianMarker, the datasource and the root device, and powers off.
const debianUserData = images.DebianUserData

// debianScenarios are the Debian boots. Two levels down the login prompt
// comes after about 100 s and the marker later; the two concurrent runs
// share the outer machine's one CPU and its 9p share, and slow each other
// more than twofold (on a loaded machine neither had passed systemd's udev
// after 600 s); the limits leave room for a loaded CI machine.
func debianScenarios() []scenario.Scenario {
	const timeout, groupTimeout = 480 * time.Second, 1200 * time.Second
	seed := func(dir string) map[string]string {
		return map[string]string{
			dir + "/user-data": debianUserData,
			dir + "/meta-data": "local-hostname: vmm-debian\n",
		}
	}
	run := func(timeout time.Duration, expect string, args ...string) []string {
		return append(append([]string{"run"}, args...), "--memory", "1G", "--console", "stdio",
			"--timeout", timeout.String(), "--expect", expect)
	}
	return []scenario.Scenario{{
		Name: debianSeaBIOS,
		Args: run(timeout, debianLogin, "--firmware", "seabios",
			"--disk", images.OuterDebianDisk+",snapshot,if=virtio", "--cloud-init", debianSeedDir),
		WantExit: exitPoweroff, Mark: debianLogin, Stream: true, Timeout: (timeout + 30*time.Second).String(),
		Files: seed(debianSeedDir),
	}, {
		Name: debianOVMF,
		Args: run(groupTimeout, regexp.QuoteMeta(debianExpect), "--firmware", "ovmf",
			"--disk", images.OuterDebianDisk+",snapshot,if=nvme", "--cloud-init", debianSeedDir+"-nvme"),
		WantExit: exitPoweroff, Mark: debianExpect, Timeout: (groupTimeout + 30*time.Second).String(),
		Files: seed(debianSeedDir + "-nvme"), Concurrent: debianGroup,
	}, {
		Name: debianStorvsc,
		Args: run(groupTimeout, regexp.QuoteMeta(debianStorvscExpect),
			"--kernel", images.OuterDebianKernel, "--initrd", images.OuterDebianInitrd,
			"--cmdline", debianStorvscCmdline(),
			"--disk", images.OuterDebianDisk+",snapshot,if=vmbus", "--hyperv", "all", "--vmbus",
			"--cloud-init", debianSeedDir+"-storvsc"),
		WantExit: exitPoweroff, Mark: debianStorvscExpect, Timeout: (groupTimeout + 30*time.Second).String(),
		Files: seed(debianSeedDir + "-storvsc"), Concurrent: debianGroup,
	}}
}

// debianStorvscCmdline is GRUB's command line for the image with the root
// named by device instead of UUID.
func debianStorvscCmdline() string {
	return strings.Replace(debdisk.Cmdline(), "root=UUID="+debdisk.RootUUID, "root="+debianStorvscRoot, 1)
}

// usesDebianImage reports whether a scenario boots the Debian image.
func usesDebianImage(s scenario.Scenario) bool {
	return strings.Contains(strings.Join(s.Args, " "), images.OuterDebianDisk)
}

// checkDebianLogin checks debian-seabios's console: SeaBIOS, GRUB's menu
// and its Linux entry, the image's kernel, systemd's Debian banner and the
// login prompt, in that order.
func checkDebianLogin(console []string, kernel string) error {
	text := strings.Join(console, "\n")
	last := -1
	for _, want := range []string{"SeaBIOS (version", grubdisk.MenuMarker, grubdisk.LinuxMarker,
		"Linux version " + kernel, "Debian GNU/Linux 12", debianLogin} {
		i := strings.Index(text, want)
		if i <= last {
			return fmt.Errorf("%q missing or out of order", want)
		}
		last = i
	}
	return nil
}
