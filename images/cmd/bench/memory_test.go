package main

import (
	"encoding/json"
	"io"
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
	// A run's sampled peaks: anon and file make up own, page tables 256 KiB.
	mem := func(anon, file, guest uint64) string {
		m := scenario.Memory{OwnPeakKiB: anon + file, GuestKiB: guest, GuestPeakKiB: guest, AnonPeakKiB: anon,
			FilePeakKiB: file, PageTablesPeakKiB: 256, PssPeakKiB: anon + file/2, PerGuestPeakKiB: anon + 256, Samples: 9}
		data, err := json.Marshal(m)
		require.NoError(t, err)
		return scenario.MemoryPrefix + string(data)
	}
	console := map[string][]string{
		// Each run's report, then its sampled memory; the report says
		// the sampled per-guest figure, then 0.75 MiB less.
		"mem-vmm": {scenario.ReportPrefix + `{"memory":{"overhead_kib":3328}}`, mem(3<<10, 8<<10, 60<<10),
			scenario.ReportPrefix + `{"memory":{"overhead_kib":3584}}`, mem(4<<10, 8<<10, 61<<10)},
		"mem-qemu": {mem(30<<10, 10<<10, 62<<10), mem(40<<10, 10<<10, 62<<10), mem(50<<10, 10<<10, 62<<10),
			scenario.MemoryPrefix + `{"samples":0}`},
		freeName: {scenario.ReportPrefix + `{"memory":{"guest_resident_kib":204800,"guest_resident_peak_kib":204800}}`},
		freeBalloonName: {scenario.ReportPrefix + `{"memory":{"guest_resident_kib":71680,"guest_resident_peak_kib":204800},` +
			`"devices":{"balloon":{"reported_kib":133120}}}`},
	}
	rep := summarizeMemory([]string{"vmm", "qemu"}, console)
	require.Equal(t, memFigures{RSS: 11.5, Anon: 3.5, File: 8, PageTables: 0.25, Pss: 7.5, PerGuest: 3.75, Guest: 60.5, N: 2}, rep.Runners["vmm"])
	require.Equal(t, memFigures{RSS: 50, Anon: 40, File: 10, PageTables: 0.25, Pss: 45, PerGuest: 40.25, Guest: 62, N: 3}, rep.Runners["qemu"])
	require.InDelta(t, 3.375, rep.VMMReportOwn, 1e-9)
	require.InDelta(t, -0.375, rep.ReportMinusPerGuest, 1e-9)
	require.InDelta(t, -0.75, rep.ReportMinusPerGuestMost, 1e-9)
	require.InDelta(t, 3.75/40.25, rep.Ratio, 1e-9)
	require.InDelta(t, 11.5/50, rep.RSSRatio, 1e-9)
	require.Equal(t, map[string]bool{"per_guest_fifth_of_qemu": true, "per_guest_under_5MiB": true}, rep.Targets)
	require.Equal(t, freed{ResidentMiB: 200, PeakMiB: 200}, rep.Freed[freeName])
	require.Equal(t, freed{ResidentMiB: 70, PeakMiB: 200, ReportedMiB: 130}, rep.Freed[freeBalloonName])
	var b strings.Builder
	rep.write(&b)
	require.Contains(t, b.String(), "  vmm    2    11.5     3.5     8.0     0.0     0.2     7.5       3.8      60.5\n")
	require.Contains(t, b.String(), "  qemu   3    50.0    40.0    10.0     0.0     0.2    45.0      40.2      62.0\n")
	require.Contains(t, b.String(), "overhead 3.4 MiB (anon + page tables, at its own samples); minus sampled per-guest of the same run: median -0.4, largest -0.8 MiB")
	require.Contains(t, b.String(), "per-guest vmm/qemu 0.09 (target <= 0.2: true); RSS vmm/qemu 0.23; vmm per-guest <= 5 MiB: true")
	require.Contains(t, b.String(), "with --balloon   resident at the end 70.0 MiB (peak 200.0 MiB), free page reports gave back 130.0 MiB")

	// Over the targets: a per-guest figure of 6 MiB, more than a fifth of QEMU's.
	console["mem-vmm"] = []string{mem(6<<10-256, 8<<10, 60<<10)}
	console["mem-qemu"] = []string{mem(20<<10, 8<<10, 60<<10)}
	rep = summarizeMemory([]string{"vmm", "qemu"}, console)
	require.Equal(t, map[string]bool{"per_guest_fifth_of_qemu": false, "per_guest_under_5MiB": false}, rep.Targets)

	empty := summarizeMemory([]string{"vmm", "qemu"}, nil)
	require.Zero(t, empty.Ratio)
	b.Reset()
	empty.write(&b)
	require.Contains(t, b.String(), "n/a (a runner has no sampled run)")
	require.Contains(t, b.String(), "without balloon  n/a (no report)")
}
