package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/vmmdev/vmm/devices/internal/fakeram"
)

// flatMem is guest RAM at [0, len(b)).
type flatMem = fakeram.RAM

const (
	tDesc  = 0x1000
	tAvail = 0x2000
	tUsed  = 0x3000
	tData  = 0x8000
)

// driver plays the guest side of a queue in a flatMem.
type driver struct {
	mem   flatMem
	size  uint16
	avail uint16
}

func newDriver(size uint16) *driver {
	return &driver{mem: make(flatMem, 0x20000), size: size}
}

func (d *driver) setDesc(i uint16, addr uint64, n uint32, flags, next uint16) {
	b := d.mem[tDesc+16*int(i):]
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

func (d *driver) offer(head uint16) {
	binary.LittleEndian.PutUint16(d.mem[tAvail+4+2*int(d.avail%d.size):], head)
	d.avail++
	binary.LittleEndian.PutUint16(d.mem[tAvail+2:], d.avail)
}

func (d *driver) u16(at int) uint16 { return binary.LittleEndian.Uint16(d.mem[at:]) }

func (d *driver) queue(t *testing.T, eventIdx, indirect bool) *Queue {
	t.Helper()
	q, err := New(d.mem, Config{Size: d.size, Desc: tDesc, Avail: tAvail, Used: tUsed, EventIdx: eventIdx, Indirect: indirect})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestChainAndUsed(t *testing.T) {
	d := newDriver(8)
	copy(d.mem[tData:], "request!")
	d.setDesc(3, tData, 4, descNext, 5)
	d.setDesc(5, tData+4, 4, descNext, 1)
	d.setDesc(1, tData+0x100, 16, descNext|descWrite, 2)
	d.setDesc(2, tData+0x200, 1, descWrite, 0)
	d.offer(3)
	q := d.queue(t, false, false)
	if !q.Pending() {
		t.Fatal("Pending is false with a chain offered")
	}
	c, ok, err := q.Next()
	if err != nil || !ok {
		t.Fatalf("Next: %v %v", ok, err)
	}
	if c.Head != 3 || len(c.Readable) != 2 || len(c.Writable) != 2 || c.ReadableLen() != 8 || c.WritableLen() != 17 {
		t.Fatalf("chain %+v", c)
	}
	req := make([]byte, 16)
	if n := Gather(req, c.Readable); n != 8 || string(req[:n]) != "request!" {
		t.Fatalf("gathered %q", req[:n])
	}
	if n := Scatter(c.Writable, []byte("0123456789abcdefZ")); n != 17 || string(d.mem[tData+0x100:tData+0x110]) != "0123456789abcdef" || d.mem[tData+0x200] != 'Z' {
		t.Fatalf("scatter wrote %d", n)
	}
	if _, ok, err := q.Next(); ok || err != nil {
		t.Fatalf("second Next: %v %v", ok, err)
	}
	if err := q.Push(c.Head, 17); err != nil {
		t.Fatal(err)
	}
	if d.u16(tUsed+2) != 1 || binary.LittleEndian.Uint32(d.mem[tUsed+4:]) != 3 || binary.LittleEndian.Uint32(d.mem[tUsed+8:]) != 17 {
		t.Fatalf("used ring % x", d.mem[tUsed:tUsed+12])
	}
	if !q.NeedInterrupt() {
		t.Fatal("no interrupt without NO_INTERRUPT")
	}
	if q.NeedInterrupt() {
		t.Fatal("interrupt with nothing new pushed")
	}
	if err := q.Push(8, 0); !errors.Is(err, ErrUsedElement) {
		t.Fatalf("Push(8) = %v", err)
	}
}

func TestNoInterruptFlag(t *testing.T) {
	d := newDriver(4)
	d.setDesc(0, tData, 1, 0, 0)
	d.offer(0)
	binary.LittleEndian.PutUint16(d.mem[tAvail:], availNoInterrupt)
	q := d.queue(t, false, false)
	c, _, _ := q.Next()
	_ = q.Push(c.Head, 0)
	if q.NeedInterrupt() {
		t.Fatal("interrupt despite VIRTQ_AVAIL_F_NO_INTERRUPT")
	}
}

func TestEventIdx(t *testing.T) {
	d := newDriver(8)
	for i := range uint16(4) {
		d.setDesc(i, tData, 1, 0, 0)
		d.offer(i)
	}
	q := d.queue(t, true, false)
	usedEvent := tAvail + 4 + 2*8
	// The driver wants an interrupt once the used index passes 2.
	binary.LittleEndian.PutUint16(d.mem[usedEvent:], 2)
	var irqs []bool
	for range 4 {
		c, ok, err := q.Next()
		if !ok || err != nil {
			t.Fatal(ok, err)
		}
		_ = q.Push(c.Head, 0)
		irqs = append(irqs, q.NeedInterrupt())
	}
	if fmt.Sprint(irqs) != "[false false true false]" {
		t.Fatalf("interrupts after each push: %v", irqs)
	}
	// avail_event tells the driver which index to notify at.
	availEvent := tUsed + 4 + 8*8
	binary.LittleEndian.PutUint16(d.mem[availEvent+2:], 0xbeef) // not the queue's: must survive
	if q.EnableNotify() {
		t.Fatal("EnableNotify reports pending chains on an empty ring")
	}
	if d.u16(availEvent) != 4 || d.u16(availEvent+2) != 0xbeef {
		t.Fatalf("avail_event %d, neighbour %#x", d.u16(availEvent), d.u16(availEvent+2))
	}
	d.offer(0)
	if !q.EnableNotify() {
		t.Fatal("EnableNotify misses a chain made available")
	}
}

func TestIndirect(t *testing.T) {
	d := newDriver(4)
	const table = 0x6000
	put := func(i int, addr uint64, n uint32, flags, next uint16) {
		b := d.mem[table+16*i:]
		binary.LittleEndian.PutUint64(b, addr)
		binary.LittleEndian.PutUint32(b[8:], n)
		binary.LittleEndian.PutUint16(b[12:], flags)
		binary.LittleEndian.PutUint16(b[14:], next)
	}
	put(0, tData, 10, descNext, 2)
	put(2, tData+10, 20, descNext|descWrite, 1)
	put(1, tData+30, 1, descWrite, 0)
	d.setDesc(1, table, 3*16, descIndirect, 0)
	d.offer(1)
	q := d.queue(t, false, true)
	c, ok, err := q.Next()
	if err != nil || !ok || c.Head != 1 || c.ReadableLen() != 10 || c.WritableLen() != 21 {
		t.Fatalf("indirect chain %+v %v %v", c, ok, err)
	}
	// Without the feature negotiated the same chain is a protocol error.
	d2 := newDriver(4)
	copy(d2.mem, d.mem)
	d2.avail = d.avail
	q2 := d2.queue(t, false, false)
	if _, _, err := q2.Next(); !errors.Is(err, ErrIndirect) {
		t.Fatalf("indirect without feature: %v", err)
	}
}

func TestHostileChains(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(d *driver)
		want  error
	}{
		{"loop", func(d *driver) {
			d.setDesc(0, tData, 1, descNext, 1)
			d.setDesc(1, tData, 1, descNext, 0)
			d.offer(0)
		}, ErrLoop},
		{"self loop", func(d *driver) {
			d.setDesc(2, tData, 1, descNext, 2)
			d.offer(2)
		}, ErrLoop},
		{"outside memory", func(d *driver) {
			d.setDesc(0, 0x1ffff, 2, 0, 0)
			d.offer(0)
		}, ErrOutOfRange},
		{"address wraps", func(d *driver) {
			d.setDesc(0, ^uint64(0), 0x10, 0, 0)
			d.offer(0)
		}, ErrOutOfRange},
		{"zero length", func(d *driver) {
			d.setDesc(0, tData, 0, 0, 0)
			d.offer(0)
		}, ErrZeroLength},
		{"wrong direction", func(d *driver) {
			d.setDesc(0, tData, 1, descNext|descWrite, 1)
			d.setDesc(1, tData, 1, 0, 0)
			d.offer(0)
		}, ErrDirection},
		{"head out of range", func(d *driver) { d.offer(9) }, ErrHead},
		{"next out of range", func(d *driver) {
			d.setDesc(0, tData, 1, descNext, 4)
			d.offer(0)
		}, ErrHead},
		{"avail idx jump", func(d *driver) {
			binary.LittleEndian.PutUint16(d.mem[tAvail+2:], 5)
		}, ErrAvailIdx},
		{"nested indirect", func(d *driver) {
			binary.LittleEndian.PutUint16(d.mem[0x6000+12:], descIndirect)
			binary.LittleEndian.PutUint32(d.mem[0x6000+8:], 16)
			d.setDesc(0, 0x6000, 16, descIndirect, 0)
			d.offer(0)
		}, ErrIndirect},
		{"indirect with next", func(d *driver) {
			d.setDesc(0, 0x6000, 16, descIndirect|descNext, 1)
			d.offer(0)
		}, ErrIndirect},
		{"indirect odd size", func(d *driver) {
			d.setDesc(0, 0x6000, 15, descIndirect, 0)
			d.offer(0)
		}, ErrIndirect},
		{"indirect loop", func(d *driver) {
			b := d.mem[0x6000:]
			binary.LittleEndian.PutUint64(b, tData)
			binary.LittleEndian.PutUint32(b[8:], 1)
			binary.LittleEndian.PutUint16(b[12:], descNext)
			d.setDesc(0, 0x6000, 16, descIndirect, 0)
			d.offer(0)
		}, ErrLoop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(4)
			tc.setup(d)
			q := d.queue(t, false, true)
			_, ok, err := q.Next()
			if ok || !errors.Is(err, tc.want) {
				t.Fatalf("Next = %v, %v; want %v", ok, err, tc.want)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	m := make(flatMem, 0x10000)
	for _, c := range []Config{
		{Size: 0, Desc: tDesc, Avail: tAvail, Used: tUsed},
		{Size: 3, Desc: tDesc, Avail: tAvail, Used: tUsed},
		{Size: 1000, Desc: tDesc, Avail: tAvail, Used: tUsed},
		{Size: 8, Desc: tDesc + 8, Avail: tAvail, Used: tUsed},
		{Size: 8, Desc: tDesc, Avail: tAvail + 1, Used: tUsed},
		{Size: 8, Desc: tDesc, Avail: tAvail, Used: tUsed + 2},
		{Size: 8, Desc: 0xfff0, Avail: tAvail, Used: tUsed},
		{Size: 8, Desc: tDesc, Avail: tAvail, Used: ^uint64(3)},
	} {
		if _, err := New(m, c); !errors.Is(err, ErrBadConfig) {
			t.Errorf("New(%+v) = %v, want ErrBadConfig", c, err)
		}
	}
	// An avail ring at a 2-byte (not 4-byte) boundary is legal.
	if _, err := New(m, Config{Size: 8, Desc: 0, Avail: 0x4002, Used: 0x8000}); err != nil {
		t.Fatal(err)
	}
}
