package cmos

import (
	"sync"
	"testing"
	"time"
)

// fakeTimer is an AfterFunc the test fires by hand.
type fakeTimer struct {
	mu      sync.Mutex
	d       time.Duration
	f       func()
	armed   int
	stopped int
}

func (ft *fakeTimer) after(d time.Duration, f func()) func() bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.d, ft.f = d, f
	ft.armed++
	return func() bool {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		ft.stopped++
		return true
	}
}

// pending returns the latest timer.
func (ft *fakeTimer) pending() (time.Duration, func()) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.d, ft.f
}

type irqLog struct {
	mu     sync.Mutex
	levels []bool
	alarms int
}

func (l *irqLog) irq(high bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.levels = append(l.levels, high)
}

func (l *irqLog) alarm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.alarms++
}

func connected(t *testing.T) (*CMOS, *fakeClock, *fakeTimer, *irqLog) {
	t.Helper()
	c, clk := newCMOS(t)
	ft, log := &fakeTimer{}, &irqLog{}
	c.Connect(Interrupts{IRQ: log.irq, Alarm: log.alarm, After: ft.after})
	return c, clk, ft, log
}

// TestAlarmInterrupt follows rtc-cmos setting an alarm 3 s ahead (what
// rtcwake -s 3 does): the timer is armed for the match, firing sets AF and
// IRQF and raises IRQ 8, reading C clears both and lowers it.
func TestAlarmInterrupt(t *testing.T) {
	c, clk, ft, log := connected(t)
	// 13:05:09.4 now; the alarm at 13:05:12 is 2.6 s away.
	set(c, regAlarmHours, 0x13)
	set(c, regAlarmMinutes, 0x05)
	set(c, regAlarmSeconds, 0x12)
	set(c, regB, get(c, regB)|bAIE)
	d, fire := ft.pending()
	if want := 2600 * time.Millisecond; d != want {
		t.Fatalf("alarm timer armed for %v, want %v", d, want)
	}
	if get(c, regC) != 0 {
		t.Fatal("status C set before the alarm fired")
	}
	clk.advance(d)
	fire()
	if len(log.levels) != 1 || !log.levels[0] {
		t.Fatalf("IRQ levels %v after the alarm, want [true]", log.levels)
	}
	if log.alarms != 1 || c.AlarmsFired() != 1 {
		t.Fatalf("platform told of %d alarms, %d fired; want 1, 1", log.alarms, c.AlarmsFired())
	}
	if got := get(c, regC); got != cIRQF|cAF {
		t.Fatalf("status C = %#x, want IRQF|AF %#x", got, cIRQF|cAF)
	}
	if got := get(c, regC); got != 0 {
		t.Fatalf("status C = %#x after a read, want 0", got)
	}
	if len(log.levels) != 2 || log.levels[1] {
		t.Fatalf("IRQ levels %v after reading C, want [true false]", log.levels)
	}
	// Re-armed for the same time tomorrow.
	if d, _ := ft.pending(); d != 24*time.Hour {
		t.Fatalf("next alarm in %v, want 24h", d)
	}
}

// TestAlarmWithoutAIE sets AF only: no IRQF, no IRQ, no wake event; enabling
// AIE afterwards raises the pending interrupt.
func TestAlarmWithoutAIE(t *testing.T) {
	c, clk, ft, log := connected(t)
	set(c, regAlarmHours, alarmDontCare)
	set(c, regAlarmMinutes, alarmDontCare)
	set(c, regAlarmSeconds, alarmDontCare) // every second
	d, fire := ft.pending()
	if d != 600*time.Millisecond {
		t.Fatalf("every-second alarm armed for %v, want 600ms", d)
	}
	clk.advance(d)
	fire()
	if log.alarms != 0 || len(log.levels) != 0 {
		t.Fatalf("alarm with AIE clear: %d wake events, IRQ levels %v; want none", log.alarms, log.levels)
	}
	if d, _ := ft.pending(); d != time.Second {
		t.Fatalf("next every-second alarm in %v, want 1s", d)
	}
	set(c, regB, get(c, regB)|bAIE)
	if len(log.levels) != 1 || !log.levels[0] {
		t.Fatalf("IRQ levels %v after enabling AIE with AF pending, want [true]", log.levels)
	}
	if got := get(c, regC); got != cIRQF|cAF {
		t.Fatalf("status C = %#x, want %#x", got, cIRQF|cAF)
	}
}

// TestAlarmRescheduling: a stale timer (the guest moved the alarm) does
// nothing; SET stops the alarm; Close cancels it; binary 12-hour alarms
// match in the format status B selects.
func TestAlarmRescheduling(t *testing.T) {
	c, clk, ft, log := connected(t)
	set(c, regAlarmHours, 0x13)
	set(c, regAlarmMinutes, 0x05)
	set(c, regAlarmSeconds, 0x12)
	_, stale := ft.pending()
	set(c, regAlarmSeconds, 0x20)
	d, _ := ft.pending()
	if d != 10600*time.Millisecond {
		t.Fatalf("moved alarm armed for %v, want 10.6s", d)
	}
	clk.advance(3 * time.Second)
	stale()
	if c.AlarmsFired() != 0 {
		t.Fatal("a cancelled timer fired the alarm")
	}
	armed := ft.armed
	set(c, regB, get(c, regB)|bSET)
	if ft.armed != armed {
		t.Fatal("alarm armed while the clock is frozen")
	}
	// Binary, 12-hour: 1 PM is 0x81. Clearing SET restarted the clock at
	// the frozen 13:05:12.0.
	set(c, regB, bBinary|bAIE)
	set(c, regAlarmHours, hourPM|1)
	set(c, regAlarmMinutes, 5)
	set(c, regAlarmSeconds, 14)
	d, fire := ft.pending()
	if d != 2*time.Second {
		t.Fatalf("binary 12-hour alarm armed for %v, want 2s", d)
	}
	clk.advance(d)
	fire()
	if log.alarms != 1 {
		t.Fatalf("%d wake events, want 1", log.alarms)
	}
	c.Close()
	_, fire = ft.pending()
	fire()
	if c.AlarmsFired() != 1 {
		t.Fatal("alarm fired after Close")
	}
}

// TestAlarmNeverMatches: an impossible alarm arms no timer.
func TestAlarmNeverMatches(t *testing.T) {
	c, _, ft, _ := connected(t)
	armed := ft.armed
	set(c, regAlarmSeconds, 0x75)
	if ft.armed != armed {
		t.Fatal("impossible alarm armed a timer")
	}
}

// TestAlarmSearchCost: the worst alarm to search for (hours and minutes
// "don't care", seconds impossible) stays cheap, since a guest can make
// vmm search on every register write.
func TestAlarmSearchCost(t *testing.T) {
	c, _, ft, _ := connected(t)
	set(c, regAlarmHours, alarmDontCare)
	set(c, regAlarmMinutes, 0x07)
	set(c, regAlarmSeconds, 0x00)
	if d, _ := ft.pending(); d != 110600*time.Millisecond {
		t.Fatalf("13:07:00 alarm armed for %v from 13:05:09.4, want 1m50.6s", d)
	}
	set(c, regAlarmMinutes, alarmDontCare)
	start := time.Now()
	armed := ft.armed
	for range 20 {
		set(c, regAlarmSeconds, 0x61)
	}
	if ft.armed != armed {
		t.Fatal("an impossible seconds alarm armed a timer")
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("20 searches took %v", el)
	}
}
