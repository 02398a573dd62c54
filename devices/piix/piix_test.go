package piix

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/vmmdev/vmm/devices/bus"
)

type fakePorts struct {
	devs map[uint64]bus.Device
	busy uint64 // a base that is taken by another device
}

func (f *fakePorts) Register(base, size uint64, d bus.Device, name string) error {
	if base == f.busy {
		return errors.New("overlap")
	}
	f.devs[base] = d
	return nil
}

func (f *fakePorts) Unregister(base uint64) error {
	if _, ok := f.devs[base]; !ok {
		return errors.New("not registered")
	}
	delete(f.devs, base)
	return nil
}

func TestPMBlockPlacement(t *testing.T) {
	ports := &fakePorts{devs: map[uint64]bus.Device{}, busy: 0x700}
	clock := time.Unix(100, 0)
	var slept []uint8
	pm, err := NewPM(ports, func() time.Time { return clock }, func(typ uint8) { slept = append(slept, typ) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := pm.Function()
	id := make([]byte, 4)
	f.ReadConfig(0, id)
	if binary.LittleEndian.Uint32(id) != 0x71138086 {
		t.Fatalf("id % x", id)
	}
	// APMC_EN reads set and stays set: firmware must not wait for an SMI.
	f.WriteConfig(regDevActB, []byte{0, 0, 0, 0})
	act := make([]byte, 4)
	f.ReadConfig(regDevActB, act)
	if binary.LittleEndian.Uint32(act) != 1<<25 {
		t.Fatalf("DEVACTB reads %#x", binary.LittleEndian.Uint32(act))
	}
	f.WriteConfig(regPMBase, []byte{0x01, 0x06, 0, 0})
	if len(ports.devs) != 0 {
		t.Fatal("PM block decoded before PM I/O was enabled")
	}
	base := make([]byte, 4)
	f.ReadConfig(regPMBase, base)
	if binary.LittleEndian.Uint32(base) != 0x601 {
		t.Fatalf("PM base reads %#x", binary.LittleEndian.Uint32(base))
	}
	f.WriteConfig(regPMMisc, []byte{pmIOEnable})
	blk, ok := ports.devs[0x600]
	if !ok {
		t.Fatalf("PM block not at 0x600: %v", ports.devs)
	}
	// The timer counts at 3.579545 MHz and wraps at 24 bits.
	tmr := make([]byte, 4)
	blk.Read(offPMTimer, tmr)
	t0 := binary.LittleEndian.Uint32(tmr)
	clock = clock.Add(time.Second)
	blk.Read(offPMTimer, tmr)
	if got := (binary.LittleEndian.Uint32(tmr) - t0) & pmTimerMask; got != PMTimerHz {
		t.Fatalf("timer advanced %d in a second", got)
	}
	clock = clock.Add(10 * time.Second)
	blk.Read(offPMTimer, tmr)
	if binary.LittleEndian.Uint32(tmr) > pmTimerMask {
		t.Fatal("timer wider than 24 bits")
	}
	// PM1 control: SCI_EN set from reset (always in ACPI mode); SLP_EN
	// with SLP_TYP 5 enters sleep type 5 and reads back clear.
	ctl := make([]byte, 2)
	blk.Read(offPM1Control, ctl)
	if ctl[0] != pm1ControlSCIEnable {
		t.Fatalf("PM1 control at reset % x", ctl)
	}
	blk.Write(offPM1Control, []byte{pm1ControlSCIEnable, 5<<2 | 0x20})
	blk.Read(offPM1Control, ctl)
	if ctl[0] != pm1ControlSCIEnable || ctl[1] != 5<<2 {
		t.Fatalf("PM1 control % x (SLP_EN must read 0)", ctl)
	}
	if len(slept) != 1 || slept[0] != 5 {
		t.Fatalf("sleep calls %v, want [5]", slept)
	}
	blk.Write(offPM1Control, []byte{0, 5 << 2})
	if len(slept) != 1 {
		t.Fatal("SLP_TYP without SLP_EN slept")
	}
	// Moving the base onto a taken range leaves the block unmapped; moving
	// it again maps it there.
	f.WriteConfig(regPMBase, []byte{0x01, 0x07, 0, 0})
	if len(ports.devs) != 0 {
		t.Fatalf("PM block decoded on a taken range: %v", ports.devs)
	}
	f.WriteConfig(regPMBase, []byte{0x01, 0xb0, 0, 0})
	if _, ok := ports.devs[0xb000]; !ok {
		t.Fatalf("PM block not at 0xb000: %v", ports.devs)
	}
	f.WriteConfig(regPMMisc, []byte{0})
	if len(ports.devs) != 0 {
		t.Fatal("PM block still decoded after disable")
	}
}

func TestISABridgePIRQ(t *testing.T) {
	f, err := ISABridge(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := make([]byte, 4)
	f.ReadConfig(regPIRQ, r)
	for _, b := range r {
		if b != pirqDisabled {
			t.Fatalf("PIRQ routes at reset % x", r)
		}
	}
	f.WriteConfig(regPIRQ, []byte{0x0a, 0x0b, 0xff, 0x05})
	f.ReadConfig(regPIRQ, r)
	if r[0] != 0x0a || r[1] != 0x0b || r[2] != 0x8f || r[3] != 0x05 {
		t.Fatalf("PIRQ routes % x", r)
	}
}

// TestPlace: Place does what firmware does (PMBA, then PM I/O enable), and
// fails where the block cannot be decoded.
func TestPlace(t *testing.T) {
	ports := &fakePorts{devs: map[uint64]bus.Device{}, busy: 0xb000}
	p, err := NewPM(ports, time.Now, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Place(0x600); err != nil {
		t.Fatal(err)
	}
	if _, ok := ports.devs[0x600]; !ok {
		t.Fatalf("PM block not at 0x600: %v", ports.devs)
	}
	base := make([]byte, 4)
	p.Function().ReadConfig(regPMBase, base)
	if base[0] != 0x01 || base[1] != 0x06 {
		t.Fatalf("PMBA reads %x", base)
	}
	if err := p.Place(0xb000); err == nil {
		t.Fatal("Place succeeded where the block could not be registered")
	}
}

// TestPMWakeEvents follows Linux's S3 path: it enables RTC_EN, writes
// SLP_TYP 1 with SLP_EN (the platform is told), and on the RTC alarm
// PM1 status shows RTC_STS, then WAK_STS once the platform woke; both clear
// when written with 1. A disabled event sets its status but wakes nothing.
func TestPMWakeEvents(t *testing.T) {
	ports := &fakePorts{devs: map[uint64]bus.Device{}}
	var slept []uint8
	pm, err := NewPM(ports, time.Now, func(typ uint8) { slept = append(slept, typ) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pm.Place(0x600); err != nil {
		t.Fatal(err)
	}
	blk := ports.devs[0x600]
	read16 := func(off uint64) uint16 {
		b := make([]byte, 2)
		blk.Read(off, b)
		return binary.LittleEndian.Uint16(b)
	}
	write16 := func(off uint64, v uint16) { blk.Write(off, binary.LittleEndian.AppendUint16(nil, v)) }

	if pm.Event(PM1PowerButton) {
		t.Fatal("power button woke with PWRBTN_EN clear")
	}
	if got := read16(offPM1Status); got != PM1PowerButton {
		t.Fatalf("PM1 status %#x after a disabled power button event, want %#x", got, PM1PowerButton)
	}
	write16(offPM1Status, 0xffff)
	write16(offPM1Enable, PM1RTC)
	if got := read16(offPM1Enable); got != PM1RTC {
		t.Fatalf("PM1 enable reads %#x", got)
	}
	write16(offPM1Control, 1<<pm1SleepTypeShift|pm1SleepEnable|pm1ControlSCIEnable)
	if len(slept) != 1 || slept[0] != 1 {
		t.Fatalf("sleep calls %v, want [1] (S3)", slept)
	}
	if !pm.Event(PM1RTC) {
		t.Fatal("RTC alarm did not wake with RTC_EN set")
	}
	pm.Woke()
	if got := read16(offPM1Status); got != pm1WakeStatus|PM1RTC {
		t.Fatalf("PM1 status %#x after the wake, want WAK_STS|RTC_STS %#x", got, pm1WakeStatus|PM1RTC)
	}
	write16(offPM1Status, pm1WakeStatus)
	if got := read16(offPM1Status); got != PM1RTC {
		t.Fatalf("PM1 status %#x after clearing WAK_STS, want RTC_STS", got)
	}
	write16(offPM1Status, PM1RTC)
	if got := read16(offPM1Status); got != 0 {
		t.Fatalf("PM1 status %#x after clearing RTC_STS", got)
	}
}
