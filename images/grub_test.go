package images_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/internal/testenv"
)

// TestGrubDiskStructure builds a GRUB disk from Debian's grub-pc-bin and
// grub-common (downloaded once into build/images/grub) around stand-in
// kernel and initrd files, and checks it the way a BIOS and GRUB read it:
// the MBR's signature, partition and core.img pointer, core.img's blocklist
// in the gap, and the ext2 filesystem's files (listed and read back with
// debugfs, an independent reader). Booting it is the e2e scenario's job.
func TestGrubDiskStructure(t *testing.T) {
	ctx, in := grubInputs(t)
	tools, dir, kernel, initrd, kernelData, initrdData := in.tools, in.dir, in.kernel, in.initrd, in.kernelData, in.initrdData
	debugfs, err := exec.LookPath("debugfs")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/debugfs"); serr != nil {
			testenv.Skip(t, "debugfs (e2fsprogs) not installed")
		}
		debugfs = "/usr/sbin/debugfs"
	}

	const cmdline = "console=ttyS0 panic=-1 vmm.checks=boot"
	disk := filepath.Join(dir, "disk.img")
	start := time.Now()
	require.NoError(t, grubdisk.Build(ctx, tools, grubdisk.Spec{Kernel: kernel, Initrd: initrd, Cmdline: cmdline}, disk))
	t.Logf("built in %v", time.Since(start))

	img, err := os.ReadFile(disk)
	require.NoError(t, err)
	t.Logf("disk: %d bytes", len(img))
	mbr := img[:grubdisk.SectorSize]
	require.Equal(t, []byte{0x55, 0xAA}, mbr[510:], "boot signature")
	require.Equal(t, uint64(1), binary.LittleEndian.Uint64(mbr[0x5C:]), "boot.img points at core.img")
	require.Equal(t, []byte{0x90, 0x90}, mbr[0x66:0x68], "drive check disabled for a hard disk")
	p := grubdisk.DecodePartition(mbr, 0)
	require.True(t, p.Bootable)
	require.Equal(t, byte(0x83), p.Type)
	require.Equal(t, uint32(grubdisk.PartitionStart), p.StartLBA)
	require.Equal(t, len(img), int(p.StartLBA+p.Sectors)*grubdisk.SectorSize, "partition ends at the end of the disk")

	// core.img: diskboot's blocklist names the sectors after it, all in the gap.
	core := img[grubdisk.SectorSize : 2*grubdisk.SectorSize]
	bl := core[grubdisk.SectorSize-12:]
	require.Equal(t, uint64(2), binary.LittleEndian.Uint64(bl))
	n := binary.LittleEndian.Uint16(bl[8:])
	require.Equal(t, uint16(0x820), binary.LittleEndian.Uint16(bl[10:]))
	require.NotZero(t, n)
	require.Less(t, 2+uint64(n), uint64(grubdisk.PartitionStart))

	fs := filepath.Join(dir, "fs.img")
	require.NoError(t, os.WriteFile(fs, img[p.StartLBA*grubdisk.SectorSize:], 0o644))
	out, err := exec.Command(debugfs, "-R", "ls -l /boot", fs).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for name, size := range map[string]int{"vmlinuz": len(kernelData), "initrd.img": len(initrdData)} {
		require.Regexp(t, regexp.MustCompile(fmt.Sprintf(`\s%d\s.*\s%s\s*\n`, size, regexp.QuoteMeta(name))), string(out))
	}
	for path, want := range map[string][]byte{"/boot/vmlinuz": kernelData, "/boot/initrd.img": initrdData} {
		got, err := exec.Command(debugfs, "-R", "cat "+path, fs).Output()
		require.NoError(t, err)
		require.Equal(t, want, got, "%s read back", path)
	}
	wantCfg, err := grubdisk.GrubConfig(cmdline)
	require.NoError(t, err)
	got, err := exec.Command(debugfs, "-R", "cat /boot/grub/grub.cfg", fs).Output()
	require.NoError(t, err)
	require.Equal(t, string(wantCfg), string(got))
}

// grubTestInputs are GrubTools and stand-in kernel and initrd files in dir.
type grubTestInputs struct {
	tools                  grubdisk.Tools
	dir, kernel, initrd    string
	kernelData, initrdData []byte
}

// grubInputs gets GRUB's packages (downloaded once into build/images/grub)
// and writes stand-in kernel and initrd files whose blocks all differ.
func grubInputs(t *testing.T) (context.Context, grubTestInputs) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	tools, err := images.GrubTools(ctx, images.Config{})
	if errors.Is(err, images.ErrNoMke2fs) || errors.Is(err, images.ErrNoGrubPackage) {
		testenv.Skip(t, "grub disk: %v", err)
	}
	require.NoError(t, err)
	dir := t.TempDir()
	in := grubTestInputs{tools: tools, dir: dir, kernel: filepath.Join(dir, "vmlinuz"), initrd: filepath.Join(dir, "initrd"),
		kernelData: pattern(3<<20 + 17), initrdData: pattern(1<<20 + 5)}
	require.NoError(t, os.WriteFile(in.kernel, in.kernelData, 0o644))
	require.NoError(t, os.WriteFile(in.initrd, in.initrdData, 0o644))
	return ctx, in
}

// grubBootInputs gets what a GRUB image booted under QEMU needs: QEMU,
// Debian's kernel, the guest initramfs and GrubTools. It runs only with
// VMM_E2E=1 or under CI=true, since the kernel is downloaded once.
func grubBootInputs(t *testing.T, what string) (context.Context, string, *images.KernelArtifacts, string, grubdisk.Tools) {
	if os.Getenv("VMM_E2E") != "1" && os.Getenv("CI") != "true" {
		testenv.Skip(t, "set VMM_E2E=1 to boot %s under QEMU (downloads Debian's kernel once)", what)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	cfg := images.Config{}
	qemu, err := images.EnsureQEMU(ctx, cfg)
	if errors.Is(err, images.ErrNoQEMU) {
		testenv.Skip(t, "%s boot test: %v", what, err)
	}
	require.NoError(t, err)
	k, err := images.Kernel(ctx, cfg)
	require.NoError(t, err)
	initrd, err := images.GuestInitramfs(ctx, cfg, k)
	require.NoError(t, err)
	tools, err := images.GrubTools(ctx, cfg)
	require.NoError(t, err)
	return ctx, qemu, k, initrd, tools
}

// pattern is n bytes that differ from block to block, so a misplaced block
// shows up in the read-back comparison.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>12)
	}
	return b
}

// TestGrubDiskBootTCG boots a GRUB disk like the one `make images` builds under
// QEMU -M pc with Debian's SeaBIOS and software emulation: SeaBIOS boots
// the virtio-blk disk, GRUB prints its menu marker on COM1 and starts the
// kernel, and the agent runs its checks and powers off. Like
// TestGuestBootTCG it needs Debian's kernel (downloaded once), so it runs
// with VMM_E2E=1 or under CI=true.
func TestGrubDiskBootTCG(t *testing.T) {
	ctx, qemu, k, initrd, tools := grubBootInputs(t, "the GRUB disk")
	// Built beside the test, not as build/images/grub-disk.img: that one
	// carries mkimages' command line.
	disk := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, grubdisk.Build(ctx, tools, grubdisk.Spec{Kernel: k.Vmlinuz, Initrd: initrd,
		Cmdline: "console=ttyS0 quiet panic=-1 vmm.checks=boot,acpi vmm.action=poweroff"}, disk))

	bootCtx, bootCancel := context.WithTimeout(ctx, 5*time.Minute)
	defer bootCancel()
	cmd := exec.CommandContext(bootCtx, qemu,
		"-accel", "tcg", "-M", "pc", "-m", "512", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-drive", "file="+disk+",format=raw,if=virtio")
	out, err := cmd.CombinedOutput()
	console := string(out)
	require.NoError(t, bootCtx.Err(), "guest did not end in time; console:\n%s", console)
	require.NoError(t, err, "console:\n%s", console)
	last := -1
	for _, want := range []string{"SeaBIOS (version", grubdisk.MenuMarker, grubdisk.LinuxMarker,
		"VMM-AGENT: check=boot result=pass", "VMM-AGENT: check=acpi result=pass", "VMM-AGENT: summary pass=2 fail=0"} {
		i := strings.Index(console, want)
		require.Greater(t, i, last, "%q missing or out of order; console:\n%s", want, console)
		last = i
	}
}
