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
	require.Len(t, list, 2, "only the exit scenarios")
	for _, s := range list {
		require.Equal(t, exitScenarioName(s.RunnerName()), s.Name)
		require.Equal(t, exitRepeat, s.Repeat)
		require.Equal(t, 2*exitbench.ExitValue+1, s.WantExit)
		require.True(t, s.Stream && s.Bench)
		require.Equal(t, exitbench.ELF(), s.Blobs[exitGuest])
		require.True(t, slices.Contains(s.Args, exitGuest), s.Args)
	}
	require.Contains(t, list[0].Args, "--testdev")
	require.Contains(t, strings.Join(list[1].Args, " "), "hv-stimer-direct")

	o, err = parseFlags([]string{"-exits", "-runners", "vmm,bochs"}, io.Discard)
	require.NoError(t, err)
	_, err = o.scenarios()
	require.ErrorIs(t, err, scenario.ErrInvalid)
}

func TestSummarizeExits(t *testing.T) {
	results := []scenario.Result{{Name: "exits-vmm", Run: 1}, {Name: "exits-qemu", Run: 1}, {Name: "exits-qemu", Run: 2}}
	console := map[string][]string{
		"exits-vmm": {"EXITBENCH cpuid 1000", "EXITBENCH cpuid 1400", "EXITBENCH cpuid 1200", "EXITBENCH pio 9000", "EXITBENCH done"},
		"exits-qemu": {"EXITBENCH cpuid 1000", "EXITBENCH pio 3000", "EXITBENCH done",
			"EXITBENCH cpuid 1000", "EXITBENCH pio 3000"},
	}
	rep := summarizeExits([]string{"vmm", "qemu"}, results, console)
	require.Equal(t, 1200.0, rep.Medians["cpuid"]["vmm"])
	require.InDelta(t, 1.2, rep.Ratios["cpuid"], 1e-9)
	require.InDelta(t, 3.0, rep.Ratios["pio"], 1e-9)
	require.Equal(t, []string{"qemu"}, rep.Incomplete, "qemu's second run never got to its end")
	var b strings.Builder
	rep.write(&b)
	out := b.String()
	require.Contains(t, out, "1200 [1000-1400]")
	require.Contains(t, out, "3.00")
	require.Contains(t, out, "warning: a qemu run did not reach")
	require.Contains(t, out, "stimer-msg")
}
