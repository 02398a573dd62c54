// Package kvmtest gives host KVM tests one way to get /dev/kvm: skip loudly
// where it is missing, fail where CI=true says it must be there. Host KVM
// tests are named TestPrefix...; `go test -exec bin/kvmexec` (make test)
// runs them in the nested test host where this host's KVM cannot boot a
// real kernel (see EnvWhere).
package kvmtest

import (
	"errors"
	"strings"
	"testing"

	"github.com/vmmdev/vmm/internal/testenv"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// Path is the KVM device the tests open.
const Path = "/dev/kvm"

// Require opens /dev/kvm for t and closes it when t ends. Without a usable
// /dev/kvm it skips the test with a "no /dev/kvm: ..." message, or fails it
// when the environment variable CI is "true".
func Require(t testing.TB) *kvm.System {
	t.Helper()
	return requireAt(t, Path)
}

func requireAt(t testing.TB, path string) *kvm.System {
	t.Helper()
	if top, _, _ := strings.Cut(t.Name(), "/"); !strings.HasPrefix(top, TestPrefix) {
		t.Fatalf("%s uses /dev/kvm but is not named %s...: kvmexec finds host KVM tests by that name to run them where KVM is", top, TestPrefix)
	}
	if w, _ := WhereFromEnv(); w == Nested {
		testenv.Skip(t, "%s=%s, and this is not the nested test host: run host KVM tests with go test -exec <module root>/bin/kvmexec (make test does)", EnvWhere, w)
	}
	sys, err := kvm.Open(path)
	if err != nil {
		unavailable := errors.Is(err, kvm.ErrNoKVM) || errors.Is(err, kvm.ErrPermission)
		if !unavailable {
			t.Fatalf("open %s: %v", path, err)
		}
		testenv.Skip(t, "no /dev/kvm: %v (host KVM test; go test -exec <module root>/bin/kvmexec runs it in the nested test host, as make test does)", err)
	}
	t.Cleanup(func() {
		if err := sys.Close(); err != nil {
			t.Errorf("close %s: %v", path, err)
		}
	})
	return sys
}
