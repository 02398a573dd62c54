package vmm

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/vmmdev/vmm/devices/pci"
	"github.com/vmmdev/vmm/devices/piix"
	"github.com/vmmdev/vmm/devices/testdev"
	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/balloon"
	"github.com/vmmdev/vmm/devices/virtio/console"
	virtiopci "github.com/vmmdev/vmm/devices/virtio/pci"
	"github.com/vmmdev/vmm/devices/virtio/rng"
	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/firmware/acpi/aml"
	"github.com/vmmdev/vmm/layout"
)

// pciPlatform is the PCI side of the machine: bus 0 behind an i440FX host
// bridge, and the virtio functions on it.
type pciPlatform struct {
	bus        *pci.Bus
	transports []*virtiopci.Transport
	nextBAR    uint64 // next free address in the BAR window
	nextIO     uint64 // next free port in the I/O BAR window
	console    *console.Device
	backends   []virtioBackend // disks and NICs, closed after their transports
	nvme       []nvmeDisk
	ahci       *ahciController
	testdev    *testdev.PCITestdev // --testdev's pci-testdev
}

// pciHost is the host bridge as the ACPI tables describe it.
func pciHost() acpi.PCIHost {
	return acpi.PCIHost{ECAMBase: layout.PCIECAMBase, StartBus: 0, EndBus: 0, ConfigPort: layout.PortPCIConfig,
		MMIOBase: layout.PCIMMIOBase, MMIOEnd: layout.PCIMMIOEnd}
}

// pciACPI gives the DSDT devices and the MCFG for the PCI host bridge.
func pciACPI() ([]aml.Term, []acpi.SDT, error) {
	devs, mcfg, err := acpi.PCIHostDevices(pciHost())
	if err != nil {
		return nil, nil, err
	}
	return devs, []acpi.SDT{mcfg}, nil
}

// setupPCI creates the bus, its configuration mechanisms, and the virtio
// devices the configuration asks for (rng, balloon, console).
func (m *Machine) setupPCI() error {
	b, err := pci.NewBus(m.mmio, m.pio, m.log)
	if err != nil {
		return fmt.Errorf("PCI bus: %w", err)
	}
	m.pci = &pciPlatform{bus: b, nextBAR: layout.PCIMMIOBase, nextIO: layout.PCIIOBase}
	ports := b.ConfigPorts()
	// 0xCF9 resets, as on any PC (OVMF's ResetSystem, Linux's reboot=pci).
	ports.SetPort1(piix.NewResetControl(func() {
		m.latch.Stop(StopReason{Kind: StopReset, Source: "port 0xcf9", Detail: "reset control register"})
	}))
	if err := m.pio.Register(layout.PortPCIConfig, pci.ConfigPortsSize, ports, "pci-config"); err != nil {
		return fmt.Errorf("register PCI configuration ports: %w", err)
	}
	if err := m.mmio.Register(layout.PCIECAMBase, layout.PCIECAMSize, b.ECAM(), "pci-ecam"); err != nil {
		return fmt.Errorf("register PCI ECAM window: %w", err)
	}
	if err := m.boot.chipset(m); err != nil {
		return err
	}
	if m.cfg.RNG {
		if err := m.addVirtio("virtio-rng", rng.New(nil)); err != nil {
			return err
		}
	}
	if m.cfg.Balloon {
		m.balloon = balloon.New(balloon.Options{BeforeDiscard: func() { m.guestPeak.sample() }})
		if err := m.addVirtio("virtio-balloon", m.balloon); err != nil {
			return err
		}
	}
	if m.cfg.VirtioConsole {
		m.pci.console = console.New(m.consoleWriter())
		if err := m.addVirtio("virtio-console", m.pci.console); err != nil {
			return err
		}
	}
	if err := m.addDisksAndNICs(); err != nil {
		return err
	}
	if err := m.addNVMeDisks(); err != nil {
		return err
	}
	return m.addAHCI()
}

// addVirtio puts dev on the PCI bus behind a virtio PCI transport and places
// its BARs, as firmware would, so the OS finds them assigned and decoding.
func (m *Machine) addVirtio(name string, dev virtio.Device) error {
	t, err := virtiopci.New(dev, virtiopci.Config{Name: name, Mem: m.mem, MSI: m.routes.newTable(name),
		Events: ioEvents{vm: m.vm, log: m.log}, Log: m.log})
	if err != nil {
		return err
	}
	m.pci.transports = append(m.pci.transports, t)
	slot, err := m.pci.bus.Add(t.Function())
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := m.placeBARs(t.Function()); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	m.log.Debug("PCI device", "name", name, "slot", slot)
	return nil
}

// placeBARs assigns each BAR of f the next naturally aligned range of its
// window (memory or I/O), sizing it the way firmware does (write all ones,
// read the mask back), and turns on decoding and bus mastering.
func (m *Machine) placeBARs(f *pci.Function) error {
	rd := func(reg uint64) uint32 {
		v := make([]byte, 4)
		f.ReadConfig(reg, v)
		return binary.LittleEndian.Uint32(v)
	}
	wr := func(reg uint64, v uint32) { f.WriteConfig(reg, binary.LittleEndian.AppendUint32(nil, v)) }
	cmd := byte(pci.CommandMemory | pci.CommandBusMaster)
	for i := 0; i < 6; i++ {
		reg := uint64(0x10 + 4*i)
		wr(reg, 0xffffffff)
		lo := rd(reg)
		if lo == 0 {
			continue
		}
		next, end := &m.pci.nextBAR, uint64(layout.PCIMMIOEnd)
		mask := uint64(lo&^0xf) | 0xffffffff00000000
		is64 := lo&0x7 == 0x4
		switch {
		case lo&1 != 0: // I/O: 16-bit ports
			next, end = &m.pci.nextIO, layout.PCIIOEnd
			mask = uint64(lo&^0x3) | 0xffffffffffff0000
			cmd |= pci.CommandIO
		case is64:
			wr(reg+4, 0xffffffff)
			mask = uint64(lo&^0xf) | uint64(rd(reg+4))<<32
		}
		size := ^mask + 1
		at := (*next + size - 1) &^ (size - 1)
		if size == 0 || at+size > end {
			return fmt.Errorf("BAR %d of %#x bytes does not fit the PCI window", i, size)
		}
		*next = at + size
		wr(reg, uint32(at))
		if is64 {
			i++
			wr(reg+4, 0)
		}
	}
	f.WriteConfig(0x04, []byte{cmd, 0})
	return nil
}

// closePCI resets every virtio device (stopping its goroutines) and removes
// their ioeventfds.
func (m *Machine) closePCI() {
	if m.pci == nil {
		return
	}
	for _, t := range m.pci.transports {
		t.Close()
	}
	if err := closeVirtioBackends(m.pci.backends); err != nil {
		m.log.Warn("closing disks and taps", "err", err)
	}
	if err := closeNVMe(m.pci.nvme); err != nil {
		m.log.Warn("closing NVMe disks", "err", err)
	}
	if err := m.pci.ahci.close(); err != nil {
		m.log.Warn("closing AHCI disks", "err", err)
	}
	if m.pci.testdev != nil {
		m.pci.testdev.Close()
	}
	m.pci = nil
}

// consoleWriter is where a console device's output goes: the console
// destination, counted, matched against --expect/--fail, and watched for a
// kernel panic. Each device gets its own line buffer.
func (m *Machine) consoleWriter() io.Writer {
	out := newConsoleWatch(countingWriter{m, m.cfg.ConsoleOut})
	out.On("Kernel panic - not syncing", m.consolePanic)
	m.boot.watchConsole(out, m)
	return out
}

// consoleInput hands host input to the guest's console device, blocking
// until it is taken or the VM stops; false means the VM stopped.
func (m *Machine) consoleInput(p []byte) bool {
	if m.pci != nil && m.pci.console != nil {
		return m.pci.console.Input(p, m.latch.Done())
	}
	return m.uart.InputBlocking(p, m.latch.Done())
}
