package cmos

import (
	"time"
)

// alarmDontCare in the top two bits of an alarm register matches any value
// of its field (the MC146818's "don't care" code).
const alarmDontCare = 0xc0

// AfterFunc runs f once after d, on a goroutine of its own, until stop
// cancels it (time.AfterFunc's contract; tests pass a fake).
type AfterFunc func(d time.Duration, f func()) (stop func() bool)

// Interrupts is how the RTC signals: IRQ drives the ISA IRQ 8 input (high
// while status C's IRQF is set, as the chip's IRQ# output), Alarm is told
// each time an enabled alarm fires (the ACPI PM's RTC_STS wake event).
// After schedules the alarm timer; nil uses time.AfterFunc.
type Interrupts struct {
	IRQ   func(high bool)
	Alarm func()
	After AfterFunc
}

// alarmState is the alarm interrupt's state, under CMOS.mu.
type alarmState struct {
	intr  Interrupts
	on    bool // Connect was called: interrupts are generated
	gen   uint64
	stop  func() bool
	irq   bool // the level last driven
	fired uint64
}

// Connect starts generating alarm interrupts through intr. Without it the
// chip raises no interrupt and status C stays 0.
func (c *CMOS) Connect(intr Interrupts) {
	if intr.After == nil {
		intr.After = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.alarm.intr, c.alarm.on = intr, true
	c.scheduleAlarm()
}

// Close cancels a pending alarm timer; no interrupt is raised afterwards.
func (c *CMOS) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelAlarm()
	c.alarm.on = false
}

// AlarmsFired is how many times the alarm matched (status C's AF set).
func (c *CMOS) AlarmsFired() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alarm.fired
}

func (c *CMOS) cancelAlarm() {
	c.alarm.gen++
	if c.alarm.stop != nil {
		c.alarm.stop()
		c.alarm.stop = nil
	}
}

// alarmField reports whether alarm register a matches the time field in
// register r of f.
func (c *CMOS) alarmField(a, r byte, f *[128]byte) bool {
	v := c.ram[a]
	return v&alarmDontCare == alarmDontCare || v == f[r]
}

// nextAlarm is how long from now, by the guest clock, until the alarm next
// matches, within a day (the alarm compares only seconds, minutes, hours);
// false if it never does (an impossible value, such as seconds 0x75). It
// walks the day's minutes, not its seconds, so a guest rewriting the
// registers costs little.
func (c *CMOS) nextAlarm() (time.Duration, bool) {
	now := c.clock()
	from := now.Truncate(time.Second).Add(time.Second)
	b := c.ram[regB]
	bin := b&bBinary != 0
	var f [128]byte
	first := from.Truncate(time.Minute)
	for i := 0; i <= 24*60; i++ {
		m := first.Add(time.Duration(i) * time.Minute)
		encodeTime(&f, m, b)
		if !c.alarmField(regAlarmHours, regHours, &f) || !c.alarmField(regAlarmMinutes, regMinutes, &f) {
			continue
		}
		for s := range 60 {
			t := m.Add(time.Duration(s) * time.Second)
			if t.Before(from) {
				continue
			}
			f[regSeconds] = toBCD(s, bin)
			if c.alarmField(regAlarmSeconds, regSeconds, &f) {
				return t.Sub(now), true
			}
		}
	}
	return 0, false
}

// scheduleAlarm (re)arms the timer for the next match. The flag is set
// whether or not AIE is, so the timer runs whenever the clock runs.
func (c *CMOS) scheduleAlarm() {
	c.cancelAlarm()
	if !c.alarm.on || c.ram[regB]&bSET != 0 {
		return
	}
	d, ok := c.nextAlarm()
	if !ok {
		return
	}
	gen := c.alarm.gen
	c.alarm.stop = c.alarm.intr.After(d, func() { c.fireAlarm(gen) })
}

// fireAlarm sets AF (and IRQF with IRQ 8 when AIE is set), tells the
// platform of an enabled alarm and arms the next match.
func (c *CMOS) fireAlarm(gen uint64) {
	c.mu.Lock()
	if gen != c.alarm.gen || !c.alarm.on {
		c.mu.Unlock()
		return // cancelled or rescheduled meanwhile
	}
	c.alarm.stop = nil
	c.alarm.fired++
	c.ram[regC] |= cAF
	enabled := c.ram[regB]&bAIE != 0
	c.updateIRQ()
	notify := c.alarm.intr.Alarm
	// The next match is at least a second away: nextAlarm starts there.
	c.scheduleAlarm()
	c.mu.Unlock()
	if enabled && notify != nil {
		notify()
	}
}

// updateIRQ sets IRQF and the IRQ line from the flags status B enables.
func (c *CMOS) updateIRQ() {
	if c.ram[regC]&c.ram[regB]&cAF != 0 {
		c.ram[regC] |= cIRQF
	} else {
		c.ram[regC] &^= cIRQF
	}
	c.setIRQ(c.ram[regC]&cIRQF != 0)
}

func (c *CMOS) setIRQ(high bool) {
	if c.alarm.irq == high || !c.alarm.on || c.alarm.intr.IRQ == nil {
		return
	}
	c.alarm.irq = high
	c.alarm.intr.IRQ(high)
}

// readC returns status C and clears it, lowering the IRQ line: reading C
// acknowledges the interrupt.
func (c *CMOS) readC() byte {
	v := c.ram[regC]
	c.ram[regC] = 0
	c.setIRQ(false)
	return v
}
