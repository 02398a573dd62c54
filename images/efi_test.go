package images_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/internal/testenv"
)

// TestGrubEFIDiskStructure builds each EFI disk from Debian's GRUB, signed
// GRUB and shim packages (downloaded once into build/images/grub) around
// stand-in kernel and initrd files and reads it back as firmware does:
// the protective MBR, the GPT header and its EFI system partition entry,
// and the FAT32 files, listed and read with mtools (an independent FAT
// reader). Booting them is TestGrubEFIBootTCG's job.
func TestGrubEFIDiskStructure(t *testing.T) {
	ctx, in := grubInputs(t)
	tools, dir, kernel, initrd, kernelData, initrdData := in.tools, in.dir, in.kernel, in.initrd, in.kernelData, in.initrdData
	mcopy, err := exec.LookPath("mcopy")
	if err != nil {
		testenv.Skip(t, "mcopy (mtools) not installed")
	}

	const cmdline = "console=ttyS0 panic=-1 vmm.checks=boot"
	wantCfg, err := grubdisk.EFIGrubConfig(cmdline)
	require.NoError(t, err)
	shim, err := os.ReadFile(tools.Shim)
	require.NoError(t, err)
	signedGrub, err := os.ReadFile(tools.SignedGrub)
	require.NoError(t, err)

	boots := map[grubdisk.EFIBoot][]byte{}
	for _, boot := range []grubdisk.EFIBoot{grubdisk.EFIGrub, grubdisk.EFIShim, grubdisk.EFIUnsigned} {
		t.Run(boot.String(), func(t *testing.T) {
			disk := filepath.Join(dir, boot.String()+".img")
			start := time.Now()
			require.NoError(t, grubdisk.BuildEFI(ctx, tools, grubdisk.Spec{Kernel: kernel, Initrd: initrd, Cmdline: cmdline}, boot, disk))
			t.Logf("built in %v", time.Since(start))
			img, err := os.ReadFile(disk)
			require.NoError(t, err)

			// Protective MBR: one partition of type 0xEE from LBA 1.
			require.Equal(t, []byte{0x55, 0xAA}, img[510:512])
			require.Equal(t, byte(0xEE), img[0x1BE+4], "protective MBR type")
			require.Equal(t, uint32(1), binary.LittleEndian.Uint32(img[0x1BE+8:]))
			// GPT header at LBA 1, entries at LBA 2: the first is the ESP.
			hdr := img[512:1024]
			require.Equal(t, "EFI PART", string(hdr[:8]))
			require.Equal(t, uint64(2), binary.LittleEndian.Uint64(hdr[72:]), "partition entries LBA")
			entry := img[1024 : 1024+128]
			espType := []byte{0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B}
			require.Equal(t, espType, entry[:16], "EFI system partition type GUID")
			first, last := binary.LittleEndian.Uint64(entry[32:]), binary.LittleEndian.Uint64(entry[40:])
			require.Equal(t, uint64(grubdisk.PartitionStart), first)
			require.Less(t, (last+1)*grubdisk.SectorSize, uint64(len(img)), "room for the backup GPT")
			require.Equal(t, "EFI PART", string(img[len(img)-512:len(img)-504]), "backup GPT header in the last sector")
			fat := img[first*grubdisk.SectorSize : (last+1)*grubdisk.SectorSize]
			require.Equal(t, "FAT32   ", string(fat[82:90]), "FAT32 boot sector")

			read := func(name string) []byte {
				out, err := exec.Command(mcopy, "-n", "-i", disk+"@@"+strconv.FormatUint(first*grubdisk.SectorSize, 10), "::"+name, "-").Output()
				require.NoError(t, err, "mcopy %s", name)
				return out
			}
			require.Equal(t, kernelData, read("/boot/vmlinuz"))
			require.Equal(t, initrdData, read("/boot/initrd.img"))
			require.Equal(t, string(wantCfg), string(read(grubdisk.EFIGrubCfgPath)))
			bootx64 := read(grubdisk.EFIBootPath)
			require.Equal(t, "MZ", string(bootx64[:2]), "BOOTX64.EFI is a PE image")
			boots[boot] = bootx64
			if boot == grubdisk.EFIGrub {
				return
			}
			require.Equal(t, signedGrub, read(grubdisk.EFIShimGrub), "grubx64.efi is Debian's signed GRUB")
			if boot == grubdisk.EFIShim {
				require.Equal(t, shim, bootx64, "BOOTX64.EFI is Debian's signed shim")
			}
		})
	}
	require.Len(t, boots, 3)
	require.Equal(t, boots[grubdisk.EFIGrub], boots[grubdisk.EFIUnsigned], "the unsigned variant boots the plain GRUB")
	require.False(t, bytes.Equal(boots[grubdisk.EFIGrub], boots[grubdisk.EFIShim]))
}

// Debian's OVMF (package ovmf): the non-SMM 4 MiB build, which QEMU's -M pc
// runs and which has Secure Boot support; Secure Boot is on when the
// variable store has keys enrolled (the .ms template: Microsoft's KEK and
// db, so Microsoft-signed shim passes).
const (
	ovmfCode   = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars   = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	ovmfVarsMS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// TestGrubEFIBootTCG boots each EFI disk under QEMU -M pc with Debian's
// OVMF and software emulation (no KVM needed; about 20 s a boot): the
// plain GRUB disk into the kernel and the agent without Secure Boot; the
// shim chain with Secure Boot on (Microsoft's keys enrolled) into the
// locked-down kernel and the agent; and the same chain with an unsigned
// BOOTX64.EFI, which OVMF must refuse. The console lines checked are
// OVMF's, GRUB's, the kernel's and the agent's. Like TestGrubDiskBootTCG it
// needs Debian's kernel (downloaded once), so it runs with VMM_E2E=1 or
// under CI=true.
func TestGrubEFIBootTCG(t *testing.T) {
	ctx, qemu, k, initrd, tools := grubBootInputs(t, "the GRUB EFI disks with OVMF")
	for _, f := range []string{ovmfCode, ovmfVars, ovmfVarsMS} {
		if _, err := os.Stat(f); err != nil {
			testenv.Skip(t, "Debian's OVMF (package ovmf) not installed: %v", err)
		}
	}
	// Not quiet: the kernel's Secure Boot lines are what tell the modes apart.
	spec := grubdisk.Spec{Kernel: k.Vmlinuz, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1 vmm.checks=boot,acpi vmm.action=poweroff"}

	const started = `BdsDxe: starting Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0)`
	agent := []string{"VMM-AGENT: start", "VMM-AGENT: check=boot result=pass", "VMM-AGENT: check=acpi result=pass",
		"VMM-AGENT: summary pass=2 fail=0", "reboot: Power down"}
	for _, tc := range []struct {
		boot grubdisk.EFIBoot
		vars string
		// want appear in order; stop, when set, ends the run once seen
		// (OVMF then waits for a key); never must not appear.
		want  []string
		stop  string
		never string
	}{
		{boot: grubdisk.EFIGrub, vars: ovmfVars,
			want: append([]string{started, "Welcome to GRUB!", grubdisk.MenuMarker, grubdisk.LinuxMarker,
				"secureboot: Secure boot disabled"}, agent...)},
		{boot: grubdisk.EFIShim, vars: ovmfVarsMS,
			want: append([]string{started, "Welcome to GRUB!", grubdisk.MenuMarker, grubdisk.LinuxMarker,
				"EFI stub: UEFI Secure Boot is enabled.", "Kernel is locked down from EFI Secure Boot",
				"secureboot: Secure boot enabled"}, agent...)},
		{boot: grubdisk.EFIUnsigned, vars: ovmfVarsMS,
			want: []string{`BdsDxe: failed to load Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0): Access Denied`},
			stop: "BdsDxe: No bootable option or device was found.", never: "Welcome to GRUB!"},
	} {
		t.Run(tc.boot.String(), func(t *testing.T) {
			dir := t.TempDir()
			disk, vars := filepath.Join(dir, "disk.img"), filepath.Join(dir, "vars.fd")
			require.NoError(t, grubdisk.BuildEFI(ctx, tools, spec, tc.boot, disk))
			template, err := os.ReadFile(tc.vars)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(vars, template, 0o644))

			bootCtx, bootCancel := context.WithTimeout(ctx, 5*time.Minute)
			defer bootCancel()
			start := time.Now()
			console, err := runUntil(bootCtx, tc.stop, qemu,
				"-accel", "tcg", "-M", "pc", "-m", "512", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
				"-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode,
				"-drive", "if=pflash,format=raw,file="+vars,
				"-drive", "file="+disk+",format=raw,if=virtio")
			t.Logf("%s: %v", tc.boot, time.Since(start))
			require.NoError(t, bootCtx.Err(), "guest did not end in time; console:\n%s", console)
			require.NoError(t, err, "console:\n%s", console)
			last := -1
			want := tc.want
			if tc.stop != "" {
				want = append(want, tc.stop)
			}
			for _, want := range want {
				i := strings.Index(console, want)
				require.Greater(t, i, last, "%q missing or out of order; console:\n%s", want, console)
				last = i
			}
			if tc.never != "" {
				require.NotContains(t, console, tc.never)
			}
		})
	}
}

// runUntil runs name with args and returns its combined output once it
// exits, or once the output contains stop (when not empty), then killing
// it.
func runUntil(ctx context.Context, stop, name string, args ...string) (string, error) {
	w := &watchWriter{stop: stop, seen: make(chan struct{})}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var err error
	select {
	case err = <-exited:
	case <-w.seen:
		_ = cmd.Process.Kill()
		<-exited
	}
	return w.String(), err
}

// watchWriter collects output and closes seen when it first contains stop.
type watchWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	stop string
	seen chan struct{}
	done bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.stop != "" && !w.done && bytes.Contains(w.buf.Bytes(), []byte(w.stop)) {
		w.done = true
		close(w.seen)
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
