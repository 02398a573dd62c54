package vmm

import (
	"fmt"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/boot/loader"
	"github.com/vmmdev/vmm/devices/cmos"
	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/firmware/mptable"
	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// bootPath is how the guest starts, chosen once in New: a kernel (or a test
// program) placed in memory with vCPU 0 at its entry, or firmware started
// from the reset vector. Everything that differs between the two is here;
// the rest of the machine is the same.
type bootPath interface {
	// mapMemory registers guest RAM, and whatever else the path maps,
	// with KVM.
	mapMemory(m *Machine) error
	// setupCMOS fills what the path's guest reads from CMOS.
	setupCMOS(c *cmos.CMOS, cpus int)
	// chipset adds the PCI functions the path needs, before any other
	// device takes their slots.
	chipset(m *Machine) error
	// load registers the path's own devices, writes its tables and places
	// the guest; the entry is vCPU 0's unless fromReset.
	load(m *Machine) (boot.Entry, error)
	// fromReset says vCPU 0 starts in KVM's reset state (CS F000, base
	// FFFF0000, IP FFF0): where firmware begins.
	fromReset() bool
	// watchConsole adds the path's patterns to a console device's output
	// watch (firmware messages that end the VM).
	watchConsole(w *consoleWatch, m *Machine)
	// close releases what the path holds (after the VM is gone).
	close()
}

// newBootPath reads and checks the guest images cfg names, before KVM is
// touched, so a bad file is a configuration error and no VM is created.
func newBootPath(cfg Config) (bootPath, error) {
	if cfg.Firmware != "" {
		return readFirmware(cfg)
	}
	return readDirect(cfg)
}

// directBoot loads a kernel (bzImage, PVH ELF or multiboot) or a test
// program, with the MP table, ACPI tables and a reset stub vmm writes, and
// fw_cfg. The kernel and initrd stay open files until the guest is loaded:
// the loader reads them straight into guest memory (boot.Source), so their
// size never passes through vmm's heap.
type directBoot struct {
	kernel, initrd *sizedFile
}

func readDirect(cfg Config) (_ *directBoot, err error) {
	d := &directBoot{}
	if cfg.Kernel == "" {
		return d, nil
	}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if d.kernel, err = openSized("--kernel", cfg.Kernel, maxKernelSize); err != nil {
		return nil, err
	}
	var initrdSize int64
	if cfg.Initrd != "" {
		if d.initrd, err = openSized("--initrd", cfg.Initrd, maxInitrdSize); err != nil {
			return nil, err
		}
		initrdSize = d.initrd.Size()
	}
	if err := loader.Check(d.kernel, cfg.Kernel, initrdSize, cfg.Cmdline, cfg.Memory); err != nil {
		return nil, fmt.Errorf("%w: --kernel %s: %w", ErrInvalidConfig, cfg.Kernel, err)
	}
	return d, nil
}

// mapMemory maps each RAM region into one slot.
func (*directBoot) mapMemory(m *Machine) error {
	for i, r := range m.mem.Regions() {
		err := m.vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
			Slot:          uint32(i),
			GuestPhysAddr: r.Start,
			MemorySize:    r.Size,
			UserspaceAddr: uint64(uintptrOf(m.mem.host(i))),
		})
		if err != nil {
			return fmt.Errorf("register guest memory [%#x, %#x): %w", r.Start, r.End(), err)
		}
	}
	return nil
}

func (*directBoot) setupCMOS(*cmos.CMOS, int) {}

func (*directBoot) chipset(*Machine) error { return nil }

func (*directBoot) fromReset() bool { return false }

// close closes the kernel and initrd; load has already done so on success.
func (d *directBoot) close() {
	for _, f := range []*sizedFile{d.kernel, d.initrd} {
		if f != nil {
			_ = f.Close()
		}
	}
	d.kernel, d.initrd = nil, nil
}

func (*directBoot) watchConsole(*consoleWatch, *Machine) {}

// resetStub is the real-mode code at the reset vector: pulse the reset line
// through the keyboard controller, as a PC BIOS's reboot does.
const resetStub = "\xb0\xfe" + // mov al, 0xfe (pulse reset line)
	"\xe6\x64" + // out 0x64, al
	"\xf4" + // hlt
	"\xeb\xfd" // jmp back to hlt

func (d *directBoot) load(m *Machine) (boot.Entry, error) {
	if err := mptable.Write(m.mem, m.cfg.CPUs); err != nil {
		return boot.Entry{}, fmt.Errorf("write MP table: %w", err)
	}
	if _, err := m.mem.WriteAt([]byte(resetStub), layout.ResetVector); err != nil {
		return boot.Entry{}, fmt.Errorf("write reset vector stub: %w", err)
	}
	pciDevs, pciTables, err := pciACPI()
	if err != nil {
		return boot.Entry{}, fmt.Errorf("describe the PCI host bridge: %w", err)
	}
	pm, err := m.directPM()
	if err != nil {
		return boot.Entry{}, err
	}
	tables, err := acpi.Build(acpi.Config{CPUs: m.cfg.CPUs, Devices: m.acpiDevices(pciDevs), Extra: pciTables, PM: pm})
	if err != nil {
		return boot.Entry{}, fmt.Errorf("build ACPI tables: %w", err)
	}
	rsdp, err := tables.WriteTo(m.mem, layout.ACPITables, layout.ACPITablesEnd)
	if err != nil {
		return boot.Entry{}, fmt.Errorf("write ACPI tables: %w", err)
	}
	if pm != nil {
		// Where WriteTo put the FACS: the OS leaves its S3 waking vector there.
		addrs, err := tables.Place(layout.ACPITables, layout.ACPITablesEnd)
		if err != nil {
			return boot.Entry{}, fmt.Errorf("place ACPI tables: %w", err)
		}
		m.facs = addrs["FACS"]
	}
	// fw_cfg as with firmware: guests and test suites size themselves from
	// it (kvm-unit-tests reads the CPU count there).
	cfg, err := platformFWCfg(m.mem, m.cfg.CPUs, m.cfg.Memory, tables)
	if err != nil {
		return boot.Entry{}, err
	}
	if err := m.registerFWCfg(cfg); err != nil {
		return boot.Entry{}, err
	}
	if p := m.cfg.Program; p != nil {
		if _, err := m.mem.WriteAt(p.Code, int64(p.Addr)); err != nil {
			return boot.Entry{}, fmt.Errorf("load program at %#x: %w", p.Addr, err)
		}
		return p.Entry, nil
	}
	if d.kernel == nil {
		return boot.Entry{}, fmt.Errorf("%w: no kernel, program or firmware to boot", ErrInvalidConfig)
	}
	var initrd boot.Source
	if d.initrd != nil {
		initrd = d.initrd
	}
	entry, err := loader.Load(d.kernel, m.cfg.Kernel, initrd, m.cfg.Cmdline, m.mem, m.cfg.Memory, rsdp)
	d.close()
	if err != nil {
		return boot.Entry{}, fmt.Errorf("load kernel %s: %w", m.cfg.Kernel, err)
	}
	m.log.Debug("kernel loaded", "mode", entry.Mode, "entry", fmt.Sprintf("%#x", entry.IP))
	return entry, nil
}
