package images_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/firmware/smbios"
	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/internal/testenv"
)

// TestSMBIOSUnderSeaBIOSTCG hands firmware/smbios's tables to Debian's
// SeaBIOS through QEMU's fw_cfg, under the same file names vmm uses, and
// boots Debian's kernel: SeaBIOS must take the 3.0 entry point (adding its
// own type 0) and Linux must read our system strings. The machine type is
// pc-i440fx-1.7 because QEMU's legacy-SMBIOS machine types do not publish
// their own etc/smbios files, so ours are the only ones. Needs Debian's
// kernel, so it runs with VMM_E2E=1 or under CI=true.
func TestSMBIOSUnderSeaBIOSTCG(t *testing.T) {
	if os.Getenv("VMM_E2E") != "1" && os.Getenv("CI") != "true" {
		testenv.Skip(t, "set VMM_E2E=1 to boot Debian's kernel under QEMU with vmm's SMBIOS tables")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cfg := images.Config{}
	qemu, err := images.EnsureQEMU(ctx, cfg)
	if errors.Is(err, images.ErrNoQEMU) {
		testenv.Skip(t, "smbios boot test: %v", err)
	}
	require.NoError(t, err)
	k, err := images.Kernel(ctx, cfg)
	require.NoError(t, err)
	initrd, err := images.GuestInitramfs(ctx, cfg, k)
	require.NoError(t, err)

	anchor, table, err := smbios.Build(smbios.Config{CPUs: 2, Memory: []smbios.Region{{Base: 0, Size: 512 << 20}},
		Product: "smbios test", UUID: [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8}})
	require.NoError(t, err)
	dir := t.TempDir()
	anchorFile, tableFile := filepath.Join(dir, "anchor"), filepath.Join(dir, "tables")
	require.NoError(t, os.WriteFile(anchorFile, anchor, 0o644))
	require.NoError(t, os.WriteFile(tableFile, table, 0o644))

	bootCtx, bootCancel := context.WithTimeout(ctx, 5*time.Minute)
	defer bootCancel()
	out, err := exec.CommandContext(bootCtx, qemu,
		"-accel", "tcg", "-M", "pc-i440fx-1.7", "-smp", "2", "-m", "512", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-fw_cfg", "name="+smbios.AnchorFile+",file="+anchorFile, "-fw_cfg", "name="+smbios.TablesFile+",file="+tableFile,
		"-kernel", k.Vmlinuz, "-initrd", initrd, "-append", "console=ttyS0 panic=-1 vmm.checks=boot vmm.action=poweroff").CombinedOutput()
	console := string(out)
	require.NoError(t, bootCtx.Err(), "guest did not end in time; console:\n%s", console)
	require.NoError(t, err, "console:\n%s", console)
	require.Contains(t, console, "SMBIOS 3.0.0 present.")
	require.Regexp(t, `DMI: vmm smbios test, BIOS \S*`, console, "Linux reads our type 1 and SeaBIOS's type 0")
	require.Contains(t, console, "VMM-AGENT: summary pass=1 fail=0")
}
