package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/testhost"
	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/internal/testenv"
	"github.com/vmmdev/vmm/vmm"
)

// debianGuest finds Debian's kernel and the agent's initramfs that
// `make images` leaves under build/images.
func debianGuest(t *testing.T) (kernel, initrd string) {
	t.Helper()
	root, err := images.ModuleRoot()
	require.NoError(t, err)
	kernels, _ := filepath.Glob(filepath.Join(root, "build/images/kernel/vmlinuz-*"))
	initrd = filepath.Join(root, "build/images/guest.cpio.gz")
	if _, err := os.Stat(initrd); err != nil || len(kernels) == 0 {
		testenv.Skip(t, "no Debian kernel and agent initramfs under build/images: run make images")
	}
	return kernels[0], initrd
}

// footprintLimitKiB is vmm's own memory allowed for a Linux guest with one
// vCPU, a virtio disk and a virtio NIC, and footprintSMPLimitKiB with four
// vCPUs, every Hyper-V enlightenment, AHCI and NVMe (issue 20's goals are 5
// and 8 MiB). The report's figure is exact at its samples (anonymous memory
// beyond guest RAM plus page tables, docs/report.md). In the nested test
// host (Linux 6.1, 2026-12-07, three runs of each) it gave 3.32 to 3.40 MiB
// with one vCPU and 4.34 to 4.48 MiB with four; VmHWM minus guest RAM, the
// figure before, gave 3.35 to 4.92 and 2.98 to 3.41 MiB, moved by the
// binary's page-cache pages and the kernel's per-thread counter lag.
// Before vmm run kept transparent huge pages off its Go heap
// (heapWithoutTHP: the nested host's THP is "always") the figure moved by
// whole 2 MiB huge pages (4.7 to 6.6 and 8.8 MiB).
const (
	footprintLimitKiB    = 5 << 10
	footprintSMPLimitKiB = 8 << 10
)

// TestKVMFootprint boots Debian's kernel with the agent and asserts vmm's
// own memory, the report's overhead (peak RSS minus resident guest RAM),
// for one vCPU with a virtio disk and NIC and for four vCPUs with every
// Hyper-V enlightenment and AHCI and NVMe disks.
func TestKVMFootprint(t *testing.T) {
	kvmtest.Require(t)
	if !vmm.Probe(kvmtest.Path).CanBootLinux {
		testenv.Skip(t, "this host's KVM cannot boot Linux: go test -exec <module root>/bin/kvmexec runs this test in the nested test host")
	}
	kernel, initrd := debianGuest(t)
	cases := []struct {
		name     string
		args     []string
		limitKiB uint64
	}{
		{"1cpu-virtio", []string{"--cpus", "1", "--disk", "%s", "--net", "tap=vmmfp%d"}, footprintLimitKiB},
		{"4cpu-hyperv-ahci-nvme", []string{"--cpus", "4", "--hyperv", "all",
			"--disk", "%s,if=ahci", "--disk", "%s,if=nvme"}, footprintSMPLimitKiB},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := bootAgent(t, kernel, initrd, "256M", c.args)
			t.Logf("memory %+v: own %.2f MiB (VmHWM minus guest peak %.2f MiB)", mem, float64(mem.OverheadKiB)/1024,
				(float64(mem.PeakRSSKiB)-float64(mem.GuestResidentPeakKiB))/1024)
			require.Positive(t, mem.OwnAnonKiB, "%+v", mem)
			require.Positive(t, mem.PageTablesKiB, "%+v", mem)
			require.Less(t, mem.OverheadKiB, c.limitKiB, "%+v", mem)
		})
	}
}

// vmmBinary is bin/vmm, which make build leaves with bin/kvmexec: vmm's own
// memory is the real binary's (the test binary, which other tests run as
// vmm, carries the test framework's code and data too).
func vmmBinary(t *testing.T) string {
	t.Helper()
	root, err := images.ModuleRoot()
	require.NoError(t, err)
	bin := filepath.Join(root, "bin", "vmm")
	if _, err := os.Stat(bin); err != nil {
		testenv.Skip(t, "no %s: run make build", bin)
	}
	return bin
}

// bootAgent runs vmm with Debian's kernel and the agent (the boot check,
// then power off, on testhost.Guest's command line: without Linux's early
// PCI scans, seconds in the nested test host) with memory of RAM and the extra arguments (a "%s" disk
// argument gets a fresh 1 MiB image, "tap=vmmfp%d" a tap named for this
// process, which vmm creates) and returns the report's memory figures.
func bootAgent(t *testing.T, kernel, initrd, memory string, extra []string) vmm.ReportMemory {
	t.Helper()
	dir := t.TempDir()
	report := filepath.Join(dir, "report.json")
	args := []string{"run", "--kernel", kernel, "--initrd", initrd, "--memory", memory,
		"--cmdline", testhost.Guest{Quiet: true, Checks: []string{"boot"}}.Cmdline(),
		"--console", "stdio", "--timeout", "600s", "--report", report}
	for i, a := range extra {
		switch a {
		case "%s", "%s,if=ahci", "%s,if=nvme":
			disk := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
			require.NoError(t, os.WriteFile(disk, make([]byte, 1<<20), 0o644))
			a = fmt.Sprintf(a, disk)
		case "tap=vmmfp%d":
			a = fmt.Sprintf("tap=vmmfp%d", os.Getpid())
		}
		args = append(args, a)
	}
	cmd := exec.Command(vmmBinary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	require.NoError(t, err, "console:\n%s", out.String())
	require.Contains(t, out.String(), "VMM-AGENT: summary pass=1 fail=0", "the agent ran its check")
	data, err := os.ReadFile(report)
	require.NoError(t, err)
	var r vmm.Report
	require.NoError(t, json.Unmarshal(data, &r))
	require.Positive(t, r.Memory.GuestResidentKiB)
	return r.Memory
}
