package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/devices/ahci"
	"github.com/vmmdev/vmm/devices/cmos"
	"github.com/vmmdev/vmm/devices/debugcon"
	"github.com/vmmdev/vmm/devices/fwcfg"
	"github.com/vmmdev/vmm/devices/nvme"
	"github.com/vmmdev/vmm/devices/pflash"
	"github.com/vmmdev/vmm/devices/piix"
	"github.com/vmmdev/vmm/devices/porta"
	"github.com/vmmdev/vmm/devices/rom"
	"github.com/vmmdev/vmm/devices/shadow"
	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// SeaBIOSPath is Debian's SeaBIOS image (package seabios), what
// `--firmware seabios` names: the 256 KiB build QEMU's pc machines use,
// since only it has the NVMe driver (Debian's 128 KiB bios.bin lacks it).
const SeaBIOSPath = "/usr/share/seabios/bios-256k.bin"

// FirmwarePath resolves the --firmware argument to the image it names:
// "seabios" is Debian's SeaBIOS, "ovmf[,...]" OVMF's code, anything else a
// path.
func FirmwarePath(arg string) string {
	s, err := ParseFirmware(arg)
	if err != nil {
		return OVMFCodePath
	}
	return s.Path
}

// Firmware images are whole 64 KiB blocks, from 64 KiB (the BIOS segment)
// to layout.FirmwareMaxSize.
const firmwareAlign = 64 << 10

// noBootMessage is what SeaBIOS prints when nothing could be booted.
const noBootMessage = "No bootable device"

// KVM memory slots of firmware mode. Slots 0 and 1 are RAM below the hole
// and above 4 GiB as in direct boot, except that slot 0 stops at the VGA
// window; the area from there to 1 MiB is the chipset's (devices/shadow).
const (
	slotLowRAM  = 0
	slotHighRAM = 2 // RAM from 1 MiB to the hole
	slotROM     = 3 // the image below 4 GiB
	slotShadow  = 4 // the first of shadow.Segments
	// slotVars is OVMF's variable store, below the code in slotROM.
	slotVars = slotShadow + shadow.Segments
)

// firmwareBoot starts the guest at the reset vector of a firmware image
// mapped read-only below 4 GiB and aliased below 1 MiB, with the PAM-driven
// shadow RAM, fw_cfg and the firmware's debug port.
//
// OVMF's code is such an image too, but as CFI flash (devices/pflash): in
// read-array mode each chip is a read-only slot, and a command write
// unmaps it until the chip is back in read-array mode (QEMU's ROM-device
// mode); the variable store is a second, writable chip directly below.
type firmwareBoot struct {
	spec  FirmwareSpec
	path  string
	image *sizedFile // opened in New, before KVM is touched
	rom   []byte     // read-only host mapping of the image, from mapMemory

	vars      *ovmfVars // OVMF: the variable store
	varsMem   []byte    // its host mapping, from mapMemory
	code, nv  *pflash.Chip
	flashBase uint64 // where the variable store starts (OVMF)
}

// readFirmware reads and checks the --firmware image (and OVMF's variable
// store).
func readFirmware(cfg Config) (*firmwareBoot, error) {
	spec, err := ParseFirmware(cfg.Firmware)
	if err != nil {
		return nil, err
	}
	path := spec.Path
	img, err := openSized("--firmware", path, layout.FirmwareMaxSize)
	if err != nil {
		return nil, err
	}
	f := &firmwareBoot{spec: spec, path: path, image: img}
	if spec.OVMF {
		if err := checkFlashSize(path, img.Size()); err != nil {
			img.Close()
			return nil, err
		}
		if f.vars, err = openVars(spec); err != nil {
			img.Close()
			return nil, err
		}
		return f, nil
	}
	if n := img.Size(); n < firmwareAlign || n%firmwareAlign != 0 {
		img.Close()
		return nil, invalid("--firmware %s: %d bytes; a firmware image is a multiple of 64 KiB", path, n)
	}
	return f, nil
}

// validateFirmware checks the --firmware image's size (it is read in New).
func (c *Config) validateFirmware() error {
	spec, err := ParseFirmware(c.Firmware)
	if err != nil {
		return err
	}
	if c.Memory < 2<<20 {
		return invalid("--memory: firmware needs at least 2 MiB of RAM")
	}
	if spec.OVMF {
		return validateOVMF(spec)
	}
	path := spec.Path
	size, err := checkFile("--firmware", path, layout.FirmwareMaxSize)
	if err != nil {
		if c.Firmware == "seabios" {
			return invalid("--firmware seabios: %s is missing or unreadable (install Debian's seabios package)", path)
		}
		return err
	}
	if size < firmwareAlign || size%firmwareAlign != 0 {
		return invalid("--firmware %s: %d bytes; a firmware image is a multiple of 64 KiB", path, size)
	}
	return nil
}

func (*firmwareBoot) fromReset() bool { return true }

// setupCMOS: firmware also reads the PC equipment, CPU count and boot
// order bytes.
func (*firmwareBoot) setupCMOS(c *cmos.CMOS, cpus int) { c.SetPC(cpus) }

// kvmSlots maps guest memory through KVM memory slots (shadow.SlotMapper).
type kvmSlots struct{ vm *kvm.VM }

func (k kvmSlots) MapSlot(slot uint32, gpa uint64, host []byte, readOnly bool) error {
	r := kvm.UserspaceMemoryRegion{Slot: slot, GuestPhysAddr: gpa}
	if host != nil {
		r.MemorySize, r.UserspaceAddr = uint64(len(host)), uint64(uintptrOf(host))
		if readOnly {
			r.Flags = kvm.MemReadonly
		}
	}
	if err := k.vm.SetUserMemoryRegion(r); err != nil {
		return fmt.Errorf("map [%#x, %#x): %w", gpa, gpa+r.MemorySize, err)
	}
	return nil
}

// mapMemory maps RAM around the BIOS area, the image below 4 GiB and, at
// reset, its alias below 1 MiB.
func (f *firmwareBoot) mapMemory(m *Machine) error {
	if n, err := m.sys.CheckExtension(kvm.CapReadonlyMem); err != nil || n == 0 {
		return fmt.Errorf("--firmware needs KVM read-only memory slots (KVM_CAP_READONLY_MEM), which this host lacks")
	}
	rom, err := readOnlyCopy(f.image)
	_ = f.image.Close()
	f.image = nil
	if err != nil {
		return fmt.Errorf("map firmware image %s: %w", f.path, err)
	}
	f.rom = rom
	slots := kvmSlots{m.vm}
	regions := m.mem.Regions()
	low := regions[0]
	lowHost, err := m.mem.Slice(0, layout.LegacyVGA)
	if err != nil {
		return err
	}
	if err := slots.MapSlot(slotLowRAM, 0, lowHost, false); err != nil {
		return err
	}
	if low.Size > layout.HighMemory {
		host, err := m.mem.Slice(layout.HighMemory, low.Size-layout.HighMemory)
		if err != nil {
			return err
		}
		if err := slots.MapSlot(slotHighRAM, layout.HighMemory, host, false); err != nil {
			return err
		}
	}
	if len(regions) > 1 {
		if err := slots.MapSlot(1, regions[1].Start, m.mem.host(1), false); err != nil {
			return err
		}
	}
	if err := slots.MapSlot(slotROM, layout.FirmwareTop-uint64(len(rom)), rom, true); err != nil {
		return err
	}
	if f.vars != nil {
		return f.mapVars(m)
	}
	return nil
}

// mapVars maps OVMF's variable store directly below the code (OVMF is
// linked as one flash device, store first) and makes both flash chips.
func (f *firmwareBoot) mapVars(m *Machine) error {
	mem, err := unix.Mmap(-1, 0, len(f.vars.init), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("map the OVMF variable store: %w", err)
	}
	copy(mem, f.vars.init)
	f.varsMem, f.vars.init = mem, nil
	codeBase := layout.FirmwareTop - uint64(len(f.rom))
	f.flashBase = codeBase - uint64(len(mem))
	if f.code, err = pflash.New("ovmf-code", f.rom, nil, m.log); err != nil {
		return err
	}
	if f.nv, err = pflash.New("ovmf-vars", mem, f.vars.store(), m.log); err != nil {
		return err
	}
	slots := kvmSlots{m.vm}
	for _, c := range []struct {
		chip *pflash.Chip
		slot uint32
		base uint64
	}{{f.code, slotROM, codeBase}, {f.nv, slotVars, f.flashBase}} {
		c.chip.SetModeHook(func(readArray bool) {
			host := []byte(nil)
			if readArray {
				host = c.chip.Data()
			}
			if err := slots.MapSlot(c.slot, c.base, host, true); err != nil {
				m.log.Warn("pflash: remap", "err", err)
			}
		})
	}
	return slots.MapSlot(slotVars, f.flashBase, mem, true)
}

// readOnlyCopy reads img into a fresh mapping (no copy on the heap) that is
// then made read-only.
func readOnlyCopy(img *sizedFile) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, int(img.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	if n, err := img.ReadAt(b, 0); n < len(b) {
		_ = unix.Munmap(b)
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if err := unix.Mprotect(b, unix.PROT_READ); err != nil {
		_ = unix.Munmap(b)
		return nil, err
	}
	return b, nil
}

// load registers the firmware-mode devices and fills fw_cfg. Unlike direct
// boot it writes no MP table, reset stub or ACPI tables into the BIOS area:
// the firmware builds those from what fw_cfg gives.
func (f *firmwareBoot) load(m *Machine) (boot.Entry, error) {
	sh := shadow.New(kvmSlots{m.vm}, m.mem, f.rom, slotShadow, m.log)
	// At reset every PAM register is 0: the segments read from ROM (or the
	// bus) and drop writes, so the CPU's first fetches below 1 MiB see the
	// image, as on an i440FX.
	if err := sh.Map(); err != nil {
		return boot.Entry{}, err
	}
	if err := m.mmio.Register(shadow.AreaBase, shadow.AreaSize, sh.Area(), "legacy-vga+shadow"); err != nil {
		return boot.Entry{}, fmt.Errorf("register the BIOS area: %w", err)
	}
	if f.code != nil {
		for _, c := range []struct {
			chip *pflash.Chip
			base uint64
		}{{f.nv, f.flashBase}, {f.code, f.flashBase + uint64(f.nv.Size())}} {
			if err := m.mmio.Register(c.base, uint64(c.chip.Size()), c.chip, "pflash-"+c.chip.Name()); err != nil {
				return boot.Entry{}, fmt.Errorf("register OVMF flash: %w", err)
			}
		}
	} else if err := m.mmio.Register(layout.FirmwareTop-uint64(len(f.rom)), uint64(len(f.rom)), rom.ROM{}, "firmware-rom"); err != nil {
		return boot.Entry{}, fmt.Errorf("register the firmware ROM: %w", err)
	}
	if err := m.pci.bus.HostBridge().AddRegisters(shadow.PAMRegister, make([]byte, shadow.PAMRegisters),
		shadow.PAMWritable(), sh.PAMWritten); err != nil {
		return boot.Entry{}, fmt.Errorf("i440FX PAM registers: %w", err)
	}
	// SeaBIOS's debug log: kept in vmm's log, and watched for the boot
	// failure (see firmwareLog).
	if err := m.pio.Register(layout.PortFirmwareDebug, debugcon.Size, debugcon.New(m.firmwareLog()), "firmware-debug"); err != nil {
		return boot.Entry{}, fmt.Errorf("register the firmware debug port: %w", err)
	}
	if err := m.pio.Register(layout.PortSystemControlA, porta.Size, porta.New(func() {
		m.latch.Stop(StopReason{Kind: StopReset, Source: "port 0x92", Detail: "fast reset"})
	}), "port-a"); err != nil {
		return boot.Entry{}, fmt.Errorf("register system control port A: %w", err)
	}
	if !f.spec.OVMF {
		// SeaBIOS resumes from S3 itself (resumeBootCPU); OVMF would need
		// its S3 boot script, which vmm's fw_cfg does not ask it to keep.
		m.sleep = newSleeper(m.cfg.CPUs, time.Now)
	}
	cfg, err := m.firmwareConfig(f.pmBase())
	if err != nil {
		return boot.Entry{}, err
	}
	if err := m.registerFWCfg(cfg); err != nil {
		return boot.Entry{}, err
	}
	return boot.Entry{}, nil
}

// Where the chipset functions sit, as on QEMU's i440FX machine.
const (
	piixSlot  = 1
	piixPMFn  = 3
	piixISAFn = 0
)

// chipset puts the PIIX3 ISA bridge (00:01.0) and the PIIX4 PM function
// (00:01.3) on the bus, before any other device takes slot 1. Direct boot
// has no use for them: its ACPI tables are hardware-reduced and nothing
// there programs a PIIX.
func (*firmwareBoot) chipset(m *Machine) error {
	isa, err := piix.ISABridge(m.log)
	if err != nil {
		return fmt.Errorf("PIIX3 ISA bridge: %w", err)
	}
	if err := m.pci.bus.AddAt(piixSlot, isa); err != nil {
		return fmt.Errorf("PIIX3 ISA bridge: %w", err)
	}
	pm, err := m.newPM()
	if err != nil {
		return err
	}
	if err := m.pci.bus.AddFunction(piixSlot, piixPMFn, pm.Function()); err != nil {
		return fmt.Errorf("PIIX4 PM: %w", err)
	}
	return nil
}

// firmwareLog is where the firmware's debug port output goes: each line to
// vmm's log, and SeaBIOS's "No bootable device." ends the VM with
// StopNoBoot. Watching the debug port rather than waiting for the firmware's
// retry is deterministic: SeaBIOS prints the message once, before its
// boot-fail wait (etc/boot-fail-wait, set to 0 here so that a missed message
// still ends in a reset rather than a hang), and only firmware writes there
// (a hostile guest OS doing so only ends its own VM). The console is not
// watched: a guest OS may print the phrase there for its own reasons.
func (m *Machine) firmwareLog() io.Writer {
	w := newConsoleWatch(&lineLogger{log: m.log})
	w.On(noBootMessage, m.noBoot("firmware debug port"))
	return w
}

func (m *Machine) noBoot(source string) func(string) {
	return func(line string) {
		m.latch.Stop(StopReason{Kind: StopNoBoot, Source: source, Detail: strings.TrimSpace(line)})
	}
}

// lineLogger logs what it is given at debug level, a line at a time
// (bounded, so a guest writing no newlines cannot grow it).
type lineLogger struct {
	log *slog.Logger
	buf []byte
}

const maxLogLine = 512

func (l *lineLogger) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != '\n' && len(l.buf) < maxLogLine {
			l.buf = append(l.buf, c)
			continue
		}
		l.log.Debug("firmware", "out", strings.TrimRight(string(l.buf), "\r"))
		l.buf = l.buf[:0]
	}
	return len(p), nil
}

// Items SeaBIOS reads beyond the numbered ones.
const (
	fileBootOrder      = "bootorder"
	fileBootFailWait   = "etc/boot-fail-wait"
	fileShowBootMenu   = "etc/show-boot-menu"
	fileSerconPort     = "etc/sercon-port"
	e820EntrySize      = 20
	fwcfgNoGraphicTrue = 1
)

// firmwareConfig is the platform's fw_cfg (platformFWCfg) with firmware
// mode's PC ACPI tables and what only firmware reads: boot order, boot menu,
// console.
func (m *Machine) firmwareConfig(pmBase uint16) (*fwcfg.Device, error) {
	pciDevs, mcfg, err := acpi.PCIHostDevices(firmwarePCIHost())
	if err != nil {
		return nil, fmt.Errorf("describe the PCI host bridge: %w", err)
	}
	// A PC FADT (PM block, FACS), not a hardware-reduced one: SeaBIOS
	// leaves the 8259 programmed and the PIT ticking, and only an OS that
	// knows there is a PIC masks it.
	tables, err := acpi.Build(acpi.Config{CPUs: m.cfg.CPUs, Devices: m.acpiDevices(pciDevs), Extra: []acpi.SDT{mcfg},
		PM: &acpi.PMBlock{Base: pmBase, S3: m.s3Offered()}})
	if err != nil {
		return nil, fmt.Errorf("build ACPI tables: %w", err)
	}
	d, err := platformFWCfg(m.mem, m.cfg.CPUs, m.cfg.Memory, tables)
	if err != nil {
		return nil, err
	}
	for _, err := range []error{
		d.AddUint16(fwcfg.NoGraphic, fwcfgNoGraphicTrue),
		d.AddUint16(fwcfg.BootMenu, 0),
		d.AddFile(fileBootOrder, m.bootOrder(), false),
		d.AddFile(fileBootFailWait, binary.LittleEndian.AppendUint32(nil, 0), false),
		d.AddFile(fileShowBootMenu, binary.LittleEndian.AppendUint64(nil, 0), false),
		// Without a display, SeaBIOS's text output (its banner, boot
		// messages, the boot-fail line) goes to COM1.
		d.AddFile(fileSerconPort, binary.LittleEndian.AppendUint16(nil, layout.PortCOM1), false),
	} {
		if err != nil {
			return nil, fmt.Errorf("fw_cfg: %w", err)
		}
	}
	return d, nil
}

// virtioBlkID is a virtio-blk function's vendor and device ID (modern:
// 0x1040 + device type 2), as configuration space reads it.
const virtioBlkID = 0x1042<<16 | 0x1af4

// nvmeID is the NVMe controller's vendor and device ID.
const nvmeID = nvme.DeviceID<<16 | nvme.VendorID

// ahciID is the AHCI controller's vendor and device ID.
const ahciID = ahci.DeviceID<<16 | ahci.VendorID

// bootOrder is fw_cfg's "bootorder": the virtio-blk, NVMe and AHCI drives in slot order
// (SeaBIOS matches "/pci@i0cf8/*@SLOT" against these lines, so the device
// name is QEMU's, not significant), then HALT: firmware tries nothing that
// is not listed (no floppy, no network), so a machine without a bootable
// disk reaches "No bootable device" at once.
func (m *Machine) bootOrder() []byte {
	var out []byte
	id := make([]byte, 4)
	for slot := 0; slot < 32; slot++ {
		m.pci.bus.ReadConfig(0, uint64(slot), 0, 0, id)
		switch binary.LittleEndian.Uint32(id) {
		case virtioBlkID:
			out = fmt.Appendf(out, "/pci@i0cf8/scsi@%x\n", slot)
		case nvmeID:
			// OVMF turns the namespace node into an NVMe() device path.
			out = fmt.Appendf(out, "/pci@i0cf8/pci1b36,10@%x/namespace@1,0\n", slot)
		case ahciID:
			// One line per port, CD-ROMs too (OVMF drops boot options
			// no line matches): SeaBIOS's drive@PORT/disk@0, which OVMF
			// turns into Sata(PORT,0xFFFF,0).
			if m.pci.ahci != nil {
				for port := range m.pci.ahci.drives {
					out = fmt.Appendf(out, "/pci@i0cf8/pci8086,2922@%x/drive@%x/disk@0\n", slot, port)
				}
			}
		}
	}
	// NUL-terminated: OVMF rejects the whole file without it, SeaBIOS
	// reads up to it.
	return append(out, "HALT\n\x00"...)
}

// pmBase is where the firmware puts the PIIX4 PM block (it writes PMBA
// itself; the PM function follows), which the FADT must name: OVMF uses
// 0xb000 (PlatformPei), SeaBIOS 0x600.
func (f *firmwareBoot) pmBase() uint16 {
	if f.spec.OVMF {
		return layout.PortPMBaseOVMF
	}
	return layout.PortPMBase
}

// firmwarePCIHost is the host bridge as the ACPI tables describe it in
// firmware mode. The firmware, not vmm, places the BARs: SeaBIOS packs the
// 32-bit ones downward from 0xfec00000 (below the IOAPIC), so the window
// the root bridge offers runs from the end of the ECAM area up to there,
// and the OS finds every BAR inside it.
func firmwarePCIHost() acpi.PCIHost {
	h := pciHost()
	h.MMIOBase, h.MMIOEnd = layout.PCIECAMBase+layout.PCIECAMSize, layout.IOAPICBase
	return h
}

// close unmaps the image and the variable store and closes its file.
func (f *firmwareBoot) close() {
	if f.image != nil {
		_ = f.image.Close()
		f.image = nil
	}
	for _, b := range []*[]byte{&f.rom, &f.varsMem} {
		if *b != nil {
			_ = unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(*b)), uintptr(len(*b)))
			*b = nil
		}
	}
	if f.vars != nil {
		f.vars.close()
	}
}
