package testhost

import (
	"fmt"
	"strconv"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/grubdisk"
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

// UEFISecureGuest is UEFIGuest booted through Debian's signed shim, GRUB
// and kernel (grubdisk.EFIShim): the agent also finds Secure Boot on.
func UEFISecureGuest() Guest {
	g := UEFIGuest()
	g.Checks = append(g.Checks, "secure-boot")
	return g
}

// UEFIGuestFor is the guest the EFI disk that boots through boot carries.
func UEFIGuestFor(boot grubdisk.EFIBoot) Guest {
	if boot == grubdisk.EFIShim {
		return UEFISecureGuest()
	}
	return UEFIGuest()
}

// UEFIChecks is what the agent of the EFI disk that boots through boot
// must report.
func UEFIChecks(boot grubdisk.EFIBoot) map[string]string {
	want := map[string]string{}
	for _, c := range UEFIGuestFor(boot).Checks {
		want[c] = scenario.Pass
	}
	return want
}

// UEFIBootArgs returns vmm's arguments for booting UEFIGuest with cpus
// vCPUs and memMiB of RAM through Debian's OVMF from the EFI disk that
// boots through boot, read-only on medium: virtio-blk, a SATA port of the
// AHCI controller or an NVMe namespace (OVMF's own AtaAtapiPassThru and
// NvmExpress drivers; a virtio-rng device comes along off virtio-blk, as in
// FirmwareBootArgs, for FirmwareGuest's pci check). firmware is the
// --firmware value: "ovmf", "ovmf,vars=PATH" to keep the variable store in
// PATH, "ovmf,secure-boot".
func UEFIBootArgs(firmware string, boot grubdisk.EFIBoot, medium FirmwareMedium, cpus, memMiB int, timeout string) ([]string, error) {
	if cpus < 1 || memMiB < 1 {
		return nil, fmt.Errorf("%w: UEFI boot with %d CPUs and %d MiB", scenario.ErrInvalid, cpus, memMiB)
	}
	disk := []string{"--disk", images.OuterEFIDisk(boot) + ",readonly"}
	switch medium {
	case MediumVirtio:
	case MediumAHCI, MediumNVMe:
		disk = []string{"--disk", images.OuterEFIDisk(boot) + ",readonly,if=" + string(medium), "--rng"}
	default:
		return nil, fmt.Errorf("%w: unknown UEFI boot medium %q", scenario.ErrInvalid, medium)
	}
	args := append([]string{"run", "--firmware", firmware}, disk...)
	args = append(args, "--cpus", strconv.Itoa(cpus), "--memory", fmt.Sprintf("%dM", memMiB), "--console", "stdio")
	if timeout != "" {
		args = append(args, "--timeout", timeout)
	}
	return args, nil
}

// UEFIBenchArgs returns runner's arguments for booting UEFIGuest through
// Debian's OVMF from the plain EFI disk on virtio-blk (read-only): vmm with
// --firmware ovmf, QEMU -M pc with the same code as pflash unit 0 and the
// variable template as unit 1 in snapshot mode (writes go to a throw-away
// overlay: a per-run copy, as vmm's).
func UEFIBenchArgs(runner string, cpus, memMiB int, timeout string) ([]string, error) {
	switch runner {
	case scenario.RunnerVMM, "":
		return UEFIBootArgs("ovmf", grubdisk.EFIGrub, MediumVirtio, cpus, memMiB, timeout)
	case scenario.RunnerQEMU:
		if cpus < 1 || memMiB < 1 {
			return nil, fmt.Errorf("%w: UEFI boot with %d CPUs and %d MiB", scenario.ErrInvalid, cpus, memMiB)
		}
		ovmf := images.OuterOVMF()
		return []string{
			"-M", "pc", "-enable-kvm", "-cpu", "host",
			"-m", strconv.Itoa(memMiB), "-smp", strconv.Itoa(cpus),
			"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + ovmf[0],
			"-drive", "if=pflash,format=raw,unit=1,snapshot=on,file=" + ovmf[1],
			"-drive", "file=" + images.OuterEFIDisk(grubdisk.EFIGrub) + ",if=virtio,format=raw,readonly=on",
			"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot",
		}, nil
	}
	return nil, fmt.Errorf("%w: unknown runner %q", scenario.ErrInvalid, runner)
}
