package e2e

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/vmm"
)

func TestCheckResetReport(t *testing.T) {
	console := func(r vmm.StopReason) []string {
		rep := vmm.Result{Reason: r}.Report("", "")
		b, err := json.Marshal(rep)
		require.NoError(t, err)
		return []string{"E2E-CON noise", scenario.ReportPrefix + string(b)}
	}
	require.NoError(t, checkResetReport(console(vmm.StopReason{Kind: vmm.StopReset, Source: "acpi", Detail: "reset register"})))
	require.ErrorContains(t, checkResetReport(console(vmm.StopReason{Kind: vmm.StopReset, Source: "i8042", Detail: "keyboard controller reset"})),
		`from "i8042"`)
	require.ErrorContains(t, checkResetReport(nil), "want one report, have 0")
}
