package vmm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/devices/vmbus/ic"
	"github.com/vmmdev/vmm/vmm/cpumodel"
	"github.com/vmmdev/vmm/vmm/hyperv"
)

// Limits that keep a bad flag from turning into a host-sized allocation.
const (
	minMemory     = 1 << 20
	maxMemory     = 1 << 40
	maxKernelSize = 512 << 20
	maxInitrdSize = 2 << 30
)

// ErrInvalidConfig marks configuration errors (bad user input), as opposed to
// failures of KVM or the host.
var ErrInvalidConfig = errors.New("invalid configuration")

// Program is a raw guest program copied into RAM and entered directly, with
// no boot protocol: the tiny test guests and tools use it.
type Program struct {
	Addr  uint64
	Code  []byte
	Entry boot.Entry
}

// Config is everything needed to build a VM.
type Config struct {
	// Kernel is a bzImage, a PVH ELF (vmlinux) or a multiboot ELF.
	Kernel string
	// Initrd is an optional initramfs (for multiboot kernels: module 0).
	Initrd  string
	Cmdline string
	// Program replaces Kernel with a raw program (tests, tools).
	Program *Program
	// Firmware, instead of Kernel, is a firmware image (a path, or
	// "seabios" for Debian's SeaBIOS) entered at the reset vector (firmware.go).
	Firmware string

	CPUs   int
	Memory uint64 // bytes
	// Timeout ends the VM with StopTimeout; zero means none.
	Timeout time.Duration

	// ConsoleOut receives what the guest writes to its serial port; nil discards it.
	ConsoleOut io.Writer
	// ConsoleIn, if set, feeds the guest's serial port.
	ConsoleIn io.Reader

	// DevKVM is the KVM device node; empty means /dev/kvm.
	DevKVM string

	// HyperV are the Hyper-V enlightenments (zero: off); HyperVTrace, if
	// set, receives a JSON line per synthetic MSR access and hypercall.
	HyperV      hyperv.Features
	HyperVTrace io.Writer
	// VMBus adds a VMBus host (--vmbus, vmbus.go) with the heartbeat, time
	// sync and shutdown integration services; it needs HyperV's SynIC.
	VMBus bool
	// ShutdownTimeout (with VMBus) is how long the first SIGINT/SIGTERM
	// waits for the guest to power off after vmm asked it to through the
	// shutdown channel, before the hard stop; zero: no request, hard stop
	// at once.
	ShutdownTimeout time.Duration
	// HeartbeatTimeout (with VMBus), if set, ends the run with
	// StopHeartbeatLost when the guest, having answered heartbeats, answers
	// none for this long.
	HeartbeatTimeout time.Duration
	// KVP (with VMBus) are host keys pushed to the guest's external KVP
	// pool (--kvp KEY=VALUE).
	KVP []ic.KV

	// CPU is the CPU the guest sees (--cpu); the zero Spec is the host's.
	CPU cpumodel.Spec

	// Testdev adds QEMU's test devices (testdev.go).
	Testdev bool

	// ACPI is direct boot's ACPI flavour: ACPIPC (also when empty) or
	// ACPIReduced (pm.go). Firmware boot always has the PC one.
	ACPI string

	// RNG adds a virtio-rng device; VirtioConsole a virtio-console (hvc0)
	// whose output goes where the UART's does (pci.go).
	RNG           bool
	VirtioConsole bool
	// Balloon adds a virtio-balloon device with free page reporting: memory
	// the guest frees or inflates goes back to the host (pci.go).
	Balloon bool

	// Disks and NICs are virtio-blk and virtio-net devices (config_devices.go).
	Disks []Disk
	NICs  []NIC
	// CDROMs are ISO images on ATAPI drives of the AHCI controller, read-only.
	CDROMs []string
	// CloudInit is a directory of cloud-init NoCloud files (user-data,
	// meta-data, network-config, vendor-data): New builds a seed volume
	// labelled cidata from it and attaches it read-only as the last
	// virtio-blk disk (cloudinit.go).
	CloudInit string

	// Expect, if set, ends the VM with StopExpectMatched when a console line
	// matches it; Fail, with StopFailMatched (package conmatch).
	Expect, Fail *regexp.Regexp

	// signalMSI makes every MSI-X vector use KVM_SIGNAL_MSI instead of an
	// irqfd, as on a host without irqfds (tests of that path).
	signalMSI bool
}

// Defaults of `vmm run`.
const (
	DefaultCPUs   = 1
	DefaultMemory = 512 << 20
)

func (c *Config) devKVM() string {
	if c.DevKVM == "" {
		return "/dev/kvm"
	}
	return c.DevKVM
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// Validate checks what can be checked without KVM: sizes, counts and files.
// It reads nothing but file metadata.
func (c *Config) Validate() error {
	if c.Kernel == "" && c.Program == nil && c.Firmware == "" {
		return invalid("--kernel: no kernel given")
	}
	if c.Kernel != "" && c.Program != nil {
		return invalid("a kernel and a raw program are mutually exclusive")
	}
	if c.Firmware != "" && (c.Kernel != "" || c.Program != nil || c.Initrd != "") {
		return invalid("--firmware and --kernel/--initrd are mutually exclusive")
	}
	if c.Firmware != "" {
		if err := c.validateFirmware(); err != nil {
			return err
		}
	}
	if c.CPUs < 1 {
		return invalid("--cpus: %d vCPUs; need at least 1", c.CPUs)
	}
	if c.CPUs > 254 {
		return invalid("--cpus: %d vCPUs; at most 254 are supported (xAPIC IDs, one for the IOAPIC)", c.CPUs)
	}
	if c.Memory < minMemory {
		return invalid("--memory: %d bytes is too small; need at least 1 MiB", c.Memory)
	}
	if c.Memory > maxMemory {
		return invalid("--memory: %d bytes is more than vmm supports (1 TiB)", c.Memory)
	}
	if c.Memory%4096 != 0 {
		return invalid("--memory: %d bytes is not a multiple of 4 KiB", c.Memory)
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err == nil {
		host := uint64(si.Totalram) * uint64(si.Unit)
		if host > 0 && c.Memory > host {
			return invalid("--memory: %d MiB is more than this host's %d MiB of RAM", c.Memory>>20, host>>20)
		}
	}
	if c.Timeout < 0 {
		return invalid("--timeout: negative duration %v", c.Timeout)
	}
	if c.Kernel != "" {
		if _, err := checkFile("--kernel", c.Kernel, maxKernelSize); err != nil {
			return err
		}
	}
	if c.Initrd != "" {
		if _, err := checkFile("--initrd", c.Initrd, maxInitrdSize); err != nil {
			return err
		}
	}
	if err := c.validateTestdev(); err != nil {
		return err
	}
	if err := c.validateACPI(); err != nil {
		return err
	}
	if c.VMBus && !c.HyperV.SynIC {
		return invalid("--vmbus needs --hyperv with synic and vpindex")
	}
	if err := c.validateVMBus(); err != nil {
		return err
	}
	return c.validateDevices()
}

// checkFile makes sure path is a readable regular file no larger than limit.
func checkFile(flag, path string, limit int64) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, invalid("%s %s: %v", flag, path, unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return 0, invalid("%s %s: not a regular file", flag, path)
	}
	if fi.Size() > limit {
		return 0, invalid("%s %s: %d bytes is larger than the %d MiB vmm accepts", flag, path, fi.Size(), limit>>20)
	}
	if err := unix.Access(path, unix.R_OK); err != nil {
		return 0, invalid("%s %s: not readable: %v", flag, path, err)
	}
	return fi.Size(), nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// sizedFile is an open guest image with the size it had when opened: a
// boot.Source. A file that shrinks afterwards gives a short read, an error.
type sizedFile struct {
	*os.File
	size int64
}

func (f *sizedFile) Size() int64 { return f.size }

// openSized opens a file that checkFile accepted, bounding it again in case
// it grew, for reading in place.
func openSized(flag, path string, limit int64) (*sizedFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, invalid("%s %s: %v", flag, path, unwrapPathError(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s %s: %w", flag, path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, invalid("%s %s: not a regular file", flag, path)
	}
	if fi.Size() > limit {
		f.Close()
		return nil, invalid("%s %s: larger than the %d MiB vmm accepts", flag, path, limit>>20)
	}
	return &sizedFile{File: f, size: fi.Size()}, nil
}
