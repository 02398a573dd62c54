package main

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/exitbench"
	"github.com/vmmdev/vmm/images/scenario"
)

func TestExitScenarios(t *testing.T) {
	o, err := parseFlags([]string{"-exits", "-boot=false", "-n", "5"}, io.Discard)
	require.NoError(t, err)
	list, err := o.scenarios()
	require.NoError(t, err)
	require.Len(t, list, 3, "only the exit scenarios")
	for _, s := range list {
		require.Equal(t, exitRepeat, s.Repeat)
		require.Equal(t, 2*exitbench.ExitValue+1, s.WantExit)
		require.True(t, s.Stream && s.Bench)
		require.Equal(t, exitbench.ELF(), s.Blobs[exitGuest])
		require.True(t, slices.Contains(s.Args, exitGuest), s.Args)
	}
	require.Equal(t, []string{"exits-vmm", "exits-vmm-userspace", "exits-qemu"},
		[]string{list[0].Name, list[1].Name, list[2].Name})
	require.Contains(t, list[0].Args, "--testdev")
	require.Equal(t, "all,kernel-timers", list[0].Args[slices.Index(list[0].Args, "--hyperv")+1])
	require.Equal(t, "vmm", list[1].RunnerName())
	require.Equal(t, "all", list[1].Args[slices.Index(list[1].Args, "--hyperv")+1], "vmm's own timers")
	require.Contains(t, strings.Join(list[2].Args, " "), "hv-stimer-direct")

	o, err = parseFlags([]string{"-exits", "-runners", "vmm,bochs"}, io.Discard)
	require.NoError(t, err)
	_, err = o.scenarios()
	require.ErrorIs(t, err, scenario.ErrInvalid)
}

func TestSummarizeExits(t *testing.T) {
	results := []scenario.Result{{Name: "exits-vmm", Run: 1}, {Name: "exits-qemu", Run: 1}, {Name: "exits-qemu", Run: 2}}
	console := map[string][]string{
		// vmm's pio batch ran while the host was twice as slow (pace 2000).
		"exits-vmm": {"EXITBENCH cpuid 1000 1000", "EXITBENCH cpuid 1400 1000", "EXITBENCH cpuid 1200 1000",
			"EXITBENCH pio 9000 2000", "EXITBENCH done"},
		"exits-qemu": {"EXITBENCH cpuid 1000 1000", "EXITBENCH pio 3000 1000", "EXITBENCH done",
			"EXITBENCH cpuid 1000 1000", "EXITBENCH pio 3000 1000"},
		"exits-vmm-userspace": {"EXITBENCH cpuid 1500 1000", "EXITBENCH done"},
	}
	results = append(results, scenario.Result{Name: "exits-vmm-userspace", Run: 1})
	rep := summarizeExits([]string{"vmm", "qemu"}, results, console)
	require.Equal(t, []string{"vmm", "vmm-userspace", "qemu"}, rep.Columns)
	require.Equal(t, 1200.0, rep.Medians["cpuid"]["vmm"])
	require.InDelta(t, 1.2, rep.Ratios["cpuid"], 1e-9)
	require.InDelta(t, 3.0, rep.Ratios["pio"], 1e-9)
	require.InDelta(t, 1.5, rep.PacedRatios["pio"], 1e-9, "9000/2000 over 3000/1000")
	require.NotContains(t, rep.PacedRatios, "cpuid", "the pace itself")
	require.Equal(t, []float64{2000}, rep.Paces["pio"]["vmm"])
	require.InDelta(t, 1.5, rep.RatiosUserspace["cpuid"], 1e-9)
	require.NotContains(t, rep.RatiosUserspace, "pio")
	require.Equal(t, []string{"qemu"}, rep.Incomplete, "qemu's second run never got to its end")
	var b strings.Builder
	rep.write(&b)
	out := b.String()
	require.Contains(t, out, "1200 [1000-1400]")
	require.Contains(t, out, "3.00   1.50")
	require.Contains(t, out, "warning: a qemu run did not reach")
	require.Contains(t, out, "stimer-msg")
	require.Contains(t, out, "vmm-userspace/qemu")
	require.Contains(t, out, "1.50")
}
