// Package kvmtest gives host KVM tests one way to get /dev/kvm: skip loudly
// where it is missing, fail where CI=true says it must be there.
package kvmtest

import (
	"errors"
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
	sys, err := kvm.Open(path)
	if err != nil {
		unavailable := errors.Is(err, kvm.ErrNoKVM) || errors.Is(err, kvm.ErrPermission)
		if !unavailable {
			t.Fatalf("open %s: %v", path, err)
		}
		testenv.Skip(t, "no /dev/kvm: %v (host KVM test)", err)
	}
	t.Cleanup(func() {
		if err := sys.Close(); err != nil {
			t.Errorf("close %s: %v", path, err)
		}
	})
	return sys
}
