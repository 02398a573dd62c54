package e2e

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestStorvscScenario(t *testing.T) {
	s, err := storvscScenario()
	require.NoError(t, err)
	args := strings.Join(s.Args, " ")
	require.Contains(t, args, "--vmbus")
	require.Contains(t, args, "--hyperv all")
	require.Contains(t, args, storvscImage+",if=vmbus,serial="+storvscSerial)
	require.Contains(t, args, storvscROImage+",if=vmbus,readonly")
	require.True(t, s.Report)
	require.Len(t, s.Disks, 2)
}

func TestCheckStorvscReport(t *testing.T) {
	good := `{"exit_code": 0, "hyperv": {"vmbus": {"bus": {"channels": [
		{"class": "57164f39-9115-4e78-ab55-382f3bd5422d", "open": true, "stats": {"packets_in": 3}},
		{"class": "` + scsiClass + `", "open": true, "stats": {"packets_in": 40}},
		{"class": "` + scsiClass + `", "open": true, "sub_channel": 1, "stats": {"packets_in": 12}}]},
		"storvsc": {"version": "6.2", "channels": 2, "sub_channels": 1,
			"luns": [{"writes": 8, "reads": 20, "flushes": 2}, {"writes": 0, "reads": 5, "flushes": 0}]}}}}`
	report := func(s string) []string {
		return []string{"other line", scenario.ReportPrefix + strings.ReplaceAll(s, "\n", " ")}
	}
	summary, err := checkStorvscReport(report(good))
	require.NoError(t, err)
	require.Contains(t, summary, "sub 1 open=true packets_in=12")
	for _, bad := range []string{
		strings.Replace(good, `"6.2"`, `"5.1"`, 1),
		strings.Replace(good, `"sub_channels": 1`, `"sub_channels": 0`, 1),
		strings.Replace(good, `"packets_in": 12`, `"packets_in": 0`, 1),
		strings.Replace(good, `{"writes": 0, "reads": 5`, `{"writes": 1, "reads": 5`, 1),
		strings.Replace(good, `"flushes": 2`, `"flushes": 0`, 1),
		strings.Replace(good, `"storvsc"`, `"other"`, 1),
	} {
		_, err := checkStorvscReport(report(bad))
		require.Error(t, err, bad)
	}
}
