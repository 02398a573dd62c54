package vmm

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/cmos"
	"github.com/vmmdev/vmm/devices/debugcon"
	"github.com/vmmdev/vmm/devices/fwcfg"
	"github.com/vmmdev/vmm/devices/nvme"
	"github.com/vmmdev/vmm/devices/piix"
	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/firmware/e820"
	"github.com/vmmdev/vmm/firmware/smbios"
	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// SeaBIOSPath is Debian's SeaBIOS image (package seabios), what
// `--firmware seabios` names.
const SeaBIOSPath = "/usr/share/seabios/bios.bin"

// FirmwarePath resolves the --firmware argument: "seabios" is Debian's
// SeaBIOS, anything else a path.
func FirmwarePath(arg string) string {
	if arg == "seabios" {
		return SeaBIOSPath
	}
	return arg
}

// Firmware images are whole 64 KiB blocks, from 64 KiB (the BIOS segment)
// to layout.FirmwareMaxSize.
const firmwareAlign = 64 << 10

// noBootMessage is what SeaBIOS prints when nothing could be booted.
const noBootMessage = "No bootable device"

// KVM memory slots of firmware mode. Slots 0 and 1 are RAM below the hole
// and above 4 GiB as in direct boot, except that slot 0 stops at the VGA
// window; the area from there to 1 MiB is the chipset's.
const (
	slotLowRAM    = 0
	slotHighRAM   = 2 // RAM from 1 MiB to the hole
	slotROM       = 3 // the image below 4 GiB
	slotShadow    = 4 // one per shadow segment
	shadowSegs    = 13
	pamRegister   = 0x59 // PAM0; PAM1-PAM6 follow
	pamRegisters  = 7
	pamReadRAM    = 1 // per nibble: reads come from RAM (else ROM or the bus)
	pamWriteRAM   = 2 // writes go to RAM (else dropped)
	smallSegSize  = 16 << 10
	biosSegSize   = 64 << 10
	biosSegStart  = 0xf0000
	vgaWindowSize = layout.LegacyVGAEnd - layout.LegacyVGA
)

// validateFirmware checks the --firmware image's size (it is read in New).
func (c *Config) validateFirmware() error {
	path := FirmwarePath(c.Firmware)
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
	if c.Memory < 2<<20 {
		return invalid("--memory: firmware needs at least 2 MiB of RAM")
	}
	return nil
}

// shadowSeg is one PAM-controlled segment of 0xc0000-0xfffff.
type shadowSeg struct {
	start, size uint64
	reg         int  // index into the PAM registers
	shift       uint // 0: low nibble, 4: high nibble
	state       byte // pamReadRAM | pamWriteRAM
	mapped      bool // a KVM slot covers it
}

// firmwarePlatform is what firmware mode adds to the machine: the image
// mapped read-only below 4 GiB and aliased below 1 MiB, the PAM-driven
// shadow RAM, the VGA window answered harmlessly, fw_cfg and the debug port.
type firmwarePlatform struct {
	vm  *kvm.VM
	mem *Memory
	log *slog.Logger
	rom []byte // read-only host mapping of the image

	mu   sync.Mutex
	segs [shadowSegs]shadowSeg
	cfg  *fwcfg.Device
}

// mapFirmwareMemory replaces mapMemory in firmware mode.
func (m *Machine) mapFirmwareMemory() error {
	path := FirmwarePath(m.cfg.Firmware)
	img, err := readFile("--firmware", path, layout.FirmwareMaxSize)
	if err != nil {
		return err
	}
	if len(img) < firmwareAlign || len(img)%firmwareAlign != 0 {
		return invalid("--firmware %s: %d bytes; a firmware image is a multiple of 64 KiB", path, len(img))
	}
	if n, err := m.sys.CheckExtension(kvm.CapReadonlyMem); err != nil || n == 0 {
		return fmt.Errorf("--firmware needs KVM read-only memory slots (KVM_CAP_READONLY_MEM), which this host lacks")
	}
	rom, err := readOnlyCopy(img)
	if err != nil {
		return fmt.Errorf("map firmware image: %w", err)
	}
	fw := &firmwarePlatform{vm: m.vm, mem: m.mem, log: m.log, rom: rom, segs: shadowLayout()}
	m.fw = fw
	regions := m.mem.Regions()
	low := regions[0]
	set := func(slot uint32, gpa, size uint64, host []byte, flags uint32) error {
		err := m.vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{Slot: slot, Flags: flags,
			GuestPhysAddr: gpa, MemorySize: size, UserspaceAddr: uint64(uintptrOf(host))})
		if err != nil {
			return fmt.Errorf("map [%#x, %#x): %w", gpa, gpa+size, err)
		}
		return nil
	}
	lowHost, err := m.mem.Slice(0, layout.LegacyVGA)
	if err != nil {
		return err
	}
	if err := set(slotLowRAM, 0, layout.LegacyVGA, lowHost, 0); err != nil {
		return err
	}
	if low.Size > layout.HighMemory {
		host, err := m.mem.Slice(layout.HighMemory, low.Size-layout.HighMemory)
		if err != nil {
			return err
		}
		if err := set(slotHighRAM, layout.HighMemory, low.Size-layout.HighMemory, host, 0); err != nil {
			return err
		}
	}
	if len(regions) > 1 {
		r := regions[1]
		if err := set(1, r.Start, r.Size, m.mem.host(1), 0); err != nil {
			return err
		}
	}
	if err := set(slotROM, layout.FirmwareTop-uint64(len(rom)), uint64(len(rom)), rom, kvm.MemReadonly); err != nil {
		return err
	}
	// At reset every PAM register is 0: the segments read from ROM (or the
	// bus) and drop writes, so the CPU's first fetches below 1 MiB see the
	// image, as on an i440FX.
	for i := range fw.segs {
		if err := fw.remapSegment(i); err != nil {
			return err
		}
	}
	return nil
}

// shadowLayout is the i440FX's PAM map: PAM1-PAM6 each control two 16 KiB
// segments of 0xc0000-0xeffff (low nibble first), PAM0's high nibble the
// 64 KiB BIOS segment at 0xf0000.
func shadowLayout() [shadowSegs]shadowSeg {
	var segs [shadowSegs]shadowSeg
	for i := range segs {
		s := &segs[i]
		if i < 12 {
			s.start, s.size = layout.ShadowStart+uint64(i)*smallSegSize, smallSegSize
			s.reg, s.shift = 1+i/2, uint(4*(i%2))
		} else {
			s.start, s.size, s.reg, s.shift = biosSegStart, biosSegSize, 0, 4
		}
	}
	return segs
}

// decode is the segment's state under the PAM registers regs (PAM0-PAM6).
func (s *shadowSeg) decode(regs []byte) byte {
	return regs[s.reg] >> s.shift & (pamReadRAM | pamWriteRAM)
}

// readOnlyCopy puts img in a fresh mapping that is then made read-only.
func readOnlyCopy(img []byte) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, len(img), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	copy(b, img)
	if err := unix.Mprotect(b, unix.PROT_READ); err != nil {
		_ = unix.Munmap(b)
		return nil, err
	}
	return b, nil
}

// romAt is the image byte range aliased at [gpa, gpa+n), if the alias
// covers it: the image's last 128 KiB (or all of a smaller one) end at 1 MiB.
func (fw *firmwarePlatform) romAt(gpa, n uint64) ([]byte, bool) {
	alias := min(uint64(len(fw.rom)), layout.BIOSAliasSize)
	base := uint64(layout.ShadowEnd) - alias
	if gpa < base || gpa+n > layout.ShadowEnd {
		return nil, false
	}
	off := uint64(len(fw.rom)) - (layout.ShadowEnd - gpa)
	return fw.rom[off : off+n], true
}

// remapSegment makes KVM's view of segment i match its PAM state: RAM
// (read-only when writes are off) when reads come from RAM, else the ROM
// alias read-only, else nothing (the MMIO handler answers). Called with mu
// held or before the vCPUs run. The slot is deleted first because KVM
// cannot change a slot's address or read-only flag in place; accesses in
// between exit to the MMIO handler, which follows the new state.
func (fw *firmwarePlatform) remapSegment(i int) error {
	s := &fw.segs[i]
	slot := uint32(slotShadow + i)
	if s.mapped {
		if err := fw.vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{Slot: slot}); err != nil {
			return fmt.Errorf("unmap shadow segment %#x: %w", s.start, err)
		}
		s.mapped = false
	}
	var host []byte
	flags := kvm.MemReadonly
	if s.state&pamReadRAM != 0 {
		h, err := fw.mem.Slice(s.start, s.size)
		if err != nil {
			return err
		}
		host = h
		if s.state&pamWriteRAM != 0 {
			flags = 0
		}
	} else if r, ok := fw.romAt(s.start, s.size); ok {
		host = r
	}
	if host == nil {
		return nil
	}
	err := fw.vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{Slot: slot, Flags: flags,
		GuestPhysAddr: s.start, MemorySize: s.size, UserspaceAddr: uint64(uintptrOf(host))})
	if err != nil {
		return fmt.Errorf("map shadow segment %#x: %w", s.start, err)
	}
	s.mapped = true
	return nil
}

// pamWritten applies the PAM registers after a guest write.
func (fw *firmwarePlatform) pamWritten(regs []byte, _, _ int) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for i := range fw.segs {
		s := &fw.segs[i]
		st := s.decode(regs)
		if st == s.state {
			continue
		}
		s.state = st
		if err := fw.remapSegment(i); err != nil {
			// The MMIO handler still gives the segment its meaning.
			fw.log.Warn("firmware: shadow RAM remap", "err", err)
		}
	}
}

// segment returns the shadow segment holding gpa.
func (fw *firmwarePlatform) segment(gpa uint64) *shadowSeg {
	for i := range fw.segs {
		if s := &fw.segs[i]; gpa >= s.start && gpa < s.start+s.size {
			return s
		}
	}
	return nil
}

// lowArea answers MMIO exits in 0xa0000-0xfffff: the VGA window (no
// display: reads all ones, writes dropped), and shadow segments whose
// current KVM mapping cannot take the access (writes to ROM or read-only
// RAM, reads where neither RAM nor ROM decodes).
type lowArea struct{ fw *firmwarePlatform }

func (a lowArea) Read(off uint64, data []byte) {
	a.fw.mu.Lock()
	defer a.fw.mu.Unlock()
	for i := range data {
		data[i] = 0xff
		gpa := layout.LegacyVGA + off + uint64(i)
		s := a.fw.segment(gpa)
		switch {
		case s == nil:
		case s.state&pamReadRAM != 0:
			b := data[i : i+1]
			_, _ = a.fw.mem.ReadAt(b, int64(gpa))
		default:
			if r, ok := a.fw.romAt(gpa, 1); ok {
				data[i] = r[0]
			}
		}
	}
}

func (a lowArea) Write(off uint64, data []byte) {
	a.fw.mu.Lock()
	defer a.fw.mu.Unlock()
	for i := range data {
		gpa := layout.LegacyVGA + off + uint64(i)
		if s := a.fw.segment(gpa); s != nil && s.state&pamWriteRAM != 0 {
			_, _ = a.fw.mem.WriteAt(data[i:i+1], int64(gpa))
		}
	}
}

// romWrites drops writes to the image's mapping below 4 GiB (they exit to
// userspace because the slot is read-only), as flash in read mode would.
type romWrites struct{}

func (romWrites) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}
func (romWrites) Write(uint64, []byte) {}

// setupFirmware registers the firmware-mode devices and fills fw_cfg. It
// replaces loadGuest's direct-boot work: no MP table, reset stub or ACPI
// tables in the BIOS area; the firmware builds those from what fw_cfg gives.
func (m *Machine) setupFirmware() error {
	fw := m.fw
	if err := m.mmio.Register(layout.LegacyVGA, layout.ShadowEnd-layout.LegacyVGA, lowArea{fw}, "legacy-vga+shadow"); err != nil {
		return fmt.Errorf("register the BIOS area: %w", err)
	}
	if err := m.mmio.Register(layout.FirmwareTop-uint64(len(fw.rom)), uint64(len(fw.rom)), romWrites{}, "firmware-rom"); err != nil {
		return fmt.Errorf("register the firmware ROM: %w", err)
	}
	if err := m.pci.bus.HostBridge().AddRegisters(pamRegister, make([]byte, pamRegisters),
		[]byte{0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, fw.pamWritten); err != nil {
		return fmt.Errorf("i440FX PAM registers: %w", err)
	}
	// SeaBIOS's debug log: kept in vmm's log, and watched for the boot
	// failure (see firmwareLog).
	if err := m.pio.Register(layout.PortFirmwareDebug, debugcon.Size, debugcon.New(m.firmwareLog()), "firmware-debug"); err != nil {
		return fmt.Errorf("register the firmware debug port: %w", err)
	}
	if err := m.pio.Register(layout.PortSystemControlA, 1, portA{reset: func() {
		m.latch.Stop(StopReason{Kind: StopReset, Source: "port 0x92", Detail: "fast reset"})
	}}, "port-a"); err != nil {
		return fmt.Errorf("register system control port A: %w", err)
	}
	cfg, err := m.firmwareConfig()
	if err != nil {
		return err
	}
	fw.cfg = cfg
	if err := m.pio.Register(layout.PortFWCfg, fwcfg.Size, cfg, "fw_cfg"); err != nil {
		return fmt.Errorf("register fw_cfg: %w", err)
	}
	return nil
}

// portA is the PS/2 system control port A (0x92) firmware polls for the A20
// gate: A20 is always on under KVM, and bit 0 written resets the machine.
type portA struct{ reset func() }

const (
	portAReset = 1 << 0
	portAA20   = 1 << 1
)

func (p portA) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0
	}
	data[0] = portAA20
}

func (p portA) Write(_ uint64, data []byte) {
	if len(data) > 0 && data[0]&portAReset != 0 {
		p.reset()
	}
}

// Where the chipset functions sit, as on QEMU's i440FX machine.
const (
	piixSlot  = 1
	piixPMFn  = 3
	piixISAFn = 0
)

// addChipset puts the PIIX3 ISA bridge (00:01.0) and the PIIX4 PM function
// (00:01.3) on the bus in firmware mode, before any other device takes
// slot 1. Direct boot has no use for them: its ACPI tables are
// hardware-reduced and nothing there programs a PIIX.
func (m *Machine) addChipset() error {
	if m.cfg.Firmware == "" {
		return nil
	}
	isa, err := piix.ISABridge(m.log)
	if err != nil {
		return fmt.Errorf("PIIX3 ISA bridge: %w", err)
	}
	if err := m.pci.bus.AddAt(piixSlot, isa); err != nil {
		return fmt.Errorf("PIIX3 ISA bridge: %w", err)
	}
	pm, err := piix.NewPM(m.pio, time.Now, func(typ uint8) {
		if typ == layout.SleepTypeS5 {
			m.latch.Stop(StopReason{Kind: StopPowerOff, Source: "acpi", Detail: "S5 soft-off (PM1a control)"})
		}
	}, m.log)
	if err != nil {
		return fmt.Errorf("PIIX4 PM: %w", err)
	}
	if err := m.pci.bus.AddFunction(piixSlot, piixPMFn, pm.Function()); err != nil {
		return fmt.Errorf("PIIX4 PM: %w", err)
	}
	return nil
}

// newCMOS is the CMOS/RTC; firmware also reads the PC equipment, CPU count
// and boot order bytes.
func (m *Machine) newCMOS() *cmos.CMOS {
	c := cmos.New(m.cfg.Memory, time.Now)
	if m.cfg.Firmware != "" {
		c.SetPC(m.cfg.CPUs)
	}
	return c
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
	fileE820           = "etc/e820"
	fileBootOrder      = "bootorder"
	fileBootFailWait   = "etc/boot-fail-wait"
	fileShowBootMenu   = "etc/show-boot-menu"
	fileSerconPort     = "etc/sercon-port"
	fileSMBIOSAnchor   = "etc/smbios/smbios-anchor"
	fileSMBIOSTables   = "etc/smbios/smbios-tables"
	e820EntrySize      = 20
	fwcfgNoGraphicTrue = 1
)

// firmwareConfig fills fw_cfg with what this machine is.
func (m *Machine) firmwareConfig() (*fwcfg.Device, error) {
	d := fwcfg.New(m.mem)
	for _, err := range []error{
		d.AddUint16(fwcfg.NBCPUs, uint16(m.cfg.CPUs)),
		d.AddUint16(fwcfg.MaxCPUs, uint16(m.cfg.CPUs)),
		d.AddUint64(fwcfg.RAMSize, m.cfg.Memory),
		d.AddUint16(fwcfg.NoGraphic, fwcfgNoGraphicTrue),
		d.AddUint16(fwcfg.BootMenu, 0),
		d.AddFile(fileE820, e820File(m.cfg.Memory), false),
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
	pciDevs, mcfg, err := acpi.PCIHostDevices(firmwarePCIHost())
	if err != nil {
		return nil, fmt.Errorf("describe the PCI host bridge: %w", err)
	}
	// A PC FADT (PM block, FACS), not a hardware-reduced one: SeaBIOS
	// leaves the 8259 programmed and the PIT ticking, and only an OS that
	// knows there is a PIC masks it.
	tables, err := acpi.Build(acpi.Config{CPUs: m.cfg.CPUs, Devices: pciDevs, Extra: []acpi.SDT{mcfg},
		PM: &acpi.PMBlock{Base: layout.PortPMBase}})
	if err != nil {
		return nil, fmt.Errorf("build ACPI tables: %w", err)
	}
	script, err := tables.LoaderScript()
	if err != nil {
		return nil, fmt.Errorf("ACPI table-loader script: %w", err)
	}
	for _, b := range tables.Blobs {
		if err := d.AddFile(acpi.FileName(b.Name), b.Data, false); err != nil {
			return nil, fmt.Errorf("fw_cfg ACPI: %w", err)
		}
	}
	if err := d.AddFile(acpi.LoaderFile, script, false); err != nil {
		return nil, fmt.Errorf("fw_cfg ACPI: %w", err)
	}
	var regions []smbios.Region
	for _, r := range layout.RAMRegions(m.cfg.Memory) {
		regions = append(regions, smbios.Region{Base: r.Start, Size: r.Size})
	}
	anchor, table, err := smbios.Build(smbios.Config{CPUs: m.cfg.CPUs, Memory: regions})
	if err != nil {
		return nil, fmt.Errorf("build SMBIOS tables: %w", err)
	}
	if err := d.AddFile(fileSMBIOSAnchor, anchor, false); err != nil {
		return nil, fmt.Errorf("fw_cfg SMBIOS: %w", err)
	}
	if err := d.AddFile(fileSMBIOSTables, table, false); err != nil {
		return nil, fmt.Errorf("fw_cfg SMBIOS: %w", err)
	}
	return d, nil
}

// virtioBlkID is a virtio-blk function's vendor and device ID (modern:
// 0x1040 + device type 2), as configuration space reads it.
const virtioBlkID = 0x1042<<16 | 0x1af4

// nvmeID is the NVMe controller's vendor and device ID.
const nvmeID = nvme.DeviceID<<16 | nvme.VendorID

// bootOrder is fw_cfg's "bootorder": the virtio-blk and NVMe disks in slot order
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
		}
	}
	return append(out, "HALT\n"...)
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

// e820File encodes the memory map (the direct-boot builder's) as QEMU's
// etc/e820: packed little-endian {address u64, length u64, type u32}.
func e820File(memSize uint64) []byte {
	var out []byte
	for _, e := range e820.Map(memSize) {
		out = binary.LittleEndian.AppendUint64(out, e.Addr)
		out = binary.LittleEndian.AppendUint64(out, e.Size)
		out = binary.LittleEndian.AppendUint32(out, uint32(e.Type))
	}
	return out
}

// closeFirmware unmaps the image.
func (m *Machine) closeFirmware() {
	if m.fw == nil || m.fw.rom == nil {
		return
	}
	_ = unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(m.fw.rom)), uintptr(len(m.fw.rom)))
	m.fw.rom = nil
}
