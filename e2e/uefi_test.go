package e2e

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckEFIVarsRuns(t *testing.T) {
	line := func(detail string) string {
		return "E2E-CON uefi-vars VMM-AGENT: check=efi-vars result=pass detail=\"" + detail + "\"\r"
	}
	require.NoError(t, checkEFIVarsRuns([]string{"noise", line("written"), "more", line("found")}))
	require.ErrorContains(t, checkEFIVarsRuns([]string{line("written"), line("written")}), "want [written found]")
	require.ErrorContains(t, checkEFIVarsRuns([]string{line("written")}), "want [written found]")
	require.ErrorContains(t, checkEFIVarsRuns(nil), "want [written found]")
}
