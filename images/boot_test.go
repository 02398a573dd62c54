package images_test

import (
	"bytes"
	"context"
	"errors"
	"github.com/vmmdev/vmm/internal/testenv"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
)

// TestGuestBootTCG boots Debian's kernel with the guest initramfs under QEMU
// with software emulation (no KVM needed) and checks the agent end to end:
// its console protocol, module loading from the initramfs, and the
// debug-exit path that turns failed checks into an exit status. It needs
// the network for the kernel package the first time, so it runs only when
// asked (VMM_E2E=1, as `make e2e` sets) or under CI=true.
func TestGuestBootTCG(t *testing.T) {
	if os.Getenv("VMM_E2E") != "1" && os.Getenv("CI") != "true" {
		testenv.Skip(t, "set VMM_E2E=1 to boot the guest image under QEMU (downloads Debian's kernel once)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cfg := images.Config{}
	qemu, err := images.EnsureQEMU(ctx, cfg)
	if errors.Is(err, images.ErrNoQEMU) {
		testenv.Skip(t, "guest boot test: %v", err)
	}
	require.NoError(t, err)
	k, err := images.Kernel(ctx, cfg)
	require.NoError(t, err)
	initrd, err := images.GuestInitramfs(ctx, cfg, k)
	require.NoError(t, err)

	// One unknown check fails on purpose: k=1 failure -> port 0xf4 <- 1 ->
	// QEMU's isa-debug-exit exits (1<<1)|1 = 3.
	bootCtx, bootCancel := context.WithTimeout(ctx, 5*time.Minute)
	defer bootCancel()
	cmd := exec.CommandContext(bootCtx, qemu,
		"-accel", "tcg", "-M", "pc", "-m", "512", "-smp", "2",
		"-nographic", "-no-reboot", "-nic", "none", "-nodefaults", "-serial", "stdio",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-kernel", k.Vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1 vmm.checks=boot,cpus,modules,nope vmm.expect_cpus=2")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	console := out.String()
	require.NoError(t, bootCtx.Err(), "guest did not end in time; console:\n%s", console)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "console:\n%s", console)
	assert.Equal(t, 3, exit.ExitCode(), "one failed check must exit 2*1+1; console:\n%s", console)

	for _, want := range []string{
		`(?m)VMM-AGENT: start\r?$`,
		`(?m)^VMM-AGENT: check=boot result=pass detail="kernel=` + regexp.QuoteMeta(k.Version) + ` uptime=[0-9.]+s"\r?$`,
		`(?m)^VMM-AGENT: check=cpus result=pass detail="online=2 \(0-1\) expect_cpus=2"\r?$`,
		`(?m)^VMM-AGENT: check=modules result=pass detail="all modules loaded"\r?$`,
		`(?m)^VMM-AGENT: check=nope result=fail detail="unknown check; known: `,
		`(?m)^VMM-AGENT: summary pass=3 fail=1\r?$`,
	} {
		assert.Regexp(t, want, console)
	}
}
