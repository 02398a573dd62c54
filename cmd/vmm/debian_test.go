package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
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

// TestKVMDebianDiskSeaBIOS boots the full Debian image (images.DebianDisk:
// debootstrap's systemd, cloud-init, GRUB on a GPT disk) under
// `vmm run --firmware seabios` from a raw copy on virtio-blk: SeaBIOS
// starts GRUB's boot.img and core.img from the BIOS boot partition, GRUB
// reads grub.cfg from the ext4 root and boots Debian's kernel and initrd,
// and systemd's serial getty prints the login prompt, where --expect
// stops vmm with exit 0. It runs with VMM_E2E=1 or under CI=true, where the
// image has been built beforehand (images' TestDebianDisk).
func TestKVMDebianDiskSeaBIOS(t *testing.T) {
	if os.Getenv("VMM_E2E") != "1" && os.Getenv("CI") != "true" {
		testenv.Skip(t, "set VMM_E2E=1 to boot the Debian image under vmm --firmware seabios")
	}
	kvmtest.Require(t)
	if _, err := os.Stat(vmm.SeaBIOSPath); err != nil {
		testenv.Skip(t, "Debian's seabios package is not installed: scripts/setup.sh installs it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	img, err := images.DebianDisk(ctx, images.Config{})
	require.NoError(t, err)
	// A private raw copy: the guest writes to its root filesystem.
	disk := filepath.Join(t.TempDir(), "debian.raw")
	out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", img.QCOW2, disk).CombinedOutput()
	require.NoError(t, err, "qemu-img convert: %s", out)

	start := time.Now()
	cmd := vmmCommand("run", "--firmware", "seabios", "--disk", disk, "--memory", "1G",
		"--timeout", "900s", "--console", "stdio", "--expect", "login:")
	out, err = cmd.CombinedOutput()
	console := string(out)
	require.NoError(t, err, "vmm must stop at the login prompt with exit 0; console:\n%s", console)
	t.Logf("login prompt after %v", time.Since(start))
	last := -1
	for _, want := range []string{"SeaBIOS (version", grubdisk.MenuMarker, grubdisk.LinuxMarker,
		"Linux version " + img.Kernel, "Debian GNU/Linux 12", "login:"} {
		i := strings.Index(console, want)
		require.Greater(t, i, last, "%q missing or out of order; console:\n%s", want, console)
		last = i
	}
}
