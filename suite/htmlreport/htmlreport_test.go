package htmlreport

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/suite"
	"github.com/vmmdev/vmm/suite/result"
)

func ablationRun() result.Run {
	f := func(v float64) *float64 { return &v }
	use := func(msrs ...string) *result.HyperVUse {
		return &result.HyperVUse{Features: "x", MSRs: msrs, Hypercalls: []string{"HvFlushVirtualAddressSpace"}}
	}
	return result.Run{Version: result.Version, Suite: "ablate", SuiteCases: 4, Shards: []string{"1/1"}, WallMS: 9000,
		Cases: []result.Case{
			{Name: "a/hyperv=all", Guest: "a", Axes: []suite.AxisValue{{Axis: "hyperv", Label: "all"}}, Ablation: &suite.Ablation{Base: "all"},
				Verdict: result.Pass, MatchMS: f(2000), GuestMS: 2100, Clocksource: "hyperv_clocksource_tsc_page",
				Clockevent: "Hyper-V clockevent", HyperV: use("HV_X64_MSR_REFERENCE_TSC", "HV_X64_MSR_STIMER0_CONFIG")},
			{Name: "a/hyperv=all,time=off", Guest: "a", Axes: []suite.AxisValue{{Axis: "hyperv", Label: "all,time=off"}},
				Ablation: &suite.Ablation{Base: "all", Off: "time", AlsoOff: []string{"stimer", "stimer-direct"}},
				Verdict:  result.Pass, MatchMS: f(2500), Clocksource: "tsc", Clockevent: "lapic", HyperV: use()},
			{Name: "a/hyperv=all,relaxed=off", Guest: "a", Axes: []suite.AxisValue{{Axis: "hyperv", Label: "all,relaxed=off"}},
				Ablation: &suite.Ablation{Base: "all", Off: "relaxed"}, Verdict: result.Fail, Detail: "exit 4, expected 0 (timeout)",
				ConsoleTail: "<script>alert(1)</script>", GuestMS: 60000, Clocksource: "hyperv_clocksource_tsc_page",
				Clockevent: "Hyper-V clockevent", HyperV: use("HV_X64_MSR_REFERENCE_TSC", "HV_X64_MSR_STIMER0_CONFIG")},
			{Name: "plain", Guest: "plain", Verdict: result.Pass, GuestMS: 10},
		}}
}

func TestPage(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, ablationRun()))
	page := buf.String()
	// Self-contained: nothing is loaded from anywhere.
	for _, ref := range []string{"<link", "<script", "src=", "@import", "url("} {
		require.NotContains(t, page, ref)
	}
	require.Contains(t, page, "&lt;script&gt;alert(1)&lt;/script&gt;", "console text is escaped")
	require.Contains(t, page, `<svg id="chart"`)
	require.Equal(t, 4, strings.Count(page, `<g class="bar">`))
	// The longest time to the expected line (the failed case's whole run)
	// is the full bar width.
	require.Regexp(t, `<rect class="fail" x="420" y="[0-9]+" width="480"`, page)

	rows := regexp.MustCompile(`(?s)<table id="cases">.*?</table>`).FindString(page)
	require.Equal(t, 4, strings.Count(rows, "data-case="))
	abl := regexp.MustCompile(`(?s)<table class="ablation" id="ablation-0">.*?</table>`).FindString(page)
	require.NotEmpty(t, abl)
	require.Equal(t, 3, strings.Count(abl, "data-case="), "the baseline and one row per switch")
	require.Less(t, strings.Index(abl, "(none: baseline)"), strings.Index(abl, ">time<"), "baseline first")
	require.Contains(t, abl, "stimer, stimer-direct")
	require.Contains(t, abl, "clocksource hyperv_clocksource_tsc_page → tsc")
	require.Contains(t, abl, "no MSR HV_X64_MSR_REFERENCE_TSC")
	require.Contains(t, abl, "verdict pass → fail")
	require.Equal(t, 1, strings.Count(page, `class="ablation"`), "the non-ablation case has no table")
}

func TestChanges(t *testing.T) {
	b := result.Case{Clocksource: "x", Verdict: result.Pass}
	require.Equal(t, []string{"nothing seen"}, changes(b, b))
}
