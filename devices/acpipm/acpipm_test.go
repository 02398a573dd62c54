package acpipm

import (
	"bytes"
	"sync"
	"testing"

	"github.com/vmmdev/vmm/layout"
)

func TestLayout(t *testing.T) {
	if offSleepControl != 0 || offSleepStatus != 1 || offReset != 2 {
		t.Fatalf("register offsets %d %d %d: layout ports are not consecutive", offSleepControl, offSleepStatus, offReset)
	}
}

func slpTyp(typ byte) byte { return typ << slpTypShift }

// op is a register write, or a read expecting want.
type op struct {
	write     bool
	off       uint64
	val, want byte
}

func w(off uint64, v byte) op    { return op{write: true, off: off, val: v} }
func r(off uint64, want byte) op { return op{off: off, want: want} }

func TestRegisters(t *testing.T) {
	tests := []struct {
		name             string
		ops              []op
		poweroffs, reset int
	}{
		{"power-on reads", []op{r(offSleepControl, 0), r(offSleepStatus, 0), r(offReset, 0)}, 0, 0},
		{"S5", []op{w(offSleepControl, slpEn|slpTyp(layout.SleepTypeS5))}, 1, 0},
		{"S5 type without SLP_EN", []op{w(offSleepControl, slpTyp(layout.SleepTypeS5)), r(offSleepStatus, 0)}, 0, 0},
		{"S5 with reserved bits set", []op{w(offSleepControl, 0xc3|slpEn|slpTyp(layout.SleepTypeS5))}, 1, 0},
		{"unsupported sleep wakes at once", []op{
			w(offSleepStatus, wakSts), w(offSleepControl, slpEn|slpTyp(3)), r(offSleepStatus, wakSts),
			r(offSleepControl, 0), w(offSleepStatus, 0), r(offSleepStatus, wakSts), // writing 0 does not clear
			w(offSleepStatus, wakSts), r(offSleepStatus, 0),
		}, 0, 0},
		{"reset", []op{w(offReset, layout.ResetValue)}, 0, 1},
		{"other reset values ignored", []op{w(offReset, layout.ResetValue+1), w(offReset, 0)}, 0, 0},
		{"beyond the block", []op{w(3, layout.ResetValue), r(3, 0xff)}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var poweroffs, resets int
			p := New(func() { poweroffs++ }, func() { resets++ })
			for i, o := range tt.ops {
				b := []byte{o.val}
				if o.write {
					p.Write(o.off, b)
					continue
				}
				p.Read(o.off, b)
				if b[0] != o.want {
					t.Fatalf("op %d: read %d = %#x, want %#x", i, o.off, b[0], o.want)
				}
			}
			if poweroffs != tt.poweroffs || resets != tt.reset {
				t.Fatalf("poweroff %d reset %d, want %d %d", poweroffs, resets, tt.poweroffs, tt.reset)
			}
		})
	}
}

func TestWideAccess(t *testing.T) {
	var resets int
	p := New(nil, func() { resets++ })
	p.Write(offSleepControl, []byte{slpEn | slpTyp(1), 0, layout.ResetValue})
	if resets != 1 {
		t.Fatalf("resets %d", resets)
	}
	got := make([]byte, 4)
	p.Read(offSleepControl, got)
	if !bytes.Equal(got, []byte{0, wakSts, 0, 0xff}) {
		t.Fatalf("wide read %x", got)
	}
	p.Read(^uint64(0), got[:2])
	if !bytes.Equal(got[:2], []byte{0xff, 0xff}) {
		t.Fatalf("wrapping read %x", got[:2])
	}
	New(nil, nil).Write(offSleepControl, []byte{slpEn | slpTyp(layout.SleepTypeS5)}) // nil callbacks allowed
}

// TestCallbacksOutsideLock checks poweroff may read the block without deadlock.
func TestCallbacksOutsideLock(t *testing.T) {
	var p *PM
	var seen byte = 1
	p = New(func() {
		b := []byte{0}
		p.Read(offSleepStatus, b)
		seen = b[0]
	}, nil)
	p.Write(offSleepControl, []byte{slpEn | slpTyp(layout.SleepTypeS5)})
	if seen != 0 {
		t.Fatalf("poweroff saw status %#x", seen)
	}
}

func TestConcurrentAccess(t *testing.T) {
	var mu sync.Mutex
	resets := 0
	p := New(nil, func() { mu.Lock(); resets++; mu.Unlock() })
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			b := []byte{0}
			for range 250 {
				p.Write(offSleepControl, []byte{slpEn | slpTyp(2)})
				p.Read(offSleepStatus, b)
				p.Write(offReset, []byte{layout.ResetValue})
			}
		})
	}
	wg.Wait()
	if resets != 1000 {
		t.Fatalf("resets %d, want 1000", resets)
	}
}
