package testhost

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
)

func TestFirmwareGuestFitsGrubCfg(t *testing.T) {
	line := FirmwareGuest().Cmdline()
	require.Contains(t, line, "console=ttyS0")
	require.Contains(t, line, "vmm.checks=boot,cpus,acpi,acpi-tables,pci")
	_, err := grubdisk.GrubConfig(line)
	require.NoError(t, err, "the command line must be quotable in grub.cfg")
	require.Len(t, FirmwareChecks(), 5)
}

func TestFirmwareArgs(t *testing.T) {
	vmm, err := FirmwareArgs(scenario.RunnerVMM, 2, 256, "150s")
	require.NoError(t, err)
	require.Equal(t, []string{"run", "--firmware", "seabios", "--disk", images.OuterGuestDisk + ",readonly",
		"--cpus", "2", "--memory", "256M", "--console", "stdio", "--timeout", "150s"}, vmm)
	qemu, err := FirmwareArgs(scenario.RunnerQEMU, 1, 256, "")
	require.NoError(t, err)
	require.Contains(t, qemu, images.OuterSeaBIOS)
	require.Contains(t, qemu, "pc")
	for _, args := range [][]string{vmm, qemu} {
		require.True(t, needsFirmware([]scenario.Scenario{{Name: "fw", Args: args}}))
	}
	require.False(t, needsFirmware([]scenario.Scenario{{Name: "direct", Args: []string{"run", "--kernel", images.OuterGuestKernel}}}))
	for medium, want := range map[FirmwareMedium]string{MediumAHCI: ",if=ahci", MediumNVMe: ",if=nvme", MediumCDROM: images.OuterGuestISO} {
		args, err := FirmwareBootArgs(scenario.RunnerVMM, medium, 2, 256, "150s")
		require.NoError(t, err, medium)
		require.True(t, slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, want) }), "%s: %v", medium, args)
		require.Contains(t, args, "--rng", "the pci check needs a virtio function")
		qemu, err := FirmwareBootArgs(scenario.RunnerQEMU, medium, 2, 256, "")
		require.NoError(t, err, medium)
		require.Contains(t, qemu, "virtio-rng-pci")
	}
	cd, err := FirmwareBootArgs(scenario.RunnerVMM, MediumCDROM, 1, 256, "")
	require.NoError(t, err)
	require.True(t, needsFirmwareISO([]scenario.Scenario{{Name: "cd", Args: cd}}))
	require.True(t, needsSeaBIOS([]scenario.Scenario{{Name: "q35", Args: []string{"-M", "q35", "-bios", images.OuterSeaBIOS}}}))
	require.False(t, needsSeaBIOS([]scenario.Scenario{{Name: "microvm", Args: []string{"-M", "microvm"}}}))
	require.False(t, needsFirmware([]scenario.Scenario{{Name: "cd", Args: cd}}))
	_, err = FirmwareBootArgs(scenario.RunnerVMM, "floppy", 1, 256, "")
	require.ErrorIs(t, err, scenario.ErrInvalid)
	_, err = FirmwareArgs("bochs", 1, 256, "")
	require.ErrorIs(t, err, scenario.ErrInvalid)
	_, err = FirmwareArgs(scenario.RunnerVMM, 0, 256, "")
	require.ErrorIs(t, err, scenario.ErrInvalid)
}
