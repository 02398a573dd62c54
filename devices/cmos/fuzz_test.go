package cmos

import (
	"testing"
	"time"
)

// FuzzPorts feeds the RTC hostile (op, offset, width, value) sequences, with
// the host clock moving between accesses, and checks that it never panics,
// never reports an update in progress, keeps status D valid, and always
// reads back a well-formed time.
func FuzzPorts(f *testing.F) {
	// Index/data pairs: set time Linux-style; switch to binary 12h; a word write.
	f.Add([]byte{1, 0, 0, regB, 1, 1, 0, 0x82, 1, 0, 0, regMonth, 1, 1, 0, 0x13, 1, 0, 0, regB, 1, 1, 0, 0x02, 0, 1, 0, 0})
	f.Add([]byte{1, 0, 0, regB, 1, 1, 0, 0x04, 1, 0, 0, regHours, 1, 1, 0, 0xff, 0, 1, 0, 0})
	f.Add([]byte{1, 0, 1, 0x8a, 0, 1, 0, 0, 2, 0, 0, 0x30, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		clk := &fakeClock{t: startTime()}
		c := New(uint64(len(ops))*mib, clk.now)
		for len(ops) >= 4 {
			op, off, width, val := ops[0]%3, uint64(ops[1]%(Size+2)), []int{1, 2, 4}[ops[2]%3], ops[3]
			ops = ops[4:]
			data := make([]byte, width)
			switch op {
			case 0:
				c.Read(off, data)
			case 1:
				for i := range data {
					data[i] = val ^ byte(i)
				}
				c.Write(off, data)
			case 2:
				clk.advance(time.Duration(val) * 37 * time.Second)
			}
			c.mu.Lock()
			idx := c.index
			c.mu.Unlock()
			if idx > 0x7f {
				t.Fatalf("index %#x escaped the NMI mask", idx)
			}
			if get(c, regA)&aUIP != 0 || get(c, regD) != dVRT || get(c, regC) != 0 {
				t.Fatal("status registers A/C/D broke")
			}
			checkClockValid(t, c)
			c.Write(offIndex, []byte{idx}) // the checks moved the index; put it back
		}
	})
}

// FuzzAlarm drives the alarm with hostile register writes and clock jumps,
// firing whatever timer is armed: it must never panic, arm a timer more
// than a day ahead, or leave IRQF set without AF and AIE, and the IRQ line
// must follow IRQF.
func FuzzAlarm(f *testing.F) {
	f.Add([]byte{regAlarmSeconds, 0xc0, regAlarmMinutes, 0xc0, regAlarmHours, 0xc0, regB, 0x22, 0xff, 3, regC, 0})
	f.Add([]byte{regB, 0x86, regAlarmHours, 0x81, regAlarmSeconds, 0x14, 0xff, 9, regB, 0x26})
	f.Fuzz(func(t *testing.T, ops []byte) {
		c, clk, ft, _ := connected(t)
		for len(ops) >= 2 {
			reg, val := ops[0], ops[1]
			ops = ops[2:]
			switch {
			case reg == 0xff:
				clk.advance(time.Duration(val) * 997 * time.Millisecond)
				if _, fire := ft.pending(); fire != nil {
					fire()
				}
			default:
				set(c, reg&0x7f, val)
			}
			if d, _ := ft.pending(); d > 24*time.Hour || d < 0 {
				t.Fatalf("alarm armed %v ahead", d)
			}
			c.mu.Lock()
			st, b, line := c.ram[regC], c.ram[regB], c.alarm.irq
			c.mu.Unlock()
			if st&cIRQF != 0 && st&b&cAF == 0 {
				t.Fatalf("IRQF set with C %#x, B %#x", st, b)
			}
			if line != (st&cIRQF != 0) {
				t.Fatalf("IRQ line %v with C %#x", line, st)
			}
		}
	})
}
