package testhost

import (
	"fmt"
	"strconv"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
)

// UEFIGuest is the guest the UEFI scenarios boot: OVMF starts GRUB from the
// EFI disk's system partition, GRUB boots Debian's kernel and the agent
// from it. On top of FirmwareGuest's checks the agent finds
// /sys/firmware/efi and keeps a UEFI variable (efi-vars: "written" into a
// store that lacks it, "found" in one that has it from an earlier boot).
func UEFIGuest() Guest {
	g := FirmwareGuest()
	g.Checks = append(g.Checks, "efi", "efi-vars")
	return g
}

// UEFIChecks is what UEFIGuest's agent must report.
func UEFIChecks() map[string]string {
	want := map[string]string{}
	for _, c := range UEFIGuest().Checks {
		want[c] = scenario.Pass
	}
	return want
}

// UEFIBootArgs returns vmm's arguments for booting UEFIGuest with cpus
// vCPUs and memMiB of RAM through Debian's OVMF from the EFI disk on
// virtio-blk (read-only). firmware is the --firmware value: "ovmf", or
// "ovmf,vars=PATH" to keep the variable store in PATH.
func UEFIBootArgs(firmware string, cpus, memMiB int, timeout string) ([]string, error) {
	if cpus < 1 || memMiB < 1 {
		return nil, fmt.Errorf("%w: UEFI boot with %d CPUs and %d MiB", scenario.ErrInvalid, cpus, memMiB)
	}
	args := []string{"run", "--firmware", firmware, "--disk", images.OuterGuestEFIDisk + ",readonly",
		"--cpus", strconv.Itoa(cpus), "--memory", fmt.Sprintf("%dM", memMiB), "--console", "stdio"}
	if timeout != "" {
		args = append(args, "--timeout", timeout)
	}
	return args, nil
}

// needsEFIDisk reports whether a scenario boots the EFI disk, which the
// outer initramfs then carries with OVMF.
func needsEFIDisk(list []scenario.Scenario) bool { return usesPath(list, images.OuterGuestEFIDisk) }
