package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/testhost"
)

func TestHyperVBench(t *testing.T) {
	o := options{runners: []string{"vmm", "qemu"}, n: 5, cpus: 1, memory: 256, timeout: 100e9, hyperv: true}
	list, err := o.scenarios()
	require.NoError(t, err)
	names := map[string][]string{}
	for _, s := range list {
		names[s.Name] = s.Args
		if s.Name == "hvclock-vmm" {
			require.Equal(t, hvRepeat, s.Repeat)
			require.Contains(t, s.WantChecks, msrCheck)
		}
		if s.Name == "hvclock-vmm-msrclock" {
			require.Equal(t, "vmm", s.Runner)
			require.NotContains(t, s.WantChecks, msrCheck, "only the clock read differs")
		}
	}
	require.Contains(t, names["hvclock-vmm"], "all")
	require.Contains(t, names["hvclock-qemu"], testhost.QEMUHyperVCPU)
	require.Contains(t, names["hvclock-vmm-nostimer"], noSTimerFeatures)
	require.NotContains(t, names["hvclock-vmm-nostimer"], "all")
	require.Contains(t, names["hvclock-vmm-msrclock"], msrClockFeatures)

	clock := func(cs, ns string) string {
		return `VMM-AGENT: check=clock-cost result=pass detail="clocksource=` + cs + ` read_ns=` + ns +
			` min_ns=40.0 max_ns=90.0 reads=100 backwards=0"`
	}
	msr := func(hv string) string {
		return `VMM-AGENT: check=msr-cost result=pass detail="noexit_ns=100.0 noexit_min_ns=90.0 noexit_max_ns=110.0 ` +
			`kvmexit_ns=2000.0 kvmexit_min_ns=1900.0 kvmexit_max_ns=2100.0 hvmsr_ns=` + hv + ` hvmsr_min_ns=1.0 hvmsr_max_ns=99999.0 (pread)"`
	}
	rep := summarizeHyperV(o.runners, map[string][]string{
		"hvclock-vmm": {clock("hyperv_clocksource_tsc_page", "60.0"), msr("9100.0"), "noise",
			clock("hyperv_clocksource_tsc_page", "80.0"), msr("10100.0")},
		"hvclock-qemu":         {clock("hyperv_clocksource_tsc_page", "50.0"), msr("3100.0")},
		"hvclock-vmm-nostimer": {clock("hyperv_clocksource_tsc_page", "45.0"), msr("6100.0")},
		"hvclock-vmm-msrclock": {clock("hyperv_clocksource_msr", "700.0")},
	})
	require.Equal(t, 700.0, rep.Medians["msrclock"][msrClock])
	require.NotContains(t, rep.Medians["tscpage"], msrClock, "the MSR column's clock read is not a TSC page read")
	require.NotContains(t, rep.Medians["msrclock"], "vmm")
	require.InDelta(t, 0.9, rep.RatiosNoSTimer["tscpage"], 1e-9)
	require.InDelta(t, 6000.0, rep.ExitRoundTrip[noSTimer], 1e-9)
	require.Equal(t, 70.0, rep.Medians["tscpage"]["vmm"])
	require.InDelta(t, 1.4, rep.Ratios["tscpage"], 1e-9)
	require.Equal(t, 9600.0, rep.Medians["msr-hv"]["vmm"])
	require.InDelta(t, 9500.0, rep.ExitRoundTrip["vmm"], 1e-9)
	require.InDelta(t, 3000.0, rep.ExitRoundTrip["qemu"], 1e-9)
	require.InDelta(t, 1.0, rep.Ratios["msr-kvm"], 1e-9)
	require.Equal(t, "hyperv_clocksource_tsc_page", rep.Runs["vmm"][0].Clocksource)
	require.Equal(t, 40.0, rep.Runs["vmm"][1].MinNS["tscpage"])
	require.Equal(t, 1.0, rep.Runs["vmm"][1].MinNS["msr-hv"])
	var b bytes.Buffer
	rep.write(&b)
	require.Contains(t, b.String(), "70.0 [40-90]")
	require.Contains(t, b.String(), "1.40")
	require.Contains(t, b.String(), "stands in for its cost")
	require.Contains(t, b.String(), "45.0 [40-90]     0.90")
	require.Contains(t, b.String(), "700.0 [40-90]   10.0x vmm's TSC page read")
	require.NotContains(t, b.String(), "warning")

	rep = summarizeHyperV(o.runners, map[string][]string{"hvclock-vmm": {clock("hyperv_clocksource_msr", "900.0")}})
	b.Reset()
	rep.write(&b)
	require.Contains(t, b.String(), "warning: vmm run 1 used clocksource hyperv_clocksource_msr, not hyperv_clocksource_tsc_page")
	require.Empty(t, rep.Ratios)
}
