// Package testhost drives the nested test host from the host side: it builds
// the artifacts a suite needs, boots the outer machine under QEMU/TCG and
// collects the outer init's E2E lines (package scenario) into an Outcome.
// The e2e tests, the benchmark and images/cmd/nested are its users.
package testhost

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
)

// Guest describes one inner guest boot: Debian's kernel with the guest
// agent's initramfs, as the outer initramfs carries them.
type Guest struct {
	// PVH boots the kernel unpacked (images.OuterGuestVmlinux) by its PVH
	// entry instead of the bzImage: the guest skips the XZ decompression,
	// seconds per boot under the outer machine's TCG.
	PVH       bool
	CPUs      int // default 1
	MemoryMiB int // default 256
	// Checks are the agent checks to run (vmm.checks); default boot,cpus,clocksource.
	Checks []string
	// Action is vmm.action: poweroff (default), reboot, panic or hang.
	Action string
	// ExpectCPUs, if > 0, becomes vmm.expect_cpus.
	ExpectCPUs int
	// Quiet boots the kernel with "quiet": console output is expensive two
	// levels down, and the benchmark must not measure it.
	Quiet bool
	// ExtraCmdline is appended to the kernel command line.
	ExtraCmdline string
	// Timeout, if > 0, is vmm's own --timeout (QEMU has none: the scenario
	// timeout stops it).
	Timeout time.Duration
	// RNG adds vmm's virtio-rng (--rng).
	RNG bool
	// VirtioConsole makes hvc0 (vmm's virtio-console) the guest console
	// instead of the UART: console=hvc0, and the agent moves its output there.
	VirtioConsole bool
}

// DefaultChecks are the agent checks every boot scenario runs.
func DefaultChecks() []string { return []string{"boot", "cpus", "clocksource"} }

func (g Guest) withDefaults() Guest {
	if g.CPUs <= 0 {
		g.CPUs = 1
	}
	if g.MemoryMiB <= 0 {
		g.MemoryMiB = 256
	}
	if len(g.Checks) == 0 {
		g.Checks = DefaultChecks()
	}
	if g.Action == "" {
		g.Action = "poweroff"
	}
	return g
}

// NoEarlyPCI skips Linux's early PCI scans. The outer machine's TCG CPU is
// an AMD family 0Fh (K8), which KVM passes on, so every inner Linux looks
// for a K8 GART/AGP bridge twice (aperture_64.c), reading all 256 buses'
// configuration space: ~34,000 port exits and ~3 s per boot in the nested
// host. On hardware KVM and PVM hosts (newer CPU families) Linux never runs
// those scans, and vmm's platform has no chipset that needs an early quirk.
const NoEarlyPCI = "pci=noearly"

// Cmdline is the inner kernel's command line, agent parameters included.
func (g Guest) Cmdline() string {
	g = g.withDefaults()
	parts := []string{"console=ttyS0"}
	if g.VirtioConsole {
		parts = []string{"console=hvc0", "vmm.console=hvc0"}
	}
	if g.Quiet {
		parts = append(parts, "quiet")
	}
	parts = append(parts, NoEarlyPCI, "panic=-1", "vmm.checks="+strings.Join(g.Checks, ","), "vmm.action="+g.Action)
	if g.ExpectCPUs > 0 {
		parts = append(parts, "vmm.expect_cpus="+strconv.Itoa(g.ExpectCPUs))
	}
	if g.ExtraCmdline != "" {
		parts = append(parts, g.ExtraCmdline)
	}
	return strings.Join(parts, " ")
}

// Args returns the runner's arguments for booting g: a `vmm run` command
// line, or QEMU -M microvm with the same kernel, initramfs and command line
// (and isa-debug-exit on port 0xf4, so a failing agent gives 2k+1 there too).
func (g Guest) Args(runner string) ([]string, error) {
	g = g.withDefaults()
	kernel := images.OuterGuestKernel
	if g.PVH {
		kernel = images.OuterGuestVmlinux
	}
	switch runner {
	case scenario.RunnerVMM, "":
		args := []string{"run",
			"--kernel", kernel,
			"--initrd", images.OuterGuestInitramfs,
			"--cmdline", g.Cmdline(),
			"--cpus", strconv.Itoa(g.CPUs),
			"--memory", fmt.Sprintf("%dM", g.MemoryMiB),
			"--console", "stdio",
		}
		if g.VirtioConsole {
			args[len(args)-1] = "virtio"
		}
		if g.RNG {
			args = append(args, "--rng")
		}
		if g.Timeout > 0 {
			args = append(args, "--timeout", g.Timeout.String())
		}
		return args, nil
	case scenario.RunnerQEMU:
		return []string{
			"-M", "microvm", "-enable-kvm", "-cpu", "host",
			"-m", strconv.Itoa(g.MemoryMiB), "-smp", strconv.Itoa(g.CPUs),
			"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
			"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
			"-kernel", kernel, "-initrd", images.OuterGuestInitramfs,
			"-append", g.Cmdline(), "-no-reboot",
		}, nil
	}
	return nil, fmt.Errorf("%w: unknown runner %q", scenario.ErrInvalid, runner)
}
