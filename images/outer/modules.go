package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// kvmAPIVersion is what KVM_GET_API_VERSION has returned since Linux 2.6.22.
const kvmAPIVersion = 12

// kvmGetAPIVersion is _IO(KVMIO=0xAE, 0x00).
const kvmGetAPIVersion = 0xAE00

// readModuleList parses the module list the initramfs builder wrote: one path
// per line, in load order; blank lines and #-comments are skipped.
func readModuleList(r io.Reader) ([]string, error) {
	var paths []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		paths = append(paths, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading module list: %w", err)
	}
	return paths, nil
}

// moduleFlags picks finit_module's flags from the file name: compressed
// modules are handed to the kernel to decompress.
func moduleFlags(path string) int {
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(path, ext) {
			return unix.MODULE_INIT_COMPRESSED_FILE
		}
	}
	return 0
}

// loadModule loads one module file. A module that is already present
// (built in, or loaded as someone's dependency) is not an error.
func loadModule(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening module: %w", err)
	}
	defer f.Close()
	// finit_module cannot be interrupted; run it aside so a stuck module
	// init still lets the suite report and power off.
	done := make(chan error, 1)
	go func() { done <- unix.FinitModule(int(f.Fd()), "", moduleFlags(path)) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("finit_module %s: %w", path, ctx.Err())
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
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
