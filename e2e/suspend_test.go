package e2e

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestCheckSleepReport(t *testing.T) {
	line := func(js string) []string { return []string{"boot...", scenario.ReportPrefix + js} }
	summary, err := checkSleepReport(line(`{"sleep":{"suspends":1,"resumes":1,"asleep_ms":2950,"last_wake":"rtc alarm"}}`))
	require.NoError(t, err)
	assert.Contains(t, summary, "2950 ms asleep")
	for _, bad := range []string{
		`{}`,
		`{"sleep":{"suspends":1,"resumes":0,"asleep_ms":2950,"last_wake":""}}`,
		`{"sleep":{"suspends":1,"resumes":1,"asleep_ms":20,"last_wake":"rtc alarm"}}`,
		`{"sleep":{"suspends":1,"resumes":1,"asleep_ms":2950,"last_wake":"host"}}`,
	} {
		_, err := checkSleepReport(line(bad))
		assert.Error(t, err, bad)
	}
	_, err = checkSleepReport([]string{"no report"})
	assert.Error(t, err)
}
