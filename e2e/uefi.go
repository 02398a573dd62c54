package e2e

import (
	"fmt"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The UEFI scenarios boot Debian's OVMF under vmm with 2 vCPUs from the
// EFI disk (GPT, EFI system partition with GRUB, Debian's kernel and the
// agent) on virtio-blk: uefi-grub with a fresh copy of the variable store,
// uefi-vars twice with one store kept in a file (vars=PATH): the agent
// writes a UEFI variable through efivarfs in the first boot and finds it in
// the second (checkEFIVarsRuns). Poweroff ends vmm with 0. uefi-vars-kill
// is uefi-vars with vmm SIGKILLed the moment the agent reports the variable
// stored: what OVMF acknowledged must be in the store file all the same.
const (
	uefiGrub     = "uefi-grub"
	uefiVars     = "uefi-vars"
	uefiVarsKill = "uefi-vars-kill"
	// The stores uefi-vars and uefi-vars-kill keep, in the outer machine.
	uefiVarsStore     = "/guest/uefi-vars.fd"
	uefiVarsKillStore = "/guest/uefi-vars-kill.fd"
)

func uefiScenarios() ([]scenario.Scenario, error) {
	const timeout = 420 * time.Second
	var list []scenario.Scenario
	for _, s := range []struct {
		name, firmware string
		repeat         int
		kill           bool
	}{
		{uefiGrub, "ovmf", 1, false},
		{uefiVars, "ovmf,vars=" + uefiVarsStore, 2, false},
		{uefiVarsKill, "ovmf,vars=" + uefiVarsKillStore, 2, true},
	} {
		args, err := testhost.UEFIBootArgs(s.firmware, 2, 512, timeout.String())
		if err != nil {
			return nil, err
		}
		sc := scenario.Scenario{
			Name: s.name, Args: args, WantExit: exitPoweroff, WantChecks: testhost.UEFIChecks(),
			Mark: grubdisk.MenuMarker, Timeout: (timeout + 30*time.Second).String(), Repeat: s.repeat,
			Stream: s.repeat > 1,
		}
		if s.kill {
			// efi-vars is the guest's last check: every check has
			// reported when the mark kills vmm.
			sc.WantExit, sc.Mark, sc.KillOnMark = scenario.ExitNone, "VMM-AGENT: check=efi-vars result=pass", true
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
