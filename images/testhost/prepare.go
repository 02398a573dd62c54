package testhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
)

// Errors a caller may branch on.
var (
	// ErrVMMBuild: ./cmd/vmm does not build, so vmm scenarios cannot run.
	ErrVMMBuild = errors.New("vmm does not build")
	// ErrNoQEMU: qemu-system-x86_64 is missing and installing it was not allowed.
	ErrNoQEMU = errors.New("qemu-system-x86_64 not installed")
)

// VMMPackage is what `vmm run` is built from.
const VMMPackage = "./cmd/vmm"

// outerBootBudget is the outer machine's time besides its scenarios: the
// TCG boot of the outer kernel and the KVM module loads.
const outerBootBudget = 5 * time.Minute

// Suite is what one outer boot runs.
type Suite struct {
	Config    images.Config
	Scenarios []scenario.Scenario
	// InstallQEMU allows apt-get installing qemu-system-x86 when it is
	// missing, and the outer QEMU's build dependencies (CI, as root).
	InstallQEMU bool
	// OuterCPUs is the outer machine's vCPU count (Machine.CPUs).
	OuterCPUs int
	// StreamAll streams every scenario's console live (E2E-CON lines in
	// the outer console), so a run that wedges the outer machine still
	// leaves its guest's output behind. It costs console time.
	StreamAll bool
	// Console and OnEvent are handed to the Machine (see there).
	Console io.Writer
	OnEvent func(scenario.Event)
}

// Run builds what is missing and boots the outer machine once, holding the
// host's nested-host lock from the build of outer.cpio.gz until the machine
// stops. The Outcome is nil when the machine never started.
func (s Suite) Run(ctx context.Context) (*Outcome, error) {
	cfg, err := s.Config.WithDefaults()
	if err != nil {
		return nil, err
	}
	unlock, err := lockHost(ctx, cfg.Out, func(path string) {
		cfg.Log.Warn("another nested-host run holds the lock; waiting", "lock", path)
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	m, err := s.Prepare(ctx)
	if err != nil {
		return nil, err
	}
	m.Console, m.OnEvent, m.CPUs = s.Console, s.OnEvent, s.OuterCPUs
	cfg.Log.Info("booting the outer machine", "initrd", m.Initrd, "timeout", m.Timeout)
	return m.Run(ctx)
}

// needs reports which runners the scenarios use.
func (s Suite) needs() (vmm, qemu bool) {
	for _, sc := range s.Scenarios {
		switch sc.RunnerName() {
		case scenario.RunnerVMM:
			vmm = true
		case scenario.RunnerQEMU:
			qemu = true
		}
	}
	return vmm, qemu
}

// Timeout is enough for every scheduled run plus the outer boot: the
// longest run of each batch (scenario.Batches), since a batch's runs go
// together.
func (s Suite) Timeout() (time.Duration, error) {
	total := outerBootBudget
	for _, b := range scenario.Batches(scenario.Schedule(s.Scenarios)) {
		var longest time.Duration
		for _, r := range b {
			d, err := r.Scenario.Deadline()
			if err != nil {
				return 0, err
			}
			longest = max(longest, d)
		}
		// A killed run may take waitDelay more to be reaped.
		total += longest + 10*time.Second
	}
	return total, nil
}

// FindQEMU returns qemu-system-x86_64's path; when it is missing it installs
// it if allowed (images.EnsureQEMU), and otherwise returns ErrNoQEMU.
func FindQEMU(ctx context.Context, cfg images.Config, install bool) (string, error) {
	if p, err := exec.LookPath(images.QEMUBinary); err == nil {
		return p, nil
	}
	if !install {
		return "", ErrNoQEMU
	}
	p, err := images.EnsureQEMU(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoQEMU, err)
	}
	return p, nil
}

// EnvOuterQEMU picks the outer machine's QEMU: unset or "patched", the
// patched build from Debian's source (images.PatchedQEMU: built once per
// machine, then cached); "debian", Debian's own qemu-system-x86_64, for
// comparison (it aborts when a nested guest writes CR8 with an interrupt
// pending); an absolute path, that binary.
const EnvOuterQEMU = "VMM_OUTER_QEMU"

// Values of EnvOuterQEMU besides a path.
const (
	OuterQEMUPatched = "patched"
	OuterQEMUDebian  = "debian"
)

// OuterQEMU returns the QEMU that boots the outer machine, as EnvOuterQEMU
// says. Debian's qemu-system-x86 must be installed in every case (the
// patched build uses its firmware and data), and is installed when missing
// if install allows; install also lets the patched build apt-get install its
// build dependencies.
func OuterQEMU(ctx context.Context, cfg images.Config, install bool) (string, error) {
	debian, err := FindQEMU(ctx, cfg, install)
	if err != nil {
		return "", err
	}
	switch v := os.Getenv(EnvOuterQEMU); {
	case v == OuterQEMUDebian:
		return debian, nil
	case v == "" || v == OuterQEMUPatched:
		b, err := images.PatchedQEMU(ctx, cfg, install)
		if err != nil {
			return "", fmt.Errorf("%w (%s=%s boots Debian's QEMU instead, which aborts on nested CR8 writes)", err, EnvOuterQEMU, OuterQEMUDebian)
		}
		return b.Binary, nil
	case filepath.IsAbs(v):
		if _, err := os.Stat(v); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvOuterQEMU, v, err)
		}
		return v, nil
	default:
		return "", fmt.Errorf("%s=%q: want %s, %s or an absolute path", EnvOuterQEMU, v, OuterQEMUPatched, OuterQEMUDebian)
	}
}

// BuildVMM builds ./cmd/vmm into <module root>/build/bin/vmm (go's build
// cache makes an unchanged rebuild cheap).
func BuildVMM(ctx context.Context) (string, error) {
	root, err := images.ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(root, "build", "bin", "vmm")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("build dir: %w", err)
	}
	if err := images.BuildGo(ctx, VMMPackage, out); err != nil {
		return "", fmt.Errorf("%w: %w", ErrVMMBuild, err)
	}
	return out, nil
}

// list is the scenario list as the outer init gets it.
func (s Suite) list() []scenario.Scenario {
	if !s.StreamAll {
		return s.Scenarios
	}
	list := make([]scenario.Scenario, len(s.Scenarios))
	for i, sc := range s.Scenarios {
		sc.Stream = true
		list[i] = sc
	}
	return list
}

// Prepare builds (or reuses) everything the suite needs and returns the
// outer machine to boot; its Timeout covers every scheduled run. Without
// the lock Run holds, another run may replace outer.cpio.gz before the
// machine boots: use Run.
func (s Suite) Prepare(ctx context.Context) (Machine, error) {
	cfg, err := s.Config.WithDefaults()
	if err != nil {
		return Machine{}, err
	}
	data, err := scenario.Encode(s.list())
	if err != nil {
		return Machine{}, err
	}
	timeout, err := s.Timeout()
	if err != nil {
		return Machine{}, err
	}
	qemu, err := OuterQEMU(ctx, cfg, s.InstallQEMU)
	if err != nil {
		return Machine{}, err
	}
	needVMM, needQEMU := s.needs()
	vmm := ""
	if needVMM {
		if vmm, err = BuildVMM(ctx); err != nil {
			return Machine{}, err
		}
	}
	k, err := images.Kernel(ctx, cfg)
	if err != nil {
		return Machine{}, fmt.Errorf("kernel: %w", err)
	}
	guest, err := images.GuestInitramfs(ctx, cfg, k)
	if err != nil {
		return Machine{}, fmt.Errorf("guest initramfs: %w", err)
	}
	vmlinux := ""
	if usesPath(s.Scenarios, images.OuterGuestVmlinux) {
		if vmlinux, err = images.Vmlinux(ctx, cfg, k); err != nil {
			return Machine{}, err
		}
	}
	disk := ""
	if needsFirmware(s.Scenarios) {
		if disk, err = images.GrubDisk(ctx, cfg, k, guest, FirmwareGuest().Cmdline()); err != nil {
			return Machine{}, fmt.Errorf("firmware disk: %w", err)
		}
	}
	iso := ""
	if needsFirmwareISO(s.Scenarios) {
		if iso, err = images.GrubISO(ctx, cfg, k, guest, FirmwareGuest().Cmdline()); err != nil {
			return Machine{}, fmt.Errorf("firmware iso: %w", err)
		}
	}
	efiDisks := map[grubdisk.EFIBoot]string{}
	for _, boot := range []grubdisk.EFIBoot{grubdisk.EFIGrub, grubdisk.EFIShim, grubdisk.EFIUnsigned} {
		if !usesPath(s.Scenarios, images.OuterEFIDisk(boot)) {
			continue
		}
		if efiDisks[boot], err = images.GrubEFIDisk(ctx, cfg, k, guest, UEFIGuestFor(boot).Cmdline(), boot); err != nil {
			return Machine{}, fmt.Errorf("EFI disk (%v): %w", boot, err)
		}
	}
	ipxe := ""
	if usesPath(s.Scenarios, images.OuterIPXEDisk) {
		if ipxe, err = images.IPXEDisk(ctx, cfg); err != nil {
			return Machine{}, err
		}
	}
	m := Machine{QEMU: qemu, Kernel: k.Vmlinuz, Timeout: timeout}
	share := needsImageShare(s.Scenarios)
	if share {
		// Built or checked here; the share is the cache that holds it
		// and its boot files.
		if _, err := images.DebianDisk(ctx, cfg); err != nil {
			return Machine{}, fmt.Errorf("debian image: %w", err)
		}
		m.Extra = ImageShareDevices(cfg.Cache)
		m.Append = DefaultAppend + " " + scenario.ImagesParam + "=" + images.OuterImages
	}
	if m.Initrd, err = images.OuterInitramfs(ctx, cfg, k, images.OuterContent{
		GuestInitramfs: guest, GuestVmlinux: vmlinux, VMM: vmm, Scenarios: data, QEMU: needQEMU, FirmwareDisk: disk, FirmwareISO: iso,
		SeaBIOS: needsSeaBIOS(s.Scenarios), EFIDisks: efiDisks, IPXEDisk: ipxe, ImageShare: share,
	}); err != nil {
		return Machine{}, err
	}
	return m, nil
}

// needsImageShare reports whether a scenario boots an image of the share.
func needsImageShare(list []scenario.Scenario) bool {
	return usesPath(list, images.OuterDebianDisk)
}

// ImageShareDevices are the outer QEMU's devices for the image share: the
// host directory dir read-only over 9p with tag scenario.ImagesTag (the
// outer init mounts it at images.OuterImages). QEMU's option syntax
// doubles a comma inside a value.
func ImageShareDevices(dir string) []string {
	return []string{"-virtfs", "local,path=" + strings.ReplaceAll(dir, ",", ",,") +
		",mount_tag=" + scenario.ImagesTag + ",security_model=none,readonly=on"}
}
