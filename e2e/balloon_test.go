package e2e

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestCheckBalloonReport(t *testing.T) {
	line := func(s string) []string { return []string{"boot...", scenario.ReportPrefix + s} }
	good := `{"memory":{"guest_resident_kib":60000,"guest_resident_peak_kib":190000,"overhead_kib":4000},` +
		`"devices":{"balloon":{"free_page_reports":40,"reported_kib":131072}}}`
	summary, err := checkBalloonReport(line(good))
	require.NoError(t, err)
	require.Contains(t, summary, "gave back 131072 KiB")

	for name, bad := range map[string]string{
		"no balloon":     `{"memory":{"guest_resident_kib":60000,"guest_resident_peak_kib":190000}}`,
		"nothing back":   `{"memory":{"guest_resident_kib":190000,"guest_resident_peak_kib":190000},"devices":{"balloon":{"reported_kib":0}}}`,
		"resident stays": `{"memory":{"guest_resident_kib":180000,"guest_resident_peak_kib":190000},"devices":{"balloon":{"reported_kib":131072}}}`,
	} {
		_, err := checkBalloonReport(line(bad))
		require.Error(t, err, name)
	}
	_, err = checkBalloonReport([]string{"no report"})
	require.Error(t, err)
}
