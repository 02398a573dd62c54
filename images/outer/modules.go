package main

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/images/modload"
)

// kvmAPIVersion is what KVM_GET_API_VERSION has returned since Linux 2.6.22.
const kvmAPIVersion = 12

// kvmGetAPIVersion is _IO(KVMIO=0xAE, 0x00).
const kvmGetAPIVersion = 0xAE00

// loadModules loads every module the initramfs carries (its modules.dep
// lists exactly the KVM closure) from the running kernel's module dir.
// finit_module cannot be interrupted, so the load runs aside: a stuck module
// init still lets the suite report and power off.
func loadModules(ctx context.Context, log *slog.Logger) error {
	dir, err := modload.Dir()
	if err != nil {
		return err
	}
	type outcome struct {
		loaded []string
		err    error
	}
	done := make(chan outcome, 1)
	go func() {
		loaded, err := modload.LoadAll(dir, nil)
		done <- outcome{loaded, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			return fmt.Errorf("loading modules from %s (loaded %v): %w", dir, o.loaded, o.err)
		}
		log.Debug("modules loaded", "dir", dir, "modules", o.loaded)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("loading modules from %s: %w", dir, ctx.Err())
	}
}

// checkKVM opens /dev/kvm and asks for its API version.
func checkKVM(path string) error {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer unix.Close(fd)
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmGetAPIVersion, 0)
	if errno != 0 {
		return fmt.Errorf("KVM_GET_API_VERSION: %w", errno)
	}
	if v != kvmAPIVersion {
		return fmt.Errorf("KVM API version %d, want %d", v, kvmAPIVersion)
	}
	return nil
}
