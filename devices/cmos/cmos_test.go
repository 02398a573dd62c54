package cmos

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable now().
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// startTime is a Sunday afternoon, with a fraction of a second that must not
// leak into reads.
func startTime() time.Time {
	return time.Date(2026, time.November, 22, 13, 5, 9, 400_000_000, time.UTC)
}

func newCMOS(t *testing.T) (*CMOS, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: startTime()}
	return New(256*mib, clk.now), clk
}

func get(c *CMOS, reg byte) byte {
	c.Write(offIndex, []byte{reg})
	b := []byte{0}
	c.Read(offData, b)
	return b[0]
}

func set(c *CMOS, reg, v byte) {
	c.Write(offIndex, []byte{reg})
	c.Write(offData, []byte{v})
}

func TestClockFormats(t *testing.T) {
	regs := []byte{regSeconds, regMinutes, regHours, regWeekday, regDay, regMonth, regYear, regCentury}
	tests := []struct {
		name string
		b    byte
		at   time.Time
		want []byte // in the order of regs
	}{
		{"BCD 24h default", bDefault, startTime(), []byte{0x09, 0x05, 0x13, 0x01, 0x22, 0x11, 0x26, 0x20}},
		{"binary 24h", b24h | bBinary, startTime(), []byte{9, 5, 13, 1, 22, 11, 26, 20}},
		{"BCD 12h afternoon", 0, startTime(), []byte{0x09, 0x05, hourPM | 0x01, 0x01, 0x22, 0x11, 0x26, 0x20}},
		{"BCD 12h midnight", 0, time.Date(1999, 12, 31, 0, 30, 59, 0, time.UTC), []byte{0x59, 0x30, 0x12, 0x06, 0x31, 0x12, 0x99, 0x19}},
		{"BCD 12h noon", 0, time.Date(2000, 1, 1, 12, 0, 0, 0, time.UTC), []byte{0x00, 0x00, hourPM | 0x12, 0x07, 0x01, 0x01, 0x00, 0x20}},
		{"binary 12h evening", bBinary, time.Date(2100, 2, 28, 23, 59, 58, 0, time.UTC), []byte{58, 59, hourPM | 11, 1, 28, 2, 0, 21}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: tt.at}
			c := New(64*mib, clk.now)
			set(c, regB, tt.b)
			for i, r := range regs {
				if got := get(c, r); got != tt.want[i] {
					t.Errorf("reg %#02x = %#02x, want %#02x", r, got, tt.want[i])
				}
			}
		})
	}
}

func TestStatusRegisters(t *testing.T) {
	c, _ := newCMOS(t)
	tests := []struct {
		reg, write, want byte
		doWrite          bool
	}{
		{reg: regA, want: aDefault},
		{reg: regA, write: 0xa6, want: 0x26, doWrite: true}, // UIP is read-only and always 0
		{reg: regB, want: bDefault},
		{reg: regC, want: 0},
		{reg: regC, write: 0xf0, want: 0, doWrite: true},
		{reg: regD, want: dVRT},
		{reg: regD, write: 0, want: dVRT, doWrite: true},
	}
	for _, tt := range tests {
		if tt.doWrite {
			set(c, tt.reg, tt.write)
		}
		if got := get(c, tt.reg); got != tt.want {
			t.Errorf("reg %#x (after write %v %#x) = %#x, want %#x", tt.reg, tt.doWrite, tt.write, got, tt.want)
		}
	}
}

func TestIndexPort(t *testing.T) {
	c, _ := newCMOS(t)
	set(c, 0x40, 0xab)
	c.Write(offIndex, []byte{nmiDisable | 0x40}) // NMI-disable bit is not part of the index
	b := []byte{0}
	c.Read(offData, b)
	if b[0] != 0xab {
		t.Fatalf("data via NMI-masked index = %#x", b[0])
	}
	c.Read(offIndex, b)
	if b[0] != 0xff {
		t.Fatalf("index port read %#x, want 0xff", b[0])
	}
	// A word write sets index and data at once.
	c.Write(offIndex, []byte{0x7f, 0x5a})
	if got := get(c, 0x7f); got != 0x5a {
		t.Fatalf("word write: reg 0x7f = %#x", got)
	}
	two := []byte{0, 0}
	c.Read(offIndex, two)
	if !bytes.Equal(two, []byte{0xff, 0x5a}) {
		t.Fatalf("word read %x", two)
	}
	c.Read(offData, two)
	if two[1] != 0xff {
		t.Fatalf("read past the end %x", two)
	}
	c.Write(^uint64(0), []byte{0x10, 0x99}) // wraps: must be ignored
	if got := get(c, 0x7f); got != 0x5a {
		t.Fatalf("wrapping write changed reg: %#x", got)
	}
}

func TestMemorySize(t *testing.T) {
	tests := []struct {
		name      string
		mem       uint64
		ext, high uint16
		above     uint32
	}{
		{"1 MiB", 1 * mib, 0, 0, 0},
		{"8 MiB", 8 * mib, 7 * 1024, 0, 0},
		{"16 MiB", 16 * mib, 15 * 1024, 0, 0},
		{"17 MiB", 17 * mib, 15 * 1024, 16, 0},
		{"1 GiB", 1024 * mib, 15 * 1024, (1024 - 16) * 16, 0},
		{"3 GiB", 3072 * mib, 15 * 1024, (3072 - 16) * 16, 0},
		{"8 GiB", 8192 * mib, 15 * 1024, (3072 - 16) * 16, 5120 * 16},
		{"huge", 1 << 50, 15 * 1024, (3072 - 16) * 16, 0xffffff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.mem, time.Now)
			word := func(r byte) uint16 { return uint16(get(c, r)) | uint16(get(c, r+1))<<8 }
			if got := word(regBaseMemLo); got != 640 {
				t.Errorf("base memory %d KiB", got)
			}
			if got := word(regExtMemLo); got != tt.ext {
				t.Errorf("0x17/0x18 = %d KiB, want %d", got, tt.ext)
			}
			if got := word(regExtMemLo2); got != tt.ext {
				t.Errorf("0x30/0x31 = %d KiB, want %d", got, tt.ext)
			}
			if got := word(regHighMemLo); got != tt.high {
				t.Errorf("0x34/0x35 = %d, want %d", got, tt.high)
			}
			above := uint32(get(c, regAbove4GLo)) | uint32(get(c, regAbove4GLo+1))<<8 | uint32(get(c, regAbove4GLo+2))<<16
			if above != tt.above {
				t.Errorf("0x5b-0x5d = %d, want %d", above, tt.above)
			}
			var sum uint16
			for r := byte(checksumFrom); r <= checksumTo; r++ {
				sum += uint16(get(c, r))
			}
			if got := word(regChecksumHi); got != sum>>8|sum<<8 {
				t.Errorf("checksum %#x, want %#x big-endian", got, sum)
			}
		})
	}
}

func TestSetTimeLikeLinux(t *testing.T) {
	c, clk := newCMOS(t)
	// mc146818_set_time: SET, write every field, clear SET.
	set(c, regB, bDefault|bSET)
	clk.advance(5 * time.Second)
	if got := get(c, regSeconds); got != 0x09 {
		t.Fatalf("clock ran while SET: seconds %#x", got)
	}
	for _, f := range []struct{ r, v byte }{
		{regCentury, 0x20}, {regYear, 0x28}, {regMonth, 0x02}, {regDay, 0x29},
		{regHours, 0x23}, {regMinutes, 0x59}, {regSeconds, 0x58},
	} {
		set(c, f.r, f.v)
	}
	if got := get(c, regDay); got != 0x29 {
		t.Fatalf("frozen day %#x", got)
	}
	set(c, regB, bDefault)
	clk.advance(2 * time.Second)
	want := map[byte]byte{regSeconds: 0x00, regMinutes: 0x00, regHours: 0x00, regDay: 0x01, regMonth: 0x03, regYear: 0x28, regWeekday: 0x04}
	for r, v := range want {
		if got := get(c, r); got != v {
			t.Errorf("after set + 2s: reg %#x = %#x, want %#x", r, got, v)
		}
	}
}

func TestSetSingleField(t *testing.T) {
	c, clk := newCMOS(t)
	set(c, regHours, 0x05)
	if got := get(c, regHours); got != 0x05 {
		t.Fatalf("hours %#x", got)
	}
	if got := get(c, regMinutes); got != 0x05 {
		t.Fatalf("minutes disturbed: %#x", got)
	}
	clk.advance(time.Hour)
	if got := get(c, regHours); got != 0x06 {
		t.Fatalf("hours an hour later %#x", got)
	}
	// Rewriting the weekday or a field with its own value moves nothing,
	// not even by the dropped fraction of a second.
	set(c, regWeekday, 0x05)
	set(c, regSeconds, get(c, regSeconds))
	clk.advance(600 * time.Millisecond) // 06:05:09.4 + 0.6s: a dropped fraction would still read :09
	if got := get(c, regSeconds); got != 0x10 {
		t.Fatalf("seconds %#x after rewrite, want 0x10", got)
	}
}

func TestFormatChangeWhileFrozen(t *testing.T) {
	c, _ := newCMOS(t)
	set(c, regB, bDefault|bSET)
	set(c, regB, bSET|bBinary) // binary, 12-hour, still frozen
	if got := get(c, regHours); got != hourPM|1 {
		t.Fatalf("hours re-encoded %#x", got)
	}
	if got := get(c, regYear); got != 26 {
		t.Fatalf("year re-encoded %d", got)
	}
	set(c, regB, bBinary)
	if got := get(c, regMinutes); got != 5 {
		t.Fatalf("minutes after unfreeze %d", got)
	}
}

func TestHostileTimeValues(t *testing.T) {
	c, _ := newCMOS(t)
	for _, r := range []byte{regMonth, regDay, regHours, regSeconds, regCentury, regYear} {
		set(c, r, 0xff)
	}
	set(c, regB, bSET)
	for _, r := range []byte{regMonth, regDay, regHours, regMinutes, regCentury} {
		set(c, r, 0x00)
	}
	set(c, regB, bDefault)
	checkClockValid(t, c)
}

// checkClockValid asserts every time register decodes to an in-range value.
func checkClockValid(t *testing.T, c *CMOS) {
	t.Helper()
	b := get(c, regB)
	if b&bSET != 0 {
		return
	}
	bin := b&bBinary != 0
	dec := func(r byte) int {
		v := get(c, r)
		if r == regHours && b&b24h == 0 {
			v &^= hourPM
		}
		if !bin && (v>>4 > 9 || v&0xf > 9) {
			t.Fatalf("reg %#x = %#x is not BCD", r, v)
		}
		return fromBCD(v, bin)
	}
	hourMin, hourMax := 0, 23
	if b&b24h == 0 {
		hourMin, hourMax = 1, 12
	}
	for _, f := range []struct {
		r        byte
		min, max int
	}{
		{regSeconds, 0, 59}, {regMinutes, 0, 59}, {regHours, hourMin, hourMax}, {regWeekday, 1, 7},
		{regDay, 1, 31}, {regMonth, 1, 12}, {regYear, 0, 99}, {regCentury, 0, 99},
	} {
		if v := dec(f.r); v < f.min || v > f.max {
			t.Fatalf("reg %#x decodes to %d, outside [%d, %d]", f.r, v, f.min, f.max)
		}
	}
}

func TestConcurrentAccess(t *testing.T) {
	c, _ := newCMOS(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 256 {
				c.Write(offIndex, []byte{byte(0x40 + g), byte(i)}) // index+data in one access
				get(c, regSeconds)
			}
		})
	}
	wg.Wait()
	for g := range 4 {
		if got := get(c, byte(0x40+g)); got != 255 {
			t.Fatalf("reg %#x = %d, want 255", 0x40+g, got)
		}
	}
}
