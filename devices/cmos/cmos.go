// Package cmos emulates the MC146818 real-time clock and its 128 bytes of
// battery-backed CMOS at ports 0x70/0x71. Guests read the wall clock from it
// at boot, and firmware (SeaBIOS) reads the memory size from the bytes QEMU
// fills in, so both must be right. The alarm interrupt is generated (IRQ 8,
// status C AF/IRQF) as Linux's rtc-cmos and rtcwake use it, and it can wake
// a suspended machine (alarm.go); periodic and update-ended interrupts are
// not: their flags never set.
//
// Guest writes to the clock are kept as an offset from the host clock: the
// guest sees the time it set advance in step with real time.
package cmos

import (
	"sync"
	"time"

	"github.com/vmmdev/vmm/layout"
)

// Offsets in the registration at layout.PortCMOS.
const (
	offIndex = 0
	offData  = 1
	// Size is the length of the registration.
	Size = 2
)

const (
	nmiDisable = 0x80 // bit 7 of the index port gates NMIs; not part of the index

	regSeconds      = 0x00
	regAlarmSeconds = 0x01
	regMinutes      = 0x02
	regAlarmMinutes = 0x03
	regHours        = 0x04
	regAlarmHours   = 0x05
	regWeekday      = 0x06
	regDay          = 0x07
	regMonth        = 0x08
	regYear         = 0x09
	regA            = 0x0a
	regB            = 0x0b
	regC            = 0x0c
	regD            = 0x0d
	regCentury      = 0x32 // as ACPI's FADT CENTURY field names it

	aUIP     = 0x80 // update in progress: never, reads are always consistent
	aDefault = 0x26 // 32.768 kHz time base, 1024 Hz periodic rate
	bSET     = 0x80 // clock frozen while the guest sets it
	bAIE     = 0x20 // alarm interrupt enable
	cIRQF    = 0x80 // an enabled interrupt flag is set (the IRQ line is asserted)
	cAF      = 0x20 // alarm flag
	bBinary  = 0x04 // DM: binary, not BCD
	b24h     = 0x02
	bDefault = b24h // 24-hour BCD
	dVRT     = 0x80 // valid RAM and time
	hourPM   = 0x80 // in 12-hour mode

	// Memory-size bytes, as QEMU fills them and SeaBIOS reads them.
	regBaseMemLo  = 0x15 // KiB below 1 MiB
	regExtMemLo   = 0x17 // KiB between 1 MiB and 16 MiB
	regExtMemLo2  = 0x30 // copy of 0x17/0x18
	regHighMemLo  = 0x34 // 64 KiB units between 16 MiB and the MMIO hole
	regAbove4GLo  = 0x5b // 64 KiB units above 4 GiB, three bytes
	regChecksumHi = 0x2e // sum of 0x10-0x2d, big-endian
	checksumFrom  = 0x10
	checksumTo    = 0x2d

	kib = 1 << 10
	mib = 1 << 20
)

// isTimeReg reports whether r holds part of the date and time.
func isTimeReg(r byte) bool {
	switch r {
	case regSeconds, regMinutes, regHours, regWeekday, regDay, regMonth, regYear, regCentury:
		return true
	}
	return false
}

// CMOS is the RTC and its RAM. Its methods are safe for concurrent use.
type CMOS struct {
	now func() time.Time

	mu     sync.Mutex
	index  byte
	ram    [128]byte     // time registers hold the frozen fields while B.SET is set
	offset time.Duration // guest clock minus host clock
	alarm  alarmState
}

// New returns the CMOS of a machine with memSize bytes of RAM (split around
// the MMIO hole by layout.RAMRegions), reading wall-clock time from now.
func New(memSize uint64, now func() time.Time) *CMOS {
	c := &CMOS{now: now}
	c.ram[regA] = aDefault
	c.ram[regB] = bDefault

	regions := layout.RAMRegions(memSize)
	low := regions[0].Size
	var above4G uint64
	if len(regions) > 1 {
		above4G = regions[1].Size
	}
	put16(c.ram[regBaseMemLo:], 640)
	var ext, high uint64
	if low > mib {
		ext = (min(low, 16*mib) - mib) / kib
	}
	if low > 16*mib {
		high = (low - 16*mib) / (64 * kib)
	}
	put16(c.ram[regExtMemLo:], ext)
	put16(c.ram[regExtMemLo2:], ext)
	put16(c.ram[regHighMemLo:], high)
	above := min(above4G/(64*kib), 0xffffff)
	c.ram[regAbove4GLo] = byte(above)
	c.ram[regAbove4GLo+1] = byte(above >> 8)
	c.ram[regAbove4GLo+2] = byte(above >> 16)

	var sum uint16
	for _, b := range c.ram[checksumFrom : checksumTo+1] {
		sum += uint16(b)
	}
	c.ram[regChecksumHi], c.ram[regChecksumHi+1] = byte(sum>>8), byte(sum)
	return c
}

// put16 stores v little-endian, capped at 0xffff.
func put16(b []byte, v uint64) {
	v = min(v, 0xffff)
	b[0], b[1] = byte(v), byte(v>>8)
}

// Read implements bus.Device. The index port reads as all ones (it is
// write-only); wider accesses cover consecutive ports.
func (c *CMOS) Read(off uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		data[i] = 0xff
		if p := off + uint64(i); p == offData && p >= off {
			data[i] = c.readReg(c.index)
		}
	}
}

// Write implements bus.Device. A word write to 0x70 sets the index and
// writes the data port, as on the ISA bus.
func (c *CMOS) Write(off uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, v := range data {
		p := off + uint64(i)
		if p < off {
			continue
		}
		switch p {
		case offIndex:
			c.index = v &^ nmiDisable
		case offData:
			c.writeReg(c.index, v)
		}
	}
}

func (c *CMOS) readReg(r byte) byte {
	switch {
	case isTimeReg(r):
		if c.ram[regB]&bSET != 0 {
			return c.ram[r]
		}
		var f [128]byte
		encodeTime(&f, c.clock(), c.ram[regB])
		return f[r]
	case r == regA:
		return c.ram[regA] &^ aUIP
	case r == regC:
		return c.readC()
	case r == regD:
		return dVRT
	}
	return c.ram[r]
}

func (c *CMOS) writeReg(r byte, v byte) {
	c.writeRegNoAlarm(r, v)
	switch {
	case isTimeReg(r), r == regB, r == regAlarmSeconds, r == regAlarmMinutes, r == regAlarmHours:
		c.scheduleAlarm()
	}
}

func (c *CMOS) writeRegNoAlarm(r byte, v byte) {
	b := c.ram[regB]
	switch {
	case isTimeReg(r):
		if b&bSET != 0 {
			c.ram[r] = v // applied when SET is cleared
			return
		}
		// Change one field of the running clock, keeping the sub-second
		// phase so that rewriting a field with its value changes nothing.
		// The weekday is derived from the date, so writing it has no effect.
		now := c.clock()
		encodeTime(&c.ram, now, b)
		c.ram[r] = v
		c.setClock(decodeTime(&c.ram, b).Add(time.Duration(now.Nanosecond())))
	case r == regA:
		c.ram[regA] = v &^ aUIP
	case r == regB:
		switch {
		case b&bSET == 0 && v&bSET != 0:
			encodeTime(&c.ram, c.clock(), v) // freeze the clock as it reads now
		case b&bSET != 0 && v&bSET == 0:
			c.setClock(decodeTime(&c.ram, b))
		case b&bSET != 0 && (b^v)&(bBinary|b24h) != 0:
			encodeTime(&c.ram, decodeTime(&c.ram, b), v) // keep the frozen fields readable in the new format
		}
		c.ram[regB] = v
		c.updateIRQ()
	case r == regC, r == regD:
		// Read-only.
	default:
		c.ram[r] = v
	}
}

func (c *CMOS) clock() time.Time {
	return c.now().UTC().Add(c.offset)
}

func (c *CMOS) setClock(t time.Time) {
	c.offset = t.Sub(c.now().UTC())
}

func toBCD(v int, binary bool) byte {
	if binary {
		return byte(v)
	}
	return byte((v/10)%10<<4 | v%10)
}

func fromBCD(v byte, binary bool) int {
	if binary {
		return int(v)
	}
	return int(v>>4)*10 + int(v&0x0f)
}

// encodeTime writes t into the time registers of f in the format status B selects.
func encodeTime(f *[128]byte, t time.Time, b byte) {
	bin := b&bBinary != 0
	f[regSeconds] = toBCD(t.Second(), bin)
	f[regMinutes] = toBCD(t.Minute(), bin)
	h := t.Hour()
	if b&b24h != 0 {
		f[regHours] = toBCD(h, bin)
	} else {
		h12 := h % 12
		if h12 == 0 {
			h12 = 12
		}
		f[regHours] = toBCD(h12, bin)
		if h >= 12 {
			f[regHours] |= hourPM
		}
	}
	f[regWeekday] = toBCD(int(t.Weekday())+1, bin) // Sunday is 1
	f[regDay] = toBCD(t.Day(), bin)
	f[regMonth] = toBCD(int(t.Month()), bin)
	f[regYear] = toBCD(t.Year()%100, bin)
	f[regCentury] = toBCD(t.Year()/100, bin)
}

// decodeTime reads the time registers of f. Whatever the guest wrote is
// accepted; out-of-range fields roll over as time.Date normalises them.
func decodeTime(f *[128]byte, b byte) time.Time {
	bin := b&bBinary != 0
	var h int
	if b&b24h != 0 {
		h = fromBCD(f[regHours], bin)
	} else {
		h = fromBCD(f[regHours]&^hourPM, bin) % 12
		if f[regHours]&hourPM != 0 {
			h += 12
		}
	}
	year := fromBCD(f[regCentury], bin)*100 + fromBCD(f[regYear], bin)
	return time.Date(year, time.Month(fromBCD(f[regMonth], bin)), fromBCD(f[regDay], bin),
		h, fromBCD(f[regMinutes], bin), fromBCD(f[regSeconds], bin), 0, time.UTC)
}
