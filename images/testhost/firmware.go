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

// FirmwareMedium is what firmware boots the GRUB guest from.
type FirmwareMedium string

// Firmware boot media: the GRUB disk on virtio-blk, on a SATA port of the
// AHCI controller or as an NVMe namespace, or the GRUB ISO (El Torito) on
// the AHCI CD-ROM.
const (
	MediumVirtio FirmwareMedium = "virtio"
	MediumAHCI   FirmwareMedium = "ahci"
	MediumNVMe   FirmwareMedium = "nvme"
	MediumCDROM  FirmwareMedium = "cdrom"
)

// FirmwareArgs returns the runner's arguments for booting FirmwareGuest
// with cpus vCPUs and memMiB of RAM through Debian's SeaBIOS: vmm
// --firmware seabios, or QEMU -M pc with the same SeaBIOS image, both with the
// GRUB disk read-only on virtio-blk. timeout is vmm's own --timeout
// (ignored for QEMU, which has none).
func FirmwareArgs(runner string, cpus, memMiB int, timeout string) ([]string, error) {
	return FirmwareBootArgs(runner, MediumVirtio, cpus, memMiB, timeout)
}

// FirmwareBootArgs is FirmwareArgs booting from medium. Off virtio-blk a
// virtio-rng device comes along, so FirmwareGuest's pci check still finds
// a virtio function whose BARs firmware placed.
func FirmwareBootArgs(runner string, medium FirmwareMedium, cpus, memMiB int, timeout string) ([]string, error) {
	if cpus < 1 || memMiB < 1 {
		return nil, fmt.Errorf("%w: firmware boot with %d CPUs and %d MiB", scenario.ErrInvalid, cpus, memMiB)
	}
	var vmmDev, qemuDev []string
	const drive = ",format=raw,readonly=on,if=none,id=boot"
	switch medium {
	case MediumVirtio:
		vmmDev = []string{"--disk", images.OuterGuestDisk + ",readonly"}
		qemuDev = []string{"-drive", "file=" + images.OuterGuestDisk + ",if=virtio,format=raw,readonly=on"}
	case MediumAHCI:
		vmmDev = []string{"--disk", images.OuterGuestDisk + ",readonly,if=ahci", "--rng"}
		qemuDev = []string{"-device", "ich9-ahci,id=sata", "-drive", "file=" + images.OuterGuestDisk + drive,
			"-device", "ide-hd,drive=boot,bus=sata.0", "-device", "virtio-rng-pci"}
	case MediumNVMe:
		vmmDev = []string{"--disk", images.OuterGuestDisk + ",readonly,if=nvme", "--rng"}
		qemuDev = []string{"-drive", "file=" + images.OuterGuestDisk + drive,
			"-device", "nvme,drive=boot,serial=vmm-nvme0", "-device", "virtio-rng-pci"}
	case MediumCDROM:
		vmmDev = []string{"--cdrom", images.OuterGuestISO, "--rng"}
		qemuDev = []string{"-device", "ich9-ahci,id=sata", "-drive", "file=" + images.OuterGuestISO + drive + ",media=cdrom",
			"-device", "ide-cd,drive=boot,bus=sata.0", "-device", "virtio-rng-pci"}
	default:
		return nil, fmt.Errorf("%w: unknown firmware boot medium %q", scenario.ErrInvalid, medium)
	}
	switch runner {
	case scenario.RunnerVMM, "":
		args := append([]string{"run", "--firmware", "seabios"}, vmmDev...)
		args = append(args, "--cpus", strconv.Itoa(cpus), "--memory", fmt.Sprintf("%dM", memMiB),
			"--console", "stdio")
		if timeout != "" {
			args = append(args, "--timeout", timeout)
		}
		return args, nil
	case scenario.RunnerQEMU:
		args := []string{
			"-M", "pc", "-enable-kvm", "-cpu", "host",
			"-m", strconv.Itoa(memMiB), "-smp", strconv.Itoa(cpus),
			"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
			"-bios", images.OuterSeaBIOS,
		}
		return append(append(args, qemuDev...), "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot"), nil
	}
	return nil, fmt.Errorf("%w: unknown runner %q", scenario.ErrInvalid, runner)
}

// needsFirmware reports whether a scenario boots the GRUB disk, which the
// outer initramfs then carries with SeaBIOS.
func needsFirmware(list []scenario.Scenario) bool { return usesPath(list, images.OuterGuestDisk) }

// needsFirmwareISO reports whether a scenario boots the GRUB ISO.
func needsFirmwareISO(list []scenario.Scenario) bool { return usesPath(list, images.OuterGuestISO) }

// needsSeaBIOS reports whether a scenario names SeaBIOS itself (QEMU -M q35
// -bios for a direct kernel boot), which the outer initramfs then carries.
func needsSeaBIOS(list []scenario.Scenario) bool { return usesPath(list, images.OuterSeaBIOS) }

func usesPath(list []scenario.Scenario, p string) bool {
	for _, s := range list {
		if slices.ContainsFunc(s.Args, func(a string) bool { return strings.Contains(a, p) }) {
			return true
		}
	}
	return false
}
