package kvmtest

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vmmdev/vmm/vmm/kvm"
)

func TestRequire(t *testing.T) {
	sys := Require(t) // skips (or fails under CI=true) without KVM
	v, err := sys.APIVersion()
	if err != nil || v != kvm.APIVersion {
		t.Fatalf("APIVersion = %d, %v; want %d", v, err, kvm.APIVersion)
	}
}

// TestHelperMissingKVM is run as a subprocess by TestRequireMissing.
func TestHelperMissingKVM(t *testing.T) {
	if os.Getenv("KVMTEST_HELPER") != "1" {
		return // only an entry point for TestRequireMissing's child process
	}
	requireAt(t, "/nonexistent/kvm")
	t.Log("REACHED: Require returned without KVM")
}

// TestRequireMissing runs the helper against a missing device: it must skip
// loudly normally and fail when CI=true.
func TestRequireMissing(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMissingKVM$", "-test.v")
		cmd.Env = append(os.Environ(), "KVMTEST_HELPER=1", "CI="+ci)
		out, err := cmd.CombinedOutput()
		s := string(out)
		if !strings.Contains(s, "no /dev/kvm:") || strings.Contains(s, "REACHED") {
			t.Errorf("CI=%q: output lacks the loud message or Require returned:\n%s", ci, s)
		}
		var exit *exec.ExitError
		failed := errors.As(err, &exit)
		switch {
		case ci == "true" && !failed:
			t.Errorf("CI=true: helper passed, want failure:\n%s", s)
		case ci == "" && (err != nil || !strings.Contains(s, "--- SKIP")):
			t.Errorf("CI unset: want a skip, got err %v:\n%s", err, s)
		}
	}
}
