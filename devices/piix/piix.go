// Package piix is the PIIX3 ISA bridge (00:01.0) and the PIIX4 power
// management function (00:01.3) of QEMU's i440FX machine, as far as
// firmware uses them: the PIRQ route registers, and the PM I/O block
// (PM1 event and control registers, the ACPI PM timer) that the PM base and
// enable registers place in port space. SeaBIOS programs both and times
// itself with the PM timer.
package piix

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vmmdev/vmm/devices/bus"
	"github.com/vmmdev/vmm/devices/pci"
)

// Configuration registers.
const (
	regPIRQ      = 0x60 // PIRQA-D route control, 4 bytes
	pirqDisabled = 0x80 // bit 7: the PIRQ is not routed

	regPMBase    = 0x40 // PM I/O base, bits 15:6; bit 0 reads 1 (I/O space)
	regPMMisc    = 0x80 // bit 0: PM I/O space enable
	regSMBBase   = 0x90 // SMBus I/O base, bits 15:4 (no SMBus controller behind it)
	regSMBHstCfg = 0xd2 // SMBus host configuration
	// regDevActB is device activity B; bit 25 (APMC_EN) enables SMIs on
	// writes to the APM control port. There is no SMM: it reads set, which
	// SeaBIOS (as with QEMU's smm=off) takes as "SMM already set up" and
	// skips the SMI handshake it would otherwise wait on forever.
	regDevActB    = 0x58
	devActBAPMCEn = 0x02 // in the register's top byte
	pmIOEnable    = 0x01
)

// PM I/O block layout (offsets from the PM base).
const (
	// PMSize is the span of the PM I/O block.
	PMSize = 64

	offPM1Status  = 0x00 // 16-bit, write 1 to clear
	offPM1Enable  = 0x02 // 16-bit
	offPM1Control = 0x04 // 16-bit
	offPMTimer    = 0x08 // 32-bit, 24 bits of count

	// PMTimerHz is the ACPI PM timer's frequency.
	PMTimerHz   = 3579545
	pmTimerMask = 1<<24 - 1

	pm1ControlSCIEnable = 1 << 0
	pm1WakeStatus       = 1 << 15 // PM1 status WAK_STS
	pm1SleepTypeShift   = 10
	pm1SleepTypeMask    = 7
	pm1SleepEnable      = 1 << 13
)

// PM1 status/enable event bits a wake source sets (ACPI 6.5 §4.8.3.1).
const (
	PM1PowerButton = 1 << 8  // PWRBTN_STS / PWRBTN_EN
	PM1RTC         = 1 << 10 // RTC_STS / RTC_EN
)

// ISABridge returns the PIIX3 ISA bridge function (8086:7000) with its
// PIRQ route registers, all disabled at reset. vmm's PCI devices signal
// with MSI-X, so no INTx line depends on the routing; firmware programs it
// and builds its $PIR table from it.
func ISABridge(log *slog.Logger) (*pci.Function, error) {
	f, err := pci.NewFunction("piix3-isa", pci.Identity{Vendor: 0x8086, Device: 0x7000,
		SubVendor: 0x1af4, Subsystem: 0x1100, Class: 0x060100}, nil, nil, log)
	if err != nil {
		return nil, err
	}
	init := []byte{pirqDisabled, pirqDisabled, pirqDisabled, pirqDisabled}
	if err := f.AddRegisters(regPIRQ, init, []byte{0x8f, 0x8f, 0x8f, 0x8f}, nil); err != nil {
		return nil, err
	}
	return f, nil
}

// Ports is the port bus the PM block is placed on (devices/bus.Bus).
type Ports interface {
	Register(base, size uint64, d bus.Device, name string) error
	Unregister(base uint64) error
}

// PM is the PIIX4 power management function and its I/O block.
type PM struct {
	fn *pci.Function
	// sleep is called with SLP_TYP when the guest sets SLP_EN.
	sleep func(sleepType uint8)
	ports Ports
	log   *slog.Logger
	now   func() time.Time
	start time.Time

	mu      sync.Mutex
	base    uint16
	enabled bool
	mapped  bool
	at      uint16
	status  uint16
	enable  uint16
	control uint16
}

// NewPM returns the PM function (8086:7113). Its I/O block appears on
// ports when the guest sets the PM base and enables PM I/O; now is the
// clock of the PM timer; sleep is told the sleep type the guest enters
// through PM1 control (the ACPI tables name which one is soft-off). SCI_EN
// reads set from reset: there is no SMI command port, the platform is
// always in ACPI mode.
func NewPM(ports Ports, now func() time.Time, sleep func(sleepType uint8), log *slog.Logger) (*PM, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &PM{ports: ports, log: log, now: now, start: now(), sleep: sleep, control: pm1ControlSCIEnable}
	f, err := pci.NewFunction("piix4-pm", pci.Identity{Vendor: 0x8086, Device: 0x7113, Revision: 0x03,
		SubVendor: 0x1af4, Subsystem: 0x1100, Class: 0x068000}, nil, nil, log)
	if err != nil {
		return nil, err
	}
	regs := []struct {
		off        int
		init, mask []byte
		written    func([]byte, int, int)
	}{
		{regPMBase, []byte{1, 0, 0, 0}, []byte{0xc0, 0xff, 0, 0}, p.baseWritten},
		{regPMMisc, []byte{0}, []byte{pmIOEnable}, p.miscWritten},
		{regSMBBase, []byte{1, 0, 0, 0}, []byte{0xf0, 0xff, 0, 0}, nil},
		{regSMBHstCfg, []byte{0}, []byte{0x0f}, nil},
		{regDevActB, []byte{0, 0, 0, devActBAPMCEn}, []byte{0, 0, 0, 0}, nil},
	}
	for _, r := range regs {
		if err := f.AddRegisters(r.off, r.init, r.mask, r.written); err != nil {
			return nil, fmt.Errorf("piix4-pm: %w", err)
		}
	}
	p.fn = f
	return p, nil
}

// Function is the PCI function to put at 00:01.3.
func (p *PM) Function() *pci.Function { return p.fn }

func (p *PM) baseWritten(regs []byte, _, _ int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.base = binary.LittleEndian.Uint16(regs) &^ 0x3f
	p.remap()
}

func (p *PM) miscWritten(regs []byte, _, _ int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.enabled = regs[0]&pmIOEnable != 0
	p.remap()
}

// remap places the I/O block where the registers say. A base of 0, or one
// that collides with another device, leaves it unmapped.
func (p *PM) remap() {
	want := p.enabled && p.base != 0
	if p.mapped && (!want || p.at != p.base) {
		if err := p.ports.Unregister(uint64(p.at)); err != nil {
			p.log.Warn("piix4-pm: unmap PM block", "err", err)
		}
		p.mapped = false
	}
	if want && !p.mapped {
		if err := p.ports.Register(uint64(p.base), PMSize, pmBlock{p}, "piix4-pm"); err != nil {
			p.log.Debug("piix4-pm: PM block not decoded", "base", fmt.Sprintf("%#x", p.base), "err", err)
			return
		}
		p.mapped, p.at = true, p.base
	}
}

// Place programs the PM base and enables PM I/O, as firmware does, for a
// platform with no firmware to do it; it fails if the block could not be
// placed there.
func (p *PM) Place(base uint16) error {
	p.fn.WriteConfig(regPMBase, binary.LittleEndian.AppendUint32(nil, uint32(base)|1))
	p.fn.WriteConfig(regPMMisc, []byte{pmIOEnable})
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.mapped || p.at != base {
		return fmt.Errorf("piix4-pm: PM block not decoded at %#x", base)
	}
	return nil
}

// Event sets the PM1 status bits evt (PM1PowerButton, PM1RTC), as the
// hardware does whether or not they are enabled, and reports whether PM1
// enable has one of them set: what makes the event wake a sleeping system.
func (p *PM) Event(evt uint16) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status |= evt
	return p.enable&evt != 0
}

// Woke sets WAK_STS, as the hardware does when it returns to S0; the OS
// reads it, then clears it by writing 1.
func (p *PM) Woke() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status |= pm1WakeStatus
}

// Timer is the PM timer's count now.
func (p *PM) Timer() uint32 {
	ticks := p.now().Sub(p.start).Nanoseconds()
	// ticks*Hz overflows int64 after ~80 years of uptime; split it.
	sec, ns := ticks/1e9, ticks%1e9
	return uint32((sec*PMTimerHz + ns*PMTimerHz/1e9) & pmTimerMask)
}

// pmBlock is the PM I/O block as the port bus sees it.
type pmBlock struct{ p *PM }

func (b pmBlock) Read(off uint64, data []byte) {
	p := b.p
	var v uint32
	switch {
	case off >= offPMTimer && off < offPMTimer+4:
		v = p.Timer() >> (8 * (off - offPMTimer))
	default:
		p.mu.Lock()
		var regs [8]byte
		binary.LittleEndian.PutUint16(regs[offPM1Status:], p.status)
		binary.LittleEndian.PutUint16(regs[offPM1Enable:], p.enable)
		binary.LittleEndian.PutUint16(regs[offPM1Control:], p.control)
		p.mu.Unlock()
		if off < uint64(len(regs)) {
			v = binary.LittleEndian.Uint32(append(regs[off:], 0, 0, 0, 0))
		}
	}
	for i := range data {
		data[i] = byte(v >> (8 * i))
	}
}

// Write implements bus.Device. Status bits clear when written with 1;
// SLP_EN in the control register enters the sleep type written with it
// (and reads back as 0).
func (b pmBlock) Write(off uint64, data []byte) {
	p := b.p
	var sleep func()
	defer func() {
		if sleep != nil {
			sleep()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	var v uint16
	for i := range min(len(data), 2) {
		v |= uint16(data[i]) << (8 * i)
	}
	switch {
	case off == offPM1Status && len(data) >= 2:
		p.status &^= v
	case off == offPM1Enable && len(data) >= 2:
		p.enable = v
	case off == offPM1Control && len(data) >= 2:
		p.control = v &^ pm1SleepEnable
		if v&pm1SleepEnable != 0 && p.sleep != nil {
			typ := uint8(v >> pm1SleepTypeShift & pm1SleepTypeMask)
			sleep = func() { p.sleep(typ) }
		}
	}
}
