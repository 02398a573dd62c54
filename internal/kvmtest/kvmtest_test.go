package kvmtest

import (
	"errors"
	"os"
	"testing"

	"github.com/vmmdev/vmm/vmm/kvm"
)

func TestRequire(t *testing.T) {
	_, statErr := os.Stat(Path)
	if errors.Is(statErr, os.ErrNotExist) {
		if _, err := kvm.Open(Path); !errors.Is(err, kvm.ErrNoKVM) {
			t.Fatalf("Open of missing %s = %v, want ErrNoKVM", Path, err)
		}
	}
	sys := Require(t) // skips (or fails under CI=true) without KVM
	v, err := sys.APIVersion()
	if err != nil || v != kvm.APIVersion {
		t.Fatalf("APIVersion = %d, %v; want %d", v, err, kvm.APIVersion)
	}
}
