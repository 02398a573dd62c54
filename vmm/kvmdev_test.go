package vmm

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// TestOpenKVMErrors: each way the device can fail gets its own status and one
// line naming the path, the errno and what to do. ENODEV, ENXIO, EACCES and
// EPERM need a device node or another user, so they are wrapped here as
// kvm.Open wraps them.
func TestOpenKVMErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "kvm")
	_, missingErr := kvm.Open(missing)
	_, nullErr := kvm.Open("/dev/null")
	opened := func(sentinel error, errno unix.Errno) error {
		return fmt.Errorf("open /dev/kvm: %w: %w", sentinel, errno)
	}
	for _, c := range []struct {
		name, path string
		err        error
		status     KVMStatus
		want       string
	}{
		{"missing", missing, missingErr, KVMMissing,
			missing + ": missing (no such file or directory): load kvm-intel or kvm-amd, or boot guests in the nested test host (make run, make e2e)"},
		{"no driver", "/dev/kvm", opened(kvm.ErrNoKVM, unix.ENODEV), KVMNoDriver,
			"/dev/kvm: no KVM driver behind the device node (no such device): load kvm-intel or kvm-amd, or boot guests in the nested test host (make run, make e2e)"},
		{"no driver for the major", "/dev/kvm", opened(kvm.ErrNoKVM, unix.ENXIO), KVMNoDriver,
			"/dev/kvm: no KVM driver behind the device node (no such device or address): load kvm-intel or kvm-amd, or boot guests in the nested test host (make run, make e2e)"},
		{"permission", "/dev/kvm", opened(kvm.ErrPermission, unix.EACCES), KVMPermission,
			"/dev/kvm: permission denied: check its permissions, or add the user to the kvm group"},
		{"not permitted", "/dev/kvm", opened(kvm.ErrPermission, unix.EPERM), KVMPermission,
			"/dev/kvm: operation not permitted: check its permissions, or add the user to the kvm group"},
		{"not KVM", "/dev/null", nullErr, KVMUnusable,
			"/dev/null: KVM_GET_API_VERSION: inappropriate ioctl for device"},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Error(t, c.err)
			require.Equal(t, c.status, kvmStatus(c.err))
			var err error = &KVMError{Path: c.path, Status: kvmStatus(c.err), Err: c.err}
			require.Equal(t, c.want, err.Error())
			require.Equal(t, 1, strings.Count(err.Error(), c.path), "the path once: %q", err)
			require.ErrorIs(t, err, c.err, "unwraps to kvm.Open's error")
		})
	}
	require.Equal(t, KVMOK, kvmStatus(nil))
}

// TestProbeMissingDevice: a missing device is reported as missing, never as
// the host's flavour of KVM (kvm_pvm loaded with no device is a host we have).
func TestProbeMissingDevice(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "kvm")
	r := Probe(dev)
	require.False(t, r.Available)
	require.False(t, r.CanBootLinux)
	require.Equal(t, KVMMissing, r.DeviceStatus)
	require.Equal(t, VirtMissing, r.Virtualization)
	require.Equal(t, dev+": missing (no such file or directory): "+loadKVM, r.Error)

	r = Probe("/dev/null")
	require.Equal(t, KVMUnusable, r.DeviceStatus)
	require.Equal(t, VirtUnavailable, r.Virtualization)
	require.False(t, r.CanBootLinux)
}
