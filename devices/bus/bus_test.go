package bus

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// recorder remembers the last access it saw and answers reads with its tag.
type recorder struct {
	mu      sync.Mutex
	tag     byte
	lastOff uint64
	lastLen int
	writes  [][]byte
}

func (r *recorder) Read(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastOff, r.lastLen = off, len(data)
	for i := range data {
		data[i] = r.tag
	}
}

func (r *recorder) Write(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastOff, r.lastLen = off, len(data)
	r.writes = append(r.writes, append([]byte(nil), data...))
}

func TestRegisterRanges(t *testing.T) {
	tests := []struct {
		name       string
		base, size uint64
		want       error // nil, ErrOverlap or ErrBadRange
	}{
		{"adjacent below", 0x100, 0x100, nil},
		{"adjacent above", 0x300, 0x10, nil},
		{"identical", 0x200, 0x100, ErrOverlap},
		{"contained", 0x240, 0x10, ErrOverlap},
		{"containing", 0x1f0, 0x200, ErrOverlap},
		{"straddles start", 0x1ff, 0x2, ErrOverlap},
		{"straddles end", 0x2ff, 0x2, ErrOverlap},
		{"one byte at last", 0x2ff, 0x1, ErrOverlap},
		{"zero size", 0x1000, 0, ErrBadRange},
		{"wraps", math.MaxUint64 - 1, 3, ErrBadRange},
		{"ends at top", math.MaxUint64 - 1, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New("pio")
			if err := b.Register(0x200, 0x100, &recorder{}, "existing"); err != nil {
				t.Fatal(err)
			}
			err := b.Register(tt.base, tt.size, &recorder{}, "new")
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Register: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Register = %v, want %v", err, tt.want)
			}
			if tt.want == ErrOverlap && (!strings.Contains(err.Error(), "existing") || !strings.Contains(err.Error(), "new")) {
				t.Fatalf("overlap error %q does not name both devices", err)
			}
		})
	}
}

func TestRegisterOverlapWithLaterNeighbour(t *testing.T) {
	b := New("mmio")
	for _, base := range []uint64{0x1000, 0x3000, 0x5000} {
		if err := b.Register(base, 0x1000, &recorder{}, fmt.Sprintf("d%x", base)); err != nil {
			t.Fatal(err)
		}
	}
	// Fits the gap at its start but runs into d3000.
	err := b.Register(0x2000, 0x1001, &recorder{}, "wide")
	if !errors.Is(err, ErrOverlap) || !strings.Contains(err.Error(), "d3000") {
		t.Fatalf("Register = %v, want overlap with d3000", err)
	}
	if err := b.Register(0x2000, 0x1000, &recorder{}, "gap"); err != nil {
		t.Fatalf("exact gap: %v", err)
	}
	if err := b.Register(0, 0x1000, nil, "nil"); err == nil {
		t.Fatal("nil device accepted")
	}
}

func TestDispatchOffsets(t *testing.T) {
	b := New("pio")
	a, c := &recorder{tag: 0xaa}, &recorder{tag: 0xcc}
	if err := b.Register(0x3f8, 8, a, "com1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(0x60, 5, c, "i8042"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr    uint64
		n       int
		dev     *recorder
		wantOff uint64
	}{
		{0x3f8, 1, a, 0},
		{0x3fd, 1, a, 5},
		{0x3ff, 2, a, 7}, // starts inside, runs past the end: still the device's
		{0x60, 1, c, 0},
		{0x64, 4, c, 4},
	}
	for _, tt := range tests {
		data := make([]byte, tt.n)
		if !b.Read(tt.addr, data) {
			t.Fatalf("read %#x unclaimed", tt.addr)
		}
		if tt.dev.lastOff != tt.wantOff || tt.dev.lastLen != tt.n {
			t.Errorf("read %#x: device saw off %d len %d, want %d %d", tt.addr, tt.dev.lastOff, tt.dev.lastLen, tt.wantOff, tt.n)
		}
		if !bytes.Equal(data, bytes.Repeat([]byte{tt.dev.tag}, tt.n)) {
			t.Errorf("read %#x = %x", tt.addr, data)
		}
		if !b.Write(tt.addr, []byte{1, 2, 3, 4}[:tt.n]) {
			t.Fatalf("write %#x unclaimed", tt.addr)
		}
		if tt.dev.lastOff != tt.wantOff {
			t.Errorf("write %#x: device saw off %d, want %d", tt.addr, tt.dev.lastOff, tt.wantOff)
		}
	}
	if s := b.Stats(); s.UnclaimedReads != 0 || s.UnclaimedWrites != 0 || s.ByAddr != nil {
		t.Fatalf("stats after claimed accesses: %+v", s)
	}
}

func TestUnclaimed(t *testing.T) {
	b := New("pio")
	d := &recorder{tag: 1}
	if err := b.Register(0x70, 2, d, "cmos"); err != nil {
		t.Fatal(err)
	}
	data := []byte{0, 0, 0, 0}
	for _, addr := range []uint64{0x6f, 0x72, 0, math.MaxUint64} {
		if b.Read(addr, data) {
			t.Fatalf("read %#x claimed", addr)
		}
		if !bytes.Equal(data, []byte{0xff, 0xff, 0xff, 0xff}) {
			t.Fatalf("unclaimed read %#x = %x", addr, data)
		}
	}
	if b.Write(0x72, []byte{1}) || b.Write(0x6f, []byte{1}) {
		t.Fatal("unclaimed write claimed")
	}
	if len(d.writes) != 0 {
		t.Fatalf("device got unclaimed writes %x", d.writes)
	}
	s := b.Stats()
	if s.UnclaimedReads != 4 || s.UnclaimedWrites != 2 {
		t.Fatalf("stats %+v", s)
	}
	want := map[uint64]uint64{0x6f: 2, 0x72: 2, 0: 1, math.MaxUint64: 1}
	if !reflect.DeepEqual(s.ByAddr, want) {
		t.Fatalf("per-address counts %v, want %v", s.ByAddr, want)
	}
}

func TestUnclaimedAddressesBounded(t *testing.T) {
	b := New("mmio")
	for a := uint64(0); a < 10*maxTrackedAddrs; a++ {
		b.Read(a, make([]byte, 1))
	}
	b.Read(0, make([]byte, 1))
	s := b.Stats()
	if s.UnclaimedReads != 10*maxTrackedAddrs+1 || len(s.ByAddr) != maxTrackedAddrs || s.ByAddr[0] != 2 {
		t.Fatalf("stats %d reads, %d addresses, addr 0: %d", s.UnclaimedReads, len(s.ByAddr), s.ByAddr[0])
	}
}

func TestZeroValueBus(t *testing.T) {
	var b Bus
	if b.Read(0, make([]byte, 1)) || b.Write(0, []byte{0}) {
		t.Fatal("empty bus claimed an access")
	}
	if err := b.Unregister(0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Unregister on empty bus = %v", err)
	}
}

func TestUnregister(t *testing.T) {
	b := New("mmio")
	d1, d2 := &recorder{tag: 1}, &recorder{tag: 2}
	if err := b.Register(0x1000, 0x1000, d1, "bar0"); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(0x3000, 0x1000, d2, "bar1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unregister(0x1800); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Unregister inside a range = %v, want ErrNotFound", err)
	}
	if err := b.Unregister(0x1000); err != nil {
		t.Fatal(err)
	}
	if b.Read(0x1000, make([]byte, 4)) {
		t.Fatal("read after unregister claimed")
	}
	// The BAR moves: its old place is free and the new one dispatches.
	if err := b.Register(0x2000, 0x1000, d1, "bar0"); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1)
	if !b.Read(0x2fff, data) || data[0] != 1 || d1.lastOff != 0xfff {
		t.Fatalf("moved bar: data %x off %#x", data, d1.lastOff)
	}
	if !b.Read(0x3000, data) || data[0] != 2 {
		t.Fatalf("neighbour after move: %x", data)
	}
}

// TestConcurrentDispatch runs lookups while registrations change; run with -race.
func TestConcurrentDispatch(t *testing.T) {
	b := New("pio")
	stable := &recorder{tag: 7}
	if err := b.Register(0x10, 1, stable, "stable"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			data := make([]byte, 1)
			for range 2000 {
				if !b.Read(0x10, data) || data[0] != 7 {
					errs <- fmt.Errorf("stable device lost: %x", data)
					return
				}
			}
		})
	}
	for i := range 200 {
		if err := b.Register(0x100, 4, &recorder{}, "flapping"); err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
		if err := b.Unregister(0x100); err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

type nopDevice struct{}

func (nopDevice) Read(_ uint64, data []byte) { data[0] = 0 }
func (nopDevice) Write(uint64, []byte)       {}

func BenchmarkBusRead(b *testing.B) {
	bus := New("pio")
	for i := range 16 {
		if err := bus.Register(uint64(i)*0x100, 8, nopDevice{}, fmt.Sprintf("d%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.RunParallel(func(pb *testing.PB) {
		data := make([]byte, 1)
		addr := uint64(0)
		for pb.Next() {
			bus.Read(addr*0x100+3, data)
			addr = (addr + 5) & 15
		}
	})
}

func TestHotAddresses(t *testing.T) {
	b := NewCounting("pio")
	for _, r := range []struct {
		base, size uint64
		name       string
	}{{0x3f8, 8, "serial"}, {0x608, 4, "pm-timer"}, {0x1000, 0x100, "wide"}} {
		if err := b.Register(r.base, r.size, &recorder{}, r.name); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 4)
	for range 5 {
		b.Read(0x608, buf)
	}
	for range 3 {
		b.Write(0x3fd, buf[:1])
	}
	b.Read(0x3f8, buf[:1])
	b.Read(0x1000+maxCountedOffsets-1, buf[:1])
	b.Write(0x10ff, buf[:1])
	b.Read(0x2000, buf) // unclaimed: not hot
	want := []Hit{
		{Addr: 0x608, Device: "pm-timer", Count: 5},
		{Addr: 0x3fd, Device: "serial", Count: 3},
		{Addr: 0x1000 + maxCountedOffsets - 1, Device: "wide", Count: 2, Clamped: true},
		{Addr: 0x3f8, Device: "serial", Count: 1},
	}
	if got := b.Stats().Hot; !reflect.DeepEqual(got, want) {
		t.Fatalf("hot %+v, want %+v", got, want)
	}
	if got := New("mmio"); got.Register(0, 8, &recorder{}, "d") != nil || !got.Read(0, buf) || got.Stats().Hot != nil {
		t.Fatalf("a plain bus counts: %+v", got.Stats().Hot)
	}
}

func TestHotBounded(t *testing.T) {
	b := NewCounting("pio")
	if err := b.Register(0, 2*maxHot, &recorder{}, "d"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	for a := range uint64(2 * maxHot) {
		for range a + 1 {
			b.Read(a, buf)
		}
	}
	hot := b.Stats().Hot
	if len(hot) != maxHot || hot[0].Addr != 2*maxHot-1 || hot[0].Count != 2*maxHot || hot[maxHot-1].Addr != maxHot {
		t.Fatalf("hot %+v", hot)
	}
}
