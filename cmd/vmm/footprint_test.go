package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
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

// TestKVMFootprint boots Debian's kernel with the agent and asserts vmm's
// own memory, the report's overhead (peak RSS minus resident guest RAM):
// 5 MiB for one vCPU with a virtio disk and NIC, 8 MiB for four vCPUs with
// every Hyper-V enlightenment and AHCI and NVMe disks.
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
		{"1cpu-virtio", []string{"--cpus", "1", "--disk", "%s", "--net", "tap=vmmfp%d"}, 5 << 10},
		{"4cpu-hyperv-ahci-nvme", []string{"--cpus", "4", "--hyperv", "all",
			"--disk", "%s,if=ahci", "--disk", "%s,if=nvme"}, 8 << 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			report := filepath.Join(dir, "report.json")
			args := []string{"run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M",
				"--cmdline", "console=ttyS0 quiet panic=-1 vmm.checks=boot vmm.action=poweroff",
				"--console", "stdio", "--timeout", "240s", "--report", report}
			for i, a := range c.args {
				switch a {
				case "%s", "%s,if=ahci", "%s,if=nvme":
					disk := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
					require.NoError(t, os.WriteFile(disk, make([]byte, 1<<20), 0o644))
					a = fmt.Sprintf(a, disk)
				case "tap=vmmfp%d":
					a = fmt.Sprintf(a, os.Getpid())
				}
				args = append(args, a)
			}
			cmd := vmmCommand(args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			require.NoError(t, err, "console:\n%s", out.String())
			data, err := os.ReadFile(report)
			require.NoError(t, err)
			var r vmm.Report
			require.NoError(t, json.Unmarshal(data, &r))
			mem := r.Memory
			t.Logf("memory %+v: own %.2f MiB", mem, float64(mem.OverheadKiB)/1024)
			require.Contains(t, out.String(), "VMM-AGENT: summary pass=1 fail=0", "the agent ran its check")
			require.Positive(t, mem.GuestResidentKiB)
			require.Less(t, mem.OverheadKiB, c.limitKiB, "%+v", mem)
		})
	}
}
