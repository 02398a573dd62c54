package testhost

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
)

// FirmwareGuest is the guest every firmware scenario boots: SeaBIOS loads
// GRUB from a virtio-blk disk, and GRUB boots Debian's kernel and the agent
// initramfs from that disk. Its command line is baked into the disk's
// grub.cfg, so the checks are the same for every firmware run: they show
// vmm's ACPI tables arrived through fw_cfg and the disk's virtio function
// works after firmware placed its BARs. The cpus check compares online
// with present CPUs, so it holds for any --cpus.
func FirmwareGuest() Guest {
	return Guest{Quiet: true, Checks: []string{"boot", "cpus", "acpi", "acpi-tables", "pci"}}
}

// FirmwareChecks is what FirmwareGuest's agent must report.
func FirmwareChecks() map[string]string {
	want := map[string]string{}
	for _, c := range FirmwareGuest().Checks {
		want[c] = scenario.Pass
	}
	return want
}

// FirmwareArgs returns the runner's arguments for booting FirmwareGuest
// with cpus vCPUs and memMiB of RAM through Debian's SeaBIOS: vmm
// --firmware seabios, or QEMU -M pc with the same SeaBIOS image, both with the
// GRUB disk read-only on virtio-blk. timeout is vmm's own --timeout
// (ignored for QEMU, which has none).
func FirmwareArgs(runner string, cpus, memMiB int, timeout string) ([]string, error) {
	if cpus < 1 || memMiB < 1 {
		return nil, fmt.Errorf("%w: firmware boot with %d CPUs and %d MiB", scenario.ErrInvalid, cpus, memMiB)
	}
	switch runner {
	case scenario.RunnerVMM, "":
		args := []string{"run", "--firmware", "seabios",
			"--disk", images.OuterGuestDisk + ",readonly",
			"--cpus", strconv.Itoa(cpus), "--memory", fmt.Sprintf("%dM", memMiB),
			"--console", "stdio"}
		if timeout != "" {
			args = append(args, "--timeout", timeout)
		}
		return args, nil
	case scenario.RunnerQEMU:
		return []string{
			"-M", "pc", "-enable-kvm", "-cpu", "host",
			"-m", strconv.Itoa(memMiB), "-smp", strconv.Itoa(cpus),
			"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
			"-bios", images.OuterSeaBIOS,
			"-drive", "file=" + images.OuterGuestDisk + ",if=virtio,format=raw,readonly=on",
			"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot",
		}, nil
	}
	return nil, fmt.Errorf("%w: unknown runner %q", scenario.ErrInvalid, runner)
}

// needsFirmware reports whether a scenario boots the GRUB disk, which the
// outer initramfs then carries with SeaBIOS.
func needsFirmware(list []scenario.Scenario) bool {
	for _, s := range list {
		if slices.ContainsFunc(s.Args, func(a string) bool { return strings.Contains(a, images.OuterGuestDisk) }) {
			return true
		}
	}
	return false
}
