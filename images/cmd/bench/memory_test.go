package main

import (
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestMemoryScenarios(t *testing.T) {
	o, err := parseFlags([]string{"-n", "5", "-footprint"}, io.Discard)
	require.NoError(t, err)
	list, err := o.scenarios()
	require.NoError(t, err)
	byName := map[string]scenario.Scenario{}
	for _, s := range list {
		byName[s.Name] = s
	}
	vmm, qemu := byName["mem-vmm"], byName["mem-qemu"]
	require.Equal(t, memRepeat, vmm.Runs())
	require.Equal(t, 256, vmm.SampleMemoryMiB)
	require.True(t, vmm.Report)
	require.False(t, qemu.Report, "QEMU writes no vmm report")
	require.Equal(t, scenario.RunnerQEMU, qemu.RunnerName())
	require.Equal(t, 256, qemu.SampleMemoryMiB)
	require.Contains(t, strings.Join(byName[freeBalloonName].Args, " "), "vmm.checks=boot,balloon")
	require.Contains(t, strings.Join(byName[freeBalloonName].Args, " "), "--balloon")
	require.Contains(t, strings.Join(byName[freeName].Args, " "), "vmm.checks=boot,memfree")
	require.NotContains(t, strings.Join(byName[freeName].Args, " "), "--balloon")
}

func TestSummarizeMemory(t *testing.T) {
	mem := func(own, guest uint64) string {
		return scenario.MemoryPrefix + `{"own_peak_kib":` + itoa(own) + `,"guest_kib":` + itoa(guest) + `,"guest_peak_kib":` + itoa(guest) + `,"samples":9}`
	}
	console := map[string][]string{
		"mem-vmm": {mem(4<<10, 60<<10), scenario.ReportPrefix + `{"memory":{"overhead_kib":4096}}`,
			mem(5<<10, 61<<10), scenario.ReportPrefix + `{"memory":{"overhead_kib":5120}}`},
		"mem-qemu": {mem(30<<10, 62<<10), mem(40<<10, 62<<10), mem(50<<10, 62<<10)},
		freeName:   {scenario.ReportPrefix + `{"memory":{"guest_resident_kib":204800,"guest_resident_peak_kib":204800}}`},
		freeBalloonName: {scenario.ReportPrefix + `{"memory":{"guest_resident_kib":71680,"guest_resident_peak_kib":204800},` +
			`"devices":{"balloon":{"reported_kib":133120}}}`},
	}
	rep := summarizeMemory([]string{"vmm", "qemu"}, console)
	require.InDelta(t, 4.5, rep.Own["vmm"], 1e-9)
	require.InDelta(t, 40, rep.Own["qemu"], 1e-9)
	require.InDelta(t, 4.5, rep.VMMReportOwn, 1e-9)
	require.InDelta(t, 4.5/40, rep.Ratio, 1e-9)
	require.Equal(t, map[string]bool{"own_fifth_of_qemu": true, "own_under_5MiB": true}, rep.Targets)
	require.Equal(t, freed{ResidentMiB: 200, PeakMiB: 200}, rep.Freed[freeName])
	require.Equal(t, freed{ResidentMiB: 70, PeakMiB: 200, ReportedMiB: 130}, rep.Freed[freeBalloonName])
	var b strings.Builder
	rep.write(&b)
	require.Contains(t, b.String(), "vmm   n=2  own 4.5 MiB")
	require.Contains(t, b.String(), "ratio own vmm/qemu 0.11 (target <= 0.2: true); vmm own <= 5 MiB: true")
	require.Contains(t, b.String(), "with --balloon   resident at the end 70.0 MiB (peak 200.0 MiB), free page reports gave back 130.0 MiB")

	empty := summarizeMemory([]string{"vmm", "qemu"}, nil)
	require.Zero(t, empty.Ratio)
	b.Reset()
	empty.write(&b)
	require.Contains(t, b.String(), "n/a (a runner has no sampled run)")
	require.Contains(t, b.String(), "without balloon  n/a (no report)")
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
