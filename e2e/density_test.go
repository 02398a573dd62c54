package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
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
	summary, err := checkDensityReport(reports(densityGuests, func(i int) int { return 3072 + 1024*(i%2) }))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(summary, "12 guests of 128 MiB: vmm's own memory 42.0 MiB in all (each 3.00 to 4.00 MiB), guest RAM resident 703.1 MiB"), summary)

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
	require.Contains(t, s.Args, images.OuterGuestVmlinux, "density boots the unpacked kernel by PVH")
}

// Only density boots the vmlinux by PVH: every other direct boot of the
// agent's guest (boot-1cpu and the rest) keeps the bzImage path.
func TestPVHOnlyForDensity(t *testing.T) {
	list, err := Scenarios()
	require.NoError(t, err)
	bz := 0
	for _, s := range list {
		if s.Name == densityScenario {
			continue
		}
		require.NotContains(t, s.Args, images.OuterGuestVmlinux, s.Name)
		if slices.Contains(s.Args, images.OuterGuestKernel) {
			bz++
		}
	}
	require.Greater(t, bz, 20, "the agent scenarios boot the bzImage")
}
