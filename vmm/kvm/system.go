// Package kvm is a thin, typed layer over the Linux /dev/kvm ioctls for
// x86_64. It holds no policy: each method is one ioctl (or an mmap) with its
// arguments marshalled into the kernel's ABI structs and its errno wrapped.
package kvm

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// APIVersion is the only KVM API version this package speaks.
const APIVersion = 12

var (
	// ErrNoKVM means /dev/kvm is missing or the kernel has no KVM (ENOENT, ENODEV, ENXIO).
	ErrNoKVM = errors.New("kvm: not available")
	// ErrPermission means /dev/kvm exists but may not be opened (EACCES, EPERM).
	ErrPermission = errors.New("kvm: permission denied")
	// ErrAPIVersion means KVM_GET_API_VERSION returned something other than 12.
	ErrAPIVersion = errors.New("kvm: unsupported API version")
)

// System is an open /dev/kvm.
type System struct {
	fd int
}

// Open opens the KVM device (normally /dev/kvm) and checks its API version.
func Open(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
			return nil, fmt.Errorf("open %s: %w: %w", path, ErrNoKVM, err)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("open %s: %w: %w", path, ErrPermission, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &System{fd: fd}
	v, err := s.APIVersion()
	if err != nil {
		_ = s.Close()
		// ENOTTY here means the path is not a KVM device (/dev/null, a file).
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if v != APIVersion {
		_ = s.Close()
		return nil, fmt.Errorf("%s: %w: got %d, want %d", path, ErrAPIVersion, v, APIVersion)
	}
	return s, nil
}

// Close closes /dev/kvm. VMs created from it stay valid.
func (s *System) Close() error {
	return closeFD(&s.fd, "/dev/kvm")
}

// FD returns the /dev/kvm file descriptor (-1 after Close).
func (s *System) FD() int { return s.fd }

// APIVersion returns KVM_GET_API_VERSION (12 on every kernel since 2.6.22).
func (s *System) APIVersion() (int, error) {
	r, err := ioctl(s.fd, kvmGetAPIVersion, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	return int(r), nil
}

// CheckExtension returns KVM_CHECK_EXTENSION for c: 0 if unsupported,
// otherwise 1 or a capability-specific value (a count, a bit mask).
func (s *System) CheckExtension(c Cap) (int, error) {
	r, err := ioctl(s.fd, kvmCheckExtension, uintptr(c))
	if err != nil {
		return 0, fmt.Errorf("KVM_CHECK_EXTENSION(%s): %w", c, err)
	}
	return int(r), nil
}

// VCPUMmapSize returns KVM_GET_VCPU_MMAP_SIZE, the length to pass to CreateVCPU.
func (s *System) VCPUMmapSize() (int, error) {
	r, err := ioctl(s.fd, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	return int(r), nil
}

// maxGrowEntries bounds the E2BIG retry loops; the kernel's own limits are far
// lower (256 CPUID entries, a few hundred MSRs).
const maxGrowEntries = 1 << 16

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID, growing the buffer on E2BIG.
func (s *System) SupportedCPUID() (*CPUID, error) {
	for n := 64; n <= maxGrowEntries; n *= 2 {
		buf := newCPUID2Buf(n)
		_, err := ioctlPtr(s.fd, kvmGetSupportedCPUID, unsafe.Pointer(&buf[0]))
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
		}
		c, err := decodeCPUID2(buf)
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: more than %d entries: %w", maxGrowEntries, unix.E2BIG)
}

// MSRIndexList returns KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and
// restores. The kernel reports the needed count on E2BIG; the loop also
// doubles in case the list grows between calls.
func (s *System) MSRIndexList() ([]uint32, error) {
	n := 0
	for range 32 {
		buf := make([]uint32, 1+n)
		buf[0] = uint32(n)
		_, err := ioctlPtr(s.fd, kvmGetMSRIndexList, unsafe.Pointer(&buf[0]))
		if errors.Is(err, unix.E2BIG) {
			want := int(buf[0])
			if want <= n {
				want = 2*n + 1
			}
			if want > maxGrowEntries {
				return nil, fmt.Errorf("KVM_GET_MSR_INDEX_LIST: %d entries: %w", want, unix.E2BIG)
			}
			n = want
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_MSR_INDEX_LIST: %w", err)
		}
		got := int(buf[0])
		if got > n {
			return nil, fmt.Errorf("KVM_GET_MSR_INDEX_LIST: kernel reported %d entries in a buffer of %d", got, n)
		}
		out := make([]uint32, got)
		copy(out, buf[1:1+got])
		return out, nil
	}
	return nil, fmt.Errorf("KVM_GET_MSR_INDEX_LIST: list kept growing: %w", unix.E2BIG)
}

// CreateVM creates a VM (KVM_CREATE_VM with machine type 0).
func (s *System) CreateVM() (*VM, error) {
	r, err := ioctl(s.fd, kvmCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	// The kernel creates VM and vCPU fds with O_CLOEXEC already.
	return &VM{fd: int(r)}, nil
}

// closeFD closes *fd once; later calls return nil so deferred Closes are harmless.
func closeFD(fd *int, what string) error {
	if *fd < 0 {
		return nil
	}
	err := unix.Close(*fd)
	*fd = -1
	if err != nil {
		return fmt.Errorf("close %s: %w", what, err)
	}
	return nil
}
