package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestCheckDensityReport(t *testing.T) {
	reports := func(n int, own func(i int) int) []string {
		var console []string
		for i := range n {
			console = append(console, "VMM-AGENT: start", scenario.ReportPrefix+fmt.Sprintf(
				`{"memory":{"peak_rss_kib":%d,"guest_resident_peak_kib":60000,"overhead_kib":%d}}`, 60000+own(i), own(i)))
		}
		return console
	}
	summary, err := checkDensityReport(reports(densityGuests, func(i int) int { return 4096 + 1024*(i%2) }))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(summary, "12 guests of 128 MiB: vmm's own memory 54.0 MiB in all (each 4.00 to 5.00 MiB), guest RAM resident 703.1 MiB"), summary)

	_, err = checkDensityReport(reports(densityGuests-1, func(int) int { return 4096 }))
	require.ErrorContains(t, err, "want 12 reports, have 11")
	_, err = checkDensityReport(reports(densityGuests, func(i int) int { return 4096 + (6<<10)*(i/11) }))
	require.ErrorContains(t, err, "over the limit")
	_, err = checkDensityReport(append(reports(densityGuests-1, func(int) int { return 4096 }), scenario.ReportPrefix+`{"memory":{}}`))
	require.ErrorContains(t, err, "no memory figures")
}

func TestDensityScenarioRunsTogether(t *testing.T) {
	s, err := newDensityScenario()
	require.NoError(t, err)
	require.NoError(t, s.Validate())
	require.True(t, s.Parallel)
	require.Equal(t, densityGuests, s.Runs())
	require.Len(t, scenario.Batches(scenario.Schedule([]scenario.Scenario{s})), 1, "all guests in one batch")
	require.Contains(t, strings.Join(s.Args, " "), "--memory 128M")
}
