package images

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// ModulePath is the import path of this Go module; ModuleRoot looks for its go.mod.
const ModulePath = "github.com/vmmdev/vmm"

// ErrNoModuleRoot is returned when no enclosing go.mod declares ModulePath.
var ErrNoModuleRoot = errors.New("not inside the " + ModulePath + " module")

// OuterModules are what the nested test host loads to get /dev/kvm, and tun
// for the taps of the network scenarios.
// Dependencies (irqbypass, ccp) are resolved from the modules' own metadata,
// so they need not be listed. A new slice each call: callers may append.
func OuterModules() []string { return []string{"kvm", "kvm_amd", "tun"} }

// ExecModules are what the nested test host loads besides OuterModules when
// it runs a host program (testhost.Exec): 9p over virtio for the host's root
// file system, overlay to make it writable in memory, and virtio_console for
// the port the program's output leaves by.
func ExecModules() []string {
	return []string{"virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_console"}
}

// GuestModules are what an inner guest may need to drive vmm's devices, and
// msr, through which the agent times MSR accesses (/dev/cpu/N/msr).
func GuestModules() []string {
	return []string{
		"virtio", "virtio_ring", "virtio_pci", "virtio_mmio",
		"virtio_blk", "virtio_net", "virtio_console", "virtio_rng", "msr",
		// --balloon: free page reporting is built in (CONFIG_PAGE_REPORTING).
		"virtio_balloon",
		"nvme_core", "nvme",
		// AHCI disks and CD-ROMs: libata, libahci, scsi_mod and cdrom come
		// in as dependencies (all modules in Debian's 6.1 config).
		"ahci", "sd_mod", "sr_mod",
		// The CD-ROM check mounts an ISO 9660 image.
		"isofs",
		// The efi-vars check reads and writes UEFI variables.
		"efivarfs",
		// VMBus (--vmbus), its integration services and synthetic SCSI
		// disks (scsi_transport_fc comes as a dependency); outside Hyper-V
		// with VMBus, hv_vmbus's init says ENODEV and the agent skips it
		// and what depends on it.
		"hv_vmbus", "hv_utils", "hv_storvsc",
		// --net ...,if=vmbus: Hyper-V's synthetic NIC.
		"hv_netvsc",
	}
}

// Config says where artifacts go and what goes into them. The zero value is
// usable: WithDefaults fills every empty field.
type Config struct {
	// Out is the artifact directory; default <module root>/build/images.
	Out string
	// KernelPackage is the Debian package whose dependency is the versioned
	// kernel image; default "linux-image-amd64".
	KernelPackage string
	// Modules are the kernel modules (names) copied out of the Debian package,
	// with their dependencies; default OuterModules() + ExecModules() +
	// GuestModules().
	Modules []string
	// GuestModules go into the guest initramfs; default GuestModules().
	GuestModules []string
	// StepTimeout bounds each external step (apt-get, dpkg, go build);
	// default 10 minutes.
	StepTimeout time.Duration
	// Log receives progress; default slog.Default().
	Log *slog.Logger
	// Cache holds what is built once per machine rather than per clone
	// (the patched outer QEMU): default <user cache dir>/vmm, i.e.
	// $XDG_CACHE_HOME/vmm or ~/.cache/vmm.
	Cache string
	// Jobs is the parallelism of native builds (the patched outer QEMU); default
	// the number of CPUs this process may use.
	Jobs int
}

// WithDefaults returns c with every empty field set to its default.
func (c Config) WithDefaults() (Config, error) {
	if c.Out == "" {
		root, err := ModuleRoot()
		if err != nil {
			return c, err
		}
		c.Out = filepath.Join(root, "build", "images")
	}
	out, err := filepath.Abs(c.Out)
	if err != nil {
		return c, fmt.Errorf("artifact dir: %w", err)
	}
	c.Out = out
	if c.KernelPackage == "" {
		c.KernelPackage = "linux-image-amd64"
	}
	if c.Modules == nil {
		c.Modules = append(append(OuterModules(), ExecModules()...), GuestModules()...)
	}
	if c.GuestModules == nil {
		c.GuestModules = GuestModules()
	}
	if c.StepTimeout == 0 {
		c.StepTimeout = 10 * time.Minute
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	// Without a home directory Cache stays empty, and only what needs
	// it (PatchedQEMU) fails, saying so.
	if dir, err := os.UserCacheDir(); c.Cache == "" && err == nil {
		c.Cache = filepath.Join(dir, "vmm")
	}
	if c.Cache != "" {
		if c.Cache, err = filepath.Abs(c.Cache); err != nil {
			return c, fmt.Errorf("build cache: %w", err)
		}
	}
	if c.Jobs <= 0 {
		c.Jobs = runtime.NumCPU()
	}
	return c, nil
}

// ModuleRoot returns the directory of this module's go.mod, searching upwards
// from the working directory (tests run in their package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if isModuleRoot(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoModuleRoot
		}
		dir = parent
	}
}

func isModuleRoot(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == ModulePath
		}
	}
	return false
}
