package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// ErrNoQEMU is returned when qemu-system-x86_64 is missing and cannot be
// installed (not root).
var ErrNoQEMU = errors.New("qemu-system-x86_64 not found")

// QEMUBinary is the emulator the tests boot the nested test host with.
const QEMUBinary = "qemu-system-x86_64"

// EnsureQEMU returns the path of qemu-system-x86_64, installing Debian's
// qemu-system-x86 with apt-get when it is missing and we are root (a fresh
// CI machine has nothing installed).
func EnsureQEMU(ctx context.Context, cfg Config) (string, error) {
	if p, err := exec.LookPath(QEMUBinary); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w and not root to install qemu-system-x86", ErrNoQEMU)
	}
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return "", err
	}
	cfg.Log.Info("installing qemu-system-x86")
	if _, err := (step{name: "apt-get update", timeout: cfg.StepTimeout}).run(ctx, "apt-get", "update"); err != nil {
		return "", err
	}
	s := step{name: "apt-get install qemu-system-x86", timeout: cfg.StepTimeout, env: []string{"DEBIAN_FRONTEND=noninteractive"}}
	if _, err := s.run(ctx, "apt-get", "install", "-y", "--no-install-recommends", "qemu-system-x86"); err != nil {
		return "", err
	}
	p, err := exec.LookPath(QEMUBinary)
	if err != nil {
		return "", fmt.Errorf("%w after installing qemu-system-x86: %w", ErrNoQEMU, err)
	}
	return p, nil
}
