package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/internal/testenv"
	"github.com/vmmdev/vmm/vmm"
)

// TestKVMFirmwareNoBootExitCode runs Debian's SeaBIOS with no disk in a child
// vmm under the default seccomp filter (the PAM registers remap memory
// slots while the guest runs): exit code 8, the report says no-boot with
// SeaBIOS's line, and the banner reached the console.
func TestKVMFirmwareNoBootExitCode(t *testing.T) {
	kvmtest.Require(t)
	if _, err := os.Stat(vmm.SeaBIOSPath); err != nil {
		testenv.Skip(t, "Debian's seabios package is not installed: scripts/setup.sh installs it")
	}
	report := filepath.Join(t.TempDir(), "report.json")
	cmd := vmmCommand("run", "--firmware", "seabios", "--memory", testMemory, "--console", "stdio",
		"--timeout", "60s", "--report", report)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	require.Equal(t, vmm.ExitNoBoot, cmd.ProcessState.ExitCode(), "stderr: %s", stderr.String())
	data, err := os.ReadFile(report)
	require.NoError(t, err)
	var r vmm.Report
	require.NoError(t, json.Unmarshal(data, &r))
	require.Equal(t, "no-boot", r.Stop.Reason)
	require.Equal(t, "firmware debug port", r.ExitSource)
	require.Contains(t, r.Stop.Detail, "No bootable device")
	require.Contains(t, stdout.String(), "SeaBIOS (version")
}

// TestKVMFirmwareOVMFNoBootExitCode runs Debian's OVMF with no disk in a
// child vmm under the default seccomp filter (flash commands remap slots and
// each variable write is pwritten and fdatasynced while the guest runs)
// with a persistent store: exit code 8 with OVMF's line in the report, and
// the store, created from the template, holds what OVMF wrote and keeps
// its size.
func TestKVMFirmwareOVMFNoBootExitCode(t *testing.T) {
	kvmtest.Require(t)
	if vmm.Probe(kvmtest.Path).Virtualization == vmm.VirtPVM {
		testenv.Skip(t, "OVMF needs hardware virtualization, and this /dev/kvm is PVM: go test -exec <module root>/bin/kvmexec runs it in the nested test host")
	}
	tmpl, err := os.ReadFile(vmm.OVMFVarsPath)
	if err != nil {
		testenv.Skip(t, "Debian's ovmf package is not installed: scripts/setup.sh installs it")
	}
	dir := t.TempDir()
	report, vars := filepath.Join(dir, "report.json"), filepath.Join(dir, "vars.fd")
	cmd := vmmCommand("run", "--firmware", "ovmf,vars="+vars, "--memory", "256M", "--console", "stdio",
		"--timeout", "6m", "--report", report)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	require.Equal(t, vmm.ExitNoBoot, cmd.ProcessState.ExitCode(), "stderr: %s\nconsole: %q", stderr.String(), stdout.String())
	data, err := os.ReadFile(report)
	require.NoError(t, err)
	var r vmm.Report
	require.NoError(t, json.Unmarshal(data, &r))
	require.Equal(t, "no-boot", r.Stop.Reason)
	require.Equal(t, "ovmf console", r.ExitSource)
	require.Contains(t, r.Stop.Detail, `"EFI Internal Shell"`)
	got, err := os.ReadFile(vars)
	require.NoError(t, err)
	require.Len(t, got, len(tmpl))
	require.NotEqual(t, tmpl, got, "OVMF's variable writes reached the store")
	after, err := os.ReadFile(vmm.OVMFVarsPath)
	require.NoError(t, err)
	require.Equal(t, tmpl, after, "the template is unchanged")
}

// TestKVMFirmwareGrubDisk runs `vmm run --firmware seabios` with a GRUB disk
// built from Debian's grub-pc-bin: SeaBIOS boots it from virtio-blk and
// GRUB reaches its menu and starts loading Linux (vmm stops there through
// --expect; booting the kernel itself is the e2e suite's firmware-grub).
// It runs with VMM_E2E=1 or under CI=true, where `make unit` has fetched
// GRUB's packages (images.GrubTools) beforehand.
func TestKVMFirmwareGrubDisk(t *testing.T) {
	if os.Getenv("VMM_E2E") != "1" && os.Getenv("CI") != "true" {
		testenv.Skip(t, "set VMM_E2E=1 to boot a GRUB disk under vmm --firmware seabios")
	}
	kvmtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tools, err := images.GrubTools(ctx, images.Config{})
	require.NoError(t, err)
	dir := t.TempDir()
	// GRUB never gets to read the kernel and initrd: stand-ins do.
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	require.NoError(t, os.WriteFile(kernel, bytes.Repeat([]byte{0x5a}, 64<<10), 0o644))
	require.NoError(t, os.WriteFile(initrd, bytes.Repeat([]byte{0xa5}, 4<<10), 0o644))
	disk := filepath.Join(dir, "disk.img")
	require.NoError(t, grubdisk.Build(ctx, tools, grubdisk.Spec{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0"}, disk))

	cmd := vmmCommand("run", "--firmware", "seabios", "--disk", disk, "--memory", "256M",
		"--timeout", "240s", "--console", "stdio", "--expect", regexp.QuoteMeta(grubdisk.LinuxMarker))
	out, err := cmd.CombinedOutput()
	console := string(out)
	require.NoError(t, err, "vmm must stop at GRUB's loading line with exit 0; console:\n%s", console)
	last := -1
	for _, want := range []string{"SeaBIOS (version", "GRUB loading", grubdisk.MenuMarker, grubdisk.LinuxMarker} {
		i := strings.Index(console, want)
		require.Greater(t, i, last, "%q missing or out of order; console:\n%s", want, console)
		last = i
	}
}
