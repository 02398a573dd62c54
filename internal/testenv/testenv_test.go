package testenv

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSkipFailsUnderCI re-runs itself as a child so the skip and the
// failure can both be observed.
func TestSkipFailsUnderCI(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		Skip(t, "tool %s missing", "x")
		return
	}
	for ci, wantFail := range map[string]bool{"true": true, "": false} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkipFailsUnderCI$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "CI="+ci)
		out, err := cmd.CombinedOutput()
		if wantFail {
			require.Error(t, err, "%s", out)
			require.Contains(t, string(out), "may not skip: tool x missing")
		} else {
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), "!!! SKIPPED: tool x missing !!!")
		}
	}
}
