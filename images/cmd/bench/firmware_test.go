package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
)

func TestFirmwareScenarios(t *testing.T) {
	o := options{runners: []string{"vmm", "qemu"}, n: 3, cpus: 1, memory: 256, timeout: time.Minute, firmware: true}
	list, err := o.firmwareScenarios()
	require.NoError(t, err)
	require.Len(t, list, 2)
	for _, s := range list {
		require.Equal(t, grubdisk.MenuMarker, s.Mark)
		require.True(t, s.Bench)
		require.Equal(t, 3, s.Repeat)
		require.NoError(t, s.Validate())
	}
	require.Contains(t, list[0].Args, "--firmware")
	require.Contains(t, list[1].Args, "-bios")
	require.Equal(t, scenario.Pass, list[0].WantChecks["acpi-tables"])
	require.Equal(t, 0, list[0].WantExit)
	require.Equal(t, scenario.Fail, list[1].WantChecks["acpi-tables"], "QEMU's tables are its own")
	require.Equal(t, 3, list[1].WantExit)
}

func TestSummarizeFirmware(t *testing.T) {
	res := []scenario.Result{
		{Name: "fw-vmm", Pass: true, MarkS: 2, FirstLineS: 10},
		{Name: "fw-vmm", Pass: true, MarkS: 4, FirstLineS: 12},
		{Name: "fw-vmm", Pass: false, MarkS: 1, FirstLineS: 1},
		{Name: "fw-qemu", Pass: true, MarkS: 5, FirstLineS: 20},
		{Name: "fw-qemu", Pass: true, MarkS: scenario.NoFirstLine, FirstLineS: 20},
	}
	rep := summarizeFirmware([]string{"vmm", "qemu"}, res)
	require.Equal(t, map[string]float64{"vmm": 3, "qemu": 5}, rep.MarkS)
	require.Equal(t, map[string]float64{"vmm": 11, "qemu": 20}, rep.AgentS)
	require.Equal(t, map[string]int{"vmm": 2, "qemu": 1}, rep.N)
	var b strings.Builder
	rep.write(&b)
	require.Contains(t, b.String(), "ratio vmm/qemu: GRUB menu 0.60  agent first line 0.55")
}

func TestUEFIScenarios(t *testing.T) {
	o := options{runners: []string{"vmm", "qemu"}, n: 2, cpus: 1, memory: 256, timeout: time.Minute, uefi: true}
	list, err := o.scenarios()
	require.NoError(t, err)
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	require.Contains(t, names, "uefi-vmm")
	require.Contains(t, names, "uefi-qemu")
	for _, s := range list {
		switch s.Name {
		case "uefi-vmm":
			require.Equal(t, []string{"--firmware", "ovmf"}, s.Args[1:3])
			require.Contains(t, s.Args, "512M", "GRUB-EFI needs more than 256 MiB")
			require.Equal(t, 0, s.WantExit)
		case "uefi-qemu":
			require.Contains(t, s.Args, "if=pflash,format=raw,unit=1,snapshot=on,file=/usr/share/OVMF/OVMF_VARS_4M.fd")
			require.Equal(t, 3, s.WantExit)
			require.Equal(t, uefiBootManagerMark, s.Mark)
		}
	}
	rep := summarizeUEFI([]string{"vmm", "qemu"}, []scenario.Result{
		{Name: "uefi-vmm", Pass: true, MarkS: 6, FirstLineS: 30},
		{Name: "uefi-qemu", Pass: true, MarkS: 5, FirstLineS: 25},
	})
	var b strings.Builder
	rep.write(&b)
	require.Contains(t, b.String(), "ratio vmm/qemu: boot manager 1.20  agent first line 1.20")
}
