package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/internal/testenv"
	"github.com/vmmdev/vmm/vmm"
)

// TestFirmwareNoBootExitCode runs Debian's SeaBIOS with no disk in a child
// vmm under the default seccomp filter (the PAM registers remap memory
// slots while the guest runs): exit code 8, the report says no-boot with
// SeaBIOS's line, and the banner reached the console.
func TestFirmwareNoBootExitCode(t *testing.T) {
	kvmtest.Require(t)
	if _, err := os.Stat(vmm.SeaBIOSPath); err != nil {
		testenv.Skip(t, "Debian's seabios package is not installed: scripts/setup.sh installs it")
	}
	report := filepath.Join(t.TempDir(), "report.json")
	cmd := vmmCommand("run", "--firmware", "seabios", "--memory", testMemory, "--console", "stdio",
		"--timeout", "60s", "--report", report)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	require.Equal(t, vmm.ExitNoBoot, cmd.ProcessState.ExitCode(), "stderr: %s", stderr.String())
	data, err := os.ReadFile(report)
	require.NoError(t, err)
	var r vmm.Report
	require.NoError(t, json.Unmarshal(data, &r))
	require.Equal(t, "no-boot", r.Stop.Reason)
	require.Equal(t, "firmware debug port", r.ExitSource)
	require.Contains(t, r.Stop.Detail, "No bootable device")
	require.Contains(t, stdout.String(), "SeaBIOS (version")
}
