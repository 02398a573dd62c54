package e2e

import (
	"fmt"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
	"github.com/vmmdev/vmm/vmm"
)

// The UEFI scenarios boot Debian's OVMF under vmm with 2 vCPUs from an EFI
// disk (GPT, EFI system partition with GRUB, Debian's kernel and the agent)
// on virtio-blk: uefi-grub with a fresh copy of the variable store,
// uefi-vars twice with one store kept in a file (vars=PATH): the agent
// writes a UEFI variable through efivarfs in the first boot and finds it in
// the second (checkEFIVarsRuns). uefi-vars-kill is uefi-vars with vmm
// SIGKILLed the moment the agent reports the variable stored: what OVMF
// acknowledged must be in the store file all the same. uefi-secure-boot
// boots Debian's signed shim, GRUB and kernel with Secure Boot on
// (--firmware ovmf,secure-boot); uefi-unsigned has an unsigned GRUB as
// BOOTX64.EFI, which OVMF must refuse ("Access Denied"), ending with no
// bootable device. uefi-ahci and uefi-nvme are uefi-grub from the disk on
// a SATA port of the AHCI controller and as an NVMe namespace, through
// OVMF's own drivers. Poweroff ends vmm with 0.
const (
	uefiGrub       = "uefi-grub"
	uefiAHCI       = "uefi-ahci"
	uefiNVMe       = "uefi-nvme"
	uefiVars       = "uefi-vars"
	uefiVarsKill   = "uefi-vars-kill"
	uefiSecureBoot = "uefi-secure-boot"
	uefiUnsigned   = "uefi-unsigned"
	// The stores uefi-vars and uefi-vars-kill keep, in the outer machine.
	uefiVarsStore     = "/guest/uefi-vars.fd"
	uefiVarsKillStore = "/guest/uefi-vars-kill.fd"
	// uefiRefused is what OVMF prints when Secure Boot refuses an image.
	uefiRefused = "Access Denied"
)

func uefiScenarios() ([]scenario.Scenario, error) {
	const timeout = 420 * time.Second
	var list []scenario.Scenario
	for _, s := range []struct {
		name, firmware string
		boot           grubdisk.EFIBoot
		medium         testhost.FirmwareMedium
		repeat         int
		kill           bool
	}{
		{uefiGrub, "ovmf", grubdisk.EFIGrub, testhost.MediumVirtio, 1, false},
		{uefiAHCI, "ovmf", grubdisk.EFIGrub, testhost.MediumAHCI, 1, false},
		{uefiNVMe, "ovmf", grubdisk.EFIGrub, testhost.MediumNVMe, 1, false},
		{uefiVars, "ovmf,vars=" + uefiVarsStore, grubdisk.EFIGrub, testhost.MediumVirtio, 2, false},
		{uefiVarsKill, "ovmf,vars=" + uefiVarsKillStore, grubdisk.EFIGrub, testhost.MediumVirtio, 2, true},
		{uefiSecureBoot, "ovmf,secure-boot", grubdisk.EFIShim, testhost.MediumVirtio, 1, false},
		{uefiUnsigned, "ovmf,secure-boot", grubdisk.EFIUnsigned, testhost.MediumVirtio, 1, false},
	} {
		// 512 MiB: with 256 Debian's GRUB-EFI runs out of memory loading
		// the kernel, under QEMU with the same OVMF and disk too.
		args, err := testhost.UEFIBootArgs(s.firmware, s.boot, s.medium, 2, 512, timeout.String())
		if err != nil {
			return nil, err
		}
		sc := scenario.Scenario{
			Name: s.name, Args: args, WantExit: exitPoweroff, WantChecks: testhost.UEFIChecks(s.boot),
			Mark: grubdisk.MenuMarker, Timeout: (timeout + 30*time.Second).String(), Repeat: s.repeat,
			Stream: s.repeat > 1,
		}
		switch {
		case s.kill:
			// efi-vars is the guest's last check: every check has
			// reported when the mark kills vmm.
			sc.WantExit, sc.Mark, sc.KillOnMark = scenario.ExitNone, "VMM-AGENT: check=efi-vars result=pass", true
		case s.boot == grubdisk.EFIUnsigned:
			// No agent: OVMF refuses GRUB, then starts its shell.
			sc.WantExit, sc.WantChecks, sc.Mark, sc.Stream = vmm.ExitNoBoot, nil, "", true
		}
		list = append(list, sc)
	}
	return list, nil
}

// checkEFIVarsRuns checks uefi-vars' console: the efi-vars check wrote the
// variable in the first boot and found it in the second.
func checkEFIVarsRuns(console []string, store string) error {
	var got []string
	for _, l := range console {
		if _, rest, ok := strings.Cut(l, "VMM-AGENT: check=efi-vars result=pass detail="); ok {
			got = append(got, strings.Trim(strings.TrimSpace(rest), `"`))
		}
	}
	if len(got) != 2 || got[0] != "written" || got[1] != "found" {
		return fmt.Errorf("efi-vars results %q, want [written found]: the second boot must find what the first stored in %s", got, store)
	}
	return nil
}
