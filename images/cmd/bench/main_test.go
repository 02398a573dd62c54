package main

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestMedian(t *testing.T) {
	require.Equal(t, 3.0, median([]float64{5, 1, 3}))
	require.Equal(t, 2.5, median([]float64{4, 1, 2, 3}))
	require.Equal(t, 0.0, median(nil))
}

func TestScenariosAlternate(t *testing.T) {
	o, err := parseFlags([]string{"-n", "3"}, io.Discard)
	require.NoError(t, err)
	list, err := o.scenarios()
	require.NoError(t, err)
	var order []string
	for _, r := range scenario.Schedule(list) {
		order = append(order, r.Scenario.Name)
	}
	require.Equal(t, []string{"bench-vmm", "bench-qemu", "bench-vmm", "bench-qemu", "bench-vmm", "bench-qemu"}, order)
	require.Contains(t, strings.Join(list[0].Args, " "), "quiet")
	require.Equal(t, scenario.RunnerQEMU, list[1].RunnerName())

	_, err = parseFlags([]string{"-n", "0"}, io.Discard)
	require.Error(t, err)
	o, err = parseFlags([]string{"-runners", "vmm,bochs"}, io.Discard)
	require.NoError(t, err)
	_, err = o.scenarios()
	require.ErrorIs(t, err, scenario.ErrInvalid)
}

func TestSummarize(t *testing.T) {
	res := func(name string, run int, pass bool, first float64) scenario.Result {
		return scenario.Result{Name: name, Run: run, Pass: pass, FirstLineS: first, TotalS: first + 1}
	}
	rep := summarize([]string{"vmm", "qemu"}, []scenario.Result{
		res("boot-1cpu", 1, true, 99),
		res("bench-vmm", 1, true, 10), res("bench-qemu", 1, true, 20),
		res("bench-vmm", 2, true, 14), res("bench-qemu", 2, true, 22),
		res("bench-vmm", 3, false, 1), res("bench-qemu", 3, true, 24),
	})
	require.Len(t, rep.Runs, 6)
	require.Equal(t, stat{N: 2, FirstLineS: 12, TotalS: 13}, rep.Medians["vmm"])
	require.Equal(t, stat{N: 3, FirstLineS: 22, TotalS: 23}, rep.Medians["qemu"])
	require.InDelta(t, 12.0/22.0, rep.Ratio, 1e-9)
	var b strings.Builder
	rep.write(&b)
	require.Contains(t, b.String(), "ratio vmm/qemu (time to agent first line): 0.55")

	none := summarize([]string{"vmm", "qemu"}, []scenario.Result{res("bench-qemu", 1, true, 20)})
	require.Zero(t, none.Ratio)
	b.Reset()
	none.write(&b)
	require.Contains(t, b.String(), "n/a")
}
