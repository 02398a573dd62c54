package vmm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/internal/testenv"
)

// These tests run Debian's OVMF (package ovmf) to its end with no disk:
// OVMF's PEI and DXE need real KVM (the nested test host).

func requireOVMF(t *testing.T) {
	t.Helper()
	kvmtest.Require(t)
	if Probe(kvmtest.Path).Virtualization == VirtPVM {
		testenv.Skip(t, "OVMF needs hardware virtualization, and this /dev/kvm is PVM: go test -exec <module root>/bin/kvmexec runs it in the nested test host")
	}
	for _, p := range []string{OVMFCodePath, OVMFVarsPath} {
		if _, err := os.Stat(p); err != nil {
			testenv.Skip(t, "Debian's ovmf package is not installed ("+p+"): scripts/setup.sh installs it")
		}
	}
}

// TestKVMOVMFNoBootableDevice boots OVMF with no disk and a persistent
// variable store: OVMF finds the flash (it writes its boot options there),
// has nothing to boot, and vmm ends with the no-boot code. The store was
// made from the template, which stays as shipped; a second boot with the
// same store finds what the first one wrote and again ends with no boot.
func TestKVMOVMFNoBootableDevice(t *testing.T) {
	requireOVMF(t)
	tmpl, err := os.ReadFile(OVMFVarsPath)
	require.NoError(t, err)
	vars := filepath.Join(t.TempDir(), "vars.fd")
	for run := 1; run <= 2; run++ {
		start := time.Now()
		g := runGuest(t, Config{Firmware: "ovmf,vars=" + vars, Memory: 256 << 20, Timeout: 8 * time.Minute})
		t.Logf("run %d: %v after %v\nconsole: %q", run, g.res.Reason, time.Since(start), g.console)
		require.Equal(t, StopNoBoot, g.res.Reason.Kind, "run %d: %v\nconsole: %q", run, g.res.Reason, g.console)
		require.Equal(t, ExitNoBoot, g.res.Reason.ExitCode())
		require.Equal(t, "ovmf console", g.res.Reason.Source)
		got, err := os.ReadFile(vars)
		require.NoError(t, err)
		require.Len(t, got, len(tmpl), "the store keeps its size")
		require.NotEqual(t, tmpl, got, "OVMF wrote variables to flash (run %d)", run)
		// Its boot options are in the store, as UTF-16.
		require.True(t, bytes.Contains(got, utf16("EFI Internal Shell")), "the shell's boot option is stored")
	}
	after, err := os.ReadFile(OVMFVarsPath)
	require.NoError(t, err)
	require.Equal(t, tmpl, after, "the template is unchanged")
}

// utf16 is s in UTF-16LE (ASCII only).
func utf16(s string) []byte {
	var b []byte
	for _, c := range []byte(s) {
		b = append(b, c, 0)
	}
	return b
}
