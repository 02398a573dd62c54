package kvmtest

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vmmdev/vmm/vmm/kvm"
)

func TestKVMRequire(t *testing.T) {
	sys := Require(t) // skips (or fails under CI=true) without KVM
	v, err := sys.APIVersion()
	if err != nil || v != kvm.APIVersion {
		t.Fatalf("APIVersion = %d, %v; want %d", v, err, kvm.APIVersion)
	}
}

// child runs one test of this binary as a subprocess with env added and
// returns its output and whether it failed.
func child(t *testing.T, name string, env ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), append([]string{"KVMTEST_HELPER=1"}, env...)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running %s: %v", name, err)
	}
	return string(out), err != nil
}

// TestKVMHelperMissing is run as a subprocess by TestRequireMissing.
func TestKVMHelperMissing(t *testing.T) {
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
		s, failed := child(t, "TestKVMHelperMissing", "CI="+ci, EnvWhere+"=")
		if !strings.Contains(s, "no /dev/kvm:") || strings.Contains(s, "REACHED") {
			t.Errorf("CI=%q: output lacks the loud message or Require returned:\n%s", ci, s)
		}
		switch {
		case ci == "true" && !failed:
			t.Errorf("CI=true: helper passed, want failure:\n%s", s)
		case ci == "" && (failed || !strings.Contains(s, "--- SKIP")):
			t.Errorf("CI unset: want a skip, got failed=%v:\n%s", failed, s)
		}
	}
}

// TestHelperMisnamed is run as a subprocess by TestRequireNeedsPrefix.
func TestHelperMisnamed(t *testing.T) {
	if os.Getenv("KVMTEST_HELPER") != "1" {
		return
	}
	requireAt(t, "/nonexistent/kvm")
}

// TestRequireNeedsPrefix: a test that asks for KVM under another name fails
// at once, whatever the machine has: kvmexec would not have sent it to KVM.
func TestRequireNeedsPrefix(t *testing.T) {
	s, failed := child(t, "TestHelperMisnamed")
	if !failed || !strings.Contains(s, "TestHelperMisnamed uses /dev/kvm but is not named "+TestPrefix) {
		t.Errorf("want a failure naming the prefix, got failed=%v:\n%s", failed, s)
	}
}

// TestRequireForcedNested: with EnvWhere=nested, a host KVM test that runs
// outside the nested host (no kvmexec) says how to run it, and fails under
// CI=true rather than use this host's KVM.
func TestRequireForcedNested(t *testing.T) {
	s, failed := child(t, "TestKVMHelperMissing", "CI=true", EnvWhere+"="+string(Nested))
	if !failed || !strings.Contains(s, "bin/kvmexec") {
		t.Errorf("want a failure naming kvmexec, got failed=%v:\n%s", failed, s)
	}
}

func TestWhereFromEnv(t *testing.T) {
	for v, want := range map[string]Where{"": Auto, "auto": Auto, "local": Local, "nested": Nested} {
		t.Setenv(EnvWhere, v)
		if got, err := WhereFromEnv(); err != nil || got != want {
			t.Errorf("%s=%q: got %q, %v; want %q", EnvWhere, v, got, err, want)
		}
	}
	t.Setenv(EnvWhere, "cloud")
	if _, err := WhereFromEnv(); err == nil || !strings.Contains(err.Error(), `"cloud"`) {
		t.Errorf("bad value: err %v", err)
	}
}
