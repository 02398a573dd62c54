package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/testhost"
)

func TestHyperVBench(t *testing.T) {
	o := options{runners: []string{"vmm", "qemu"}, n: 2, cpus: 1, memory: 256, timeout: 100e9, hyperv: true}
	list, err := o.scenarios()
	require.NoError(t, err)
	names := map[string][]string{}
	for _, s := range list {
		names[s.Name] = s.Args
	}
	require.Contains(t, names["hvclock-vmm-tscpage"], "all")
	require.Contains(t, names["hvclock-qemu-tscpage"], testhost.QEMUHyperVCPU)

	line := func(cs string, ns string) string {
		return `VMM-AGENT: check=clock-cost result=pass detail="clocksource=` + cs + ` read_ns=` + ns + ` backwards=0"`
	}
	rep := summarizeHyperV(o.runners, map[string][]string{
		"hvclock-vmm-tscpage":  {line("hyperv_clocksource_tsc_page", "60.0"), line("hyperv_clocksource_tsc_page", "80.0")},
		"hvclock-qemu-tscpage": {line("hyperv_clocksource_tsc_page", "50.0")},
		"hvclock-vmm-msr":      {line("hyperv_clocksource_msr", "9000.0")},
	})
	require.Equal(t, 70.0, rep.Medians["tscpage"]["vmm"])
	require.InDelta(t, 1.4, rep.Ratios["tscpage"], 1e-9)
	require.NotContains(t, rep.Ratios, "msr", "no MSR clocksource scenarios")
	require.Equal(t, "hyperv_clocksource_tsc_page", rep.Runs["hvclock-vmm-tscpage"][0].Clocksource)
	var b bytes.Buffer
	rep.write(&b)
	require.Contains(t, b.String(), "tscpage")
	require.Contains(t, b.String(), "1.40")
}
