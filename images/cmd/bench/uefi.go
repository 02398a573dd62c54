package main

import (
	"time"

	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The UEFI benchmark (-uefi): Debian's OVMF boots the EFI disk's GRUB from
// virtio-blk under vmm (--firmware ovmf) and under QEMU -M pc with the same
// OVMF files and disk, timed from runner start to OVMF's boot manager
// loading the disk's boot option (the scenario's Mark) and to the agent's
// first line.
func uefiScenarioName(runner string) string { return "uefi-" + runner }

// uefiBootManagerMark is the line OVMF's BDS prints as it loads the first
// boot option: the boot manager has run.
const uefiBootManagerMark = "BdsDxe: loading Boot"

// uefiMemoryMiB is the UEFI guests' RAM (the e2e UEFI scenarios' size):
// with 256 MiB Debian's GRUB-EFI runs out of memory loading the kernel,
// under QEMU -m 256 with the same OVMF and disk as under vmm.
const uefiMemoryMiB = 512

func (o options) uefiScenarios() ([]scenario.Scenario, error) {
	var list []scenario.Scenario
	for _, runner := range o.runners {
		kill, vmmTimeout := o.timeout, ""
		if runner == scenario.RunnerVMM {
			vmmTimeout = o.timeout.String()
			kill += 30 * time.Second
		}
		args, err := testhost.UEFIBenchArgs(runner, o.cpus, max(o.memory, uefiMemoryMiB), vmmTimeout)
		if err != nil {
			return nil, err
		}
		want, wantExit := testhost.UEFIChecks(grubdisk.EFIGrub), 0
		if runner == scenario.RunnerQEMU {
			// QEMU installs its own ACPI tables (OEM BOCHS): the agent's
			// acpi-tables check fails there by design, (1<<1)|1.
			want["acpi-tables"], wantExit = scenario.Fail, 3
		}
		list = append(list, scenario.Scenario{
			Name: uefiScenarioName(runner), Runner: runner, Args: args, Repeat: o.n, Bench: true,
			Mark: uefiBootManagerMark, WantChecks: want, WantExit: wantExit, Timeout: kill.String(),
		})
	}
	return list, nil
}

func summarizeUEFI(runners []string, results []scenario.Result) fwReport {
	return summarizeBoot(fwReport{Title: "UEFI boot (OVMF -> GRUB -> Linux, virtio-blk)", Mark: "boot manager"},
		uefiScenarioName, runners, results)
}
