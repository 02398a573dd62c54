package e2e

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckEFIVarsRuns(t *testing.T) {
	line := func(detail string) string {
		return "E2E-CON uefi-vars VMM-AGENT: check=efi-vars result=pass detail=\"" + detail + "\"\r"
	}
	require.NoError(t, checkEFIVarsRuns([]string{"noise", line("written"), "more", line("found")}, uefiVarsStore))
	require.ErrorContains(t, checkEFIVarsRuns([]string{line("written"), line("written")}, uefiVarsStore), "want [written found]")
	require.ErrorContains(t, checkEFIVarsRuns([]string{line("written")}, uefiVarsStore), "want [written found]")
	require.ErrorContains(t, checkEFIVarsRuns(nil, uefiVarsStore), "want [written found]")
}
