package vmm

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// KVMStatus says whether the KVM device can be used and, if not, why; it is
// the probe's "device_status", for scripts to branch on.
type KVMStatus string

const (
	// KVMOK: the device opened and speaks KVM API version 12.
	KVMOK KVMStatus = "ok"
	// KVMMissing: there is no device node at the path (ENOENT).
	KVMMissing KVMStatus = "missing"
	// KVMNoDriver: the node exists but no driver answers for it (ENODEV,
	// ENXIO), as a hand-made node on a host without a KVM module.
	KVMNoDriver KVMStatus = "no_driver"
	// KVMPermission: the node exists but this user may not open it (EACCES, EPERM).
	KVMPermission KVMStatus = "permission_denied"
	// KVMUnusable: the path opened but is not KVM (no KVM ioctls, another
	// API version), or opening it failed some other way.
	KVMUnusable KVMStatus = "unusable"
)

// loadKVM is the advice for a host without a KVM device; without one, the
// nested test host is where guests boot.
const loadKVM = "load kvm-intel or kvm-amd, or boot guests in the nested test host (make run, make e2e)"

// KVMError says why the KVM device cannot be used and what to do about it,
// in one line. It unwraps to kvm.Open's error, so errors.Is still finds
// kvm.ErrNoKVM, kvm.ErrPermission and the errno.
type KVMError struct {
	Path   string
	Status KVMStatus
	Err    error
}

func (e *KVMError) Error() string {
	// kvm.Open's own message repeats the path and its sentinel's text; the
	// errno alone is what the user needs beside the path.
	var errno syscall.Errno
	if !errors.As(e.Err, &errno) {
		return e.Err.Error()
	}
	switch e.Status {
	case KVMMissing:
		return fmt.Sprintf("%s: missing (%v): %s", e.Path, errno, loadKVM)
	case KVMNoDriver:
		return fmt.Sprintf("%s: no KVM driver behind the device node (%v): %s", e.Path, errno, loadKVM)
	case KVMPermission:
		return fmt.Sprintf("%s: %v: check its permissions, or add the user to the kvm group", e.Path, errno)
	}
	return e.Err.Error()
}

func (e *KVMError) Unwrap() error { return e.Err }

// kvmStatus classifies an error of kvm.Open.
func kvmStatus(err error) KVMStatus {
	switch {
	case err == nil:
		return KVMOK
	case errors.Is(err, kvm.ErrPermission):
		return KVMPermission
	case errors.Is(err, kvm.ErrNoKVM) && errors.Is(err, fs.ErrNotExist):
		return KVMMissing
	case errors.Is(err, kvm.ErrNoKVM):
		return KVMNoDriver
	}
	return KVMUnusable
}

// openKVM is kvm.Open with its failure turned into a *KVMError.
func openKVM(path string) (*kvm.System, error) {
	sys, err := kvm.Open(path)
	if err != nil {
		return nil, &KVMError{Path: path, Status: kvmStatus(err), Err: err}
	}
	return sys, nil
}
