package images

import (
	"context"
	"fmt"
	"github.com/vmmdev/vmm/images/grubdisk"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// OuterInitPackage is the outer init's package, built as the outer machine's /init.
const OuterInitPackage = "./images/outer"

// Paths inside the outer initramfs; images/outer reads them.
const (
	OuterGuestKernel    = "/guest/vmlinuz"
	OuterGuestInitramfs = "/guest/guest.cpio.gz"
	// OuterGuestVmlinux is the same kernel unpacked (Vmlinux), which vmm
	// boots by PVH.
	OuterGuestVmlinux = "/guest/vmlinux"
	OuterVMM          = "/vmm"
	OuterQEMU         = "/usr/bin/qemu-system-x86_64"
	// OuterGuestDisk is the GRUB disk firmware scenarios boot.
	OuterGuestDisk = "/guest/grub.img"
	// OuterGuestISO is the GRUB ISO (El Torito) the CD-ROM scenario boots.
	OuterGuestISO = "/guest/grub.iso"
	// OuterSeaBIOS is Debian's SeaBIOS, at the path Debian installs it on
	// the host too: vmm's --firmware seabios and QEMU's -bios name it.
	OuterSeaBIOS = "/usr/share/seabios/bios-256k.bin"
	// OuterImages is where the outer machine mounts the image share
	// (scenario.ImagesTag): the image cache (Config.Cache), read-only.
	OuterImages = "/images"
	// OuterDebianDisk is DebianDisk's qcow2 there: boot it in snapshot mode.
	OuterDebianDisk = OuterImages + "/" + debianDir + "/" + debianQCOW2
	// OuterDebianKernel and OuterDebianInitrd are its kernel and initrd
	// (DebianImage.Vmlinuz and Initrd) there, to boot it directly.
	OuterDebianKernel = OuterImages + "/" + debianBootDir + "/" + DebianVmlinuz
	OuterDebianInitrd = OuterImages + "/" + debianBootDir + "/" + DebianInitrd
)

// ImageShareModules are what the outer machine loads to mount the image
// share: 9p over virtio-pci.
func ImageShareModules() []string { return []string{"virtio_pci", "9pnet_virtio", "9p"} }

// OuterContent is what the outer initramfs carries besides the outer init
// and the KVM modules.
type OuterContent struct {
	// GuestInitramfs is the inner guest's initramfs (the kernel comes with
	// the KernelArtifacts).
	GuestInitramfs string
	// GuestVmlinux, when set, is Vmlinux's file, carried as
	// OuterGuestVmlinux.
	GuestVmlinux string
	// VMM is vmm's binary, carried as OuterVMM; left out when empty (vmm
	// scenarios then fail inside with a clear reason).
	VMM string
	// Scenarios is the scenario list, carried as /scenarios.json.
	Scenarios []byte
	// QEMU carries this host's QEMU with its shared libraries and microvm
	// firmware, for the reference runs.
	QEMU bool
	// FirmwareDisk, when set, is a bootable disk image carried as
	// OuterGuestDisk, with this host's SeaBIOS as OuterSeaBIOS.
	FirmwareDisk string
	// FirmwareISO, when set, is a bootable ISO image carried as
	// OuterGuestISO (with SeaBIOS as for FirmwareDisk).
	FirmwareISO string
	// SeaBIOS carries this host's SeaBIOS as OuterSeaBIOS without a disk:
	// QEMU's PC machines (q35) boot the kernel directly through it.
	SeaBIOS bool
	// EFIDisks are GPT disks with an EFI system partition, each carried
	// as OuterEFIDisk(boot), with this host's OVMF (OuterOVMF) at the paths
	// Debian installs it.
	EFIDisks map[grubdisk.EFIBoot]string
	// IPXEDisk, when set, is IPXEDisk's image, carried as OuterIPXEDisk
	// with OVMF as for EFIDisks.
	IPXEDisk string
	// ImageShare carries the modules (ImageShareModules) that mount the
	// image share at OuterImages, with OVMF and SeaBIOS at the paths
	// Debian installs them: the Debian image boots through either.
	ImageShare bool
}

// OuterEFIDisk is where the outer initramfs carries the EFI disk that
// boots through boot (GrubEFIDisk): the UEFI scenarios boot it with OVMF.
func OuterEFIDisk(boot grubdisk.EFIBoot) string { return "/guest/grub-efi-" + boot.String() + ".img" }

// OuterOVMF are Debian's OVMF files the UEFI scenarios use (vmm's
// --firmware ovmf names them), carried at the same paths.
func OuterOVMF() []string {
	return []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"}
}

// qemuFirmware are the files of QEMU's data directory that
// `-M microvm -kernel` may read: the qboot BIOS (bios-microvm.bin is Debian's
// link to qboot.rom) and the option ROMs for direct kernel boot.
func qemuFirmware() []string {
	return []string{
		"bios-microvm.bin", "qboot.rom", "linuxboot_dma.bin", "linuxboot.bin",
		"pvh.bin", "multiboot_dma.bin", "kvmvapic.bin",
	}
}

// qemuDataDir is where Debian's QEMU looks for firmware.
const qemuDataDir = "/usr/share/qemu"

// OuterInitramfs builds <Out>/outer.cpio.gz, the nested test host's
// initramfs: /init is the outer init, with the KVM modules of k, the inner
// guest's kernel under /guest and what c names. Rebuilt only when any of
// that content changes; returns its path.
func OuterInitramfs(ctx context.Context, cfg Config, k *KernelArtifacts, c OuterContent) (string, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return "", err
	}
	init, err := GoBinary(ctx, cfg, OuterInitPackage, "outer-init")
	if err != nil {
		return "", fmt.Errorf("outer initramfs: %w", err)
	}
	entries := append(BaseEntries(),
		HostFile("init", 0o755, init),
		HostFile(OuterGuestKernel, 0o644, k.Vmlinuz),
		HostFile(OuterGuestInitramfs, 0o644, c.GuestInitramfs),
		File("scenarios.json", 0o644, c.Scenarios),
	)
	if c.VMM != "" {
		entries = append(entries, HostFile(OuterVMM, 0o755, c.VMM))
	}
	if c.GuestVmlinux != "" {
		entries = append(entries, HostFile(OuterGuestVmlinux, 0o644, c.GuestVmlinux))
	}
	if c.FirmwareDisk != "" || c.FirmwareISO != "" || c.SeaBIOS || c.ImageShare {
		if _, err := os.Stat(OuterSeaBIOS); err != nil {
			return "", fmt.Errorf("outer initramfs: SeaBIOS for the firmware and q35 scenarios (install seabios): %w", err)
		}
		entries = append(entries, HostFile(OuterSeaBIOS, 0o644, OuterSeaBIOS))
	}
	if c.FirmwareDisk != "" {
		entries = append(entries, HostFile(OuterGuestDisk, 0o644, c.FirmwareDisk))
	}
	if c.FirmwareISO != "" {
		entries = append(entries, HostFile(OuterGuestISO, 0o644, c.FirmwareISO))
	}
	if len(c.EFIDisks) > 0 || c.IPXEDisk != "" || c.ImageShare {
		for _, p := range OuterOVMF() {
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("outer initramfs: OVMF for the UEFI scenarios (install ovmf): %w", err)
			}
			entries = append(entries, HostFile(p, 0o644, p))
		}
		for _, boot := range []grubdisk.EFIBoot{grubdisk.EFIGrub, grubdisk.EFIShim, grubdisk.EFIUnsigned} {
			if d := c.EFIDisks[boot]; d != "" {
				entries = append(entries, HostFile(OuterEFIDisk(boot), 0o644, d))
			}
		}
		if c.IPXEDisk != "" {
			entries = append(entries, HostFile(OuterIPXEDisk, 0o644, c.IPXEDisk))
		}
	}
	modNames := OuterModules()
	if c.ImageShare {
		modNames = append(modNames, ImageShareModules()...)
	}
	mods, err := ModuleEntries(k, modNames...)
	if err != nil {
		return "", fmt.Errorf("outer initramfs: %w", err)
	}
	entries = append(entries, mods...)
	if c.QEMU {
		q, err := qemuEntries(ctx, cfg)
		if err != nil {
			return "", fmt.Errorf("outer initramfs: %w", err)
		}
		entries = append(entries, q...)
	}
	key, err := EntriesKey("outer-v1", entries)
	if err != nil {
		return "", fmt.Errorf("outer initramfs: %w", err)
	}
	out := filepath.Join(cfg.Out, "outer.cpio.gz")
	rebuilt, err := Cached(out, key, func(tmp string) error { return WriteInitramfs(tmp, entries) })
	if err != nil {
		return "", err
	}
	cfg.Log.Info("outer initramfs ready", "path", out, "rebuilt", rebuilt, "qemu", c.QEMU, "vmm", c.VMM != "", "firmware", c.FirmwareDisk != "")
	return out, nil
}

// OuterExecInitramfs builds <Out>/outer-exec.cpio.gz, the nested test
// host's initramfs for running host programs (testhost.Exec): the outer init
// and the modules of OuterModules and ExecModules, nothing else, since the
// program and everything it reads come from the host's root over 9p.
func OuterExecInitramfs(ctx context.Context, cfg Config, k *KernelArtifacts) (string, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return "", err
	}
	init, err := GoBinary(ctx, cfg, OuterInitPackage, "outer-init")
	if err != nil {
		return "", fmt.Errorf("outer exec initramfs: %w", err)
	}
	mods, err := ModuleEntries(k, append(OuterModules(), ExecModules()...)...)
	if err != nil {
		return "", fmt.Errorf("outer exec initramfs: %w", err)
	}
	entries := append(append(BaseEntries(), HostFile("init", 0o755, init)), mods...)
	key, err := EntriesKey("outer-exec-v1", entries)
	if err != nil {
		return "", fmt.Errorf("outer exec initramfs: %w", err)
	}
	out := filepath.Join(cfg.Out, "outer-exec.cpio.gz")
	rebuilt, err := Cached(out, key, func(tmp string) error { return WriteInitramfs(tmp, entries) })
	if err != nil {
		return "", err
	}
	cfg.Log.Info("outer exec initramfs ready", "path", out, "rebuilt", rebuilt)
	return out, nil
}

// qemuEntries returns this host's qemu-system-x86_64, the shared libraries
// ldd names (at the paths ldd gives, the dynamic loader included) and the
// microvm firmware, all as regular files (symlinks resolved on the host).
func qemuEntries(ctx context.Context, cfg Config) ([]Entry, error) {
	bin, err := EnsureQEMU(ctx, cfg)
	if err != nil {
		return nil, err
	}
	raw, err := (step{name: "ldd qemu", timeout: time.Minute}).run(ctx, "ldd", bin)
	if err != nil {
		return nil, err
	}
	libs, err := parseLdd(string(raw))
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	entries := []Entry{HostFile(OuterQEMU, 0o755, bin)}
	for _, lib := range libs {
		entries = append(entries, HostFile(lib, 0o755, lib))
	}
	for _, name := range qemuFirmware() {
		host := filepath.Join(qemuDataDir, name)
		if _, err := os.Stat(host); err != nil {
			return nil, fmt.Errorf("qemu firmware: %w", err)
		}
		entries = append(entries, HostFile(path.Join(qemuDataDir, name), 0o644, host))
	}
	return entries, nil
}

// lddLine matches "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" and
// "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no path and no match.
var (
	lddLine     = regexp.MustCompile(`^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$`)
	lddNotFound = regexp.MustCompile(`=>\s+not found`)
)

// parseLdd returns the absolute library paths of ldd's output, sorted.
// A library ldd could not find is an error: QEMU would not start.
func parseLdd(out string) ([]string, error) {
	seen := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if lddNotFound.MatchString(line) {
			return nil, fmt.Errorf("missing library: %s", line)
		}
		if m := lddLine.FindStringSubmatch(line); m != nil {
			seen[m[1]] = true
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("no libraries in ldd output %q", out)
	}
	libs := make([]string, 0, len(seen))
	for l := range seen {
		libs = append(libs, l)
	}
	sort.Strings(libs)
	return libs, nil
}
