package bus

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Sentinel errors of Register and Unregister, for errors.Is.
var (
	// ErrOverlap means the range collides with one already registered.
	ErrOverlap = errors.New("address range overlaps a registered device")
	// ErrBadRange means a zero-sized range or one that wraps past the top of the address space.
	ErrBadRange = errors.New("invalid address range")
	// ErrNotFound means no device is registered at that base.
	ErrNotFound = errors.New("no device registered at base")
)

// Stats counts accesses no device claimed: a guest probing for absent
// hardware, or a device missing from the platform.
type Stats struct {
	UnclaimedReads, UnclaimedWrites uint64
	// ByAddr counts unclaimed accesses per address, for the first
	// maxTrackedAddrs distinct addresses (enough to name what a guest probes).
	ByAddr map[uint64]uint64 `json:",omitempty"`
	// Hot are the claimed addresses with the most accesses, most first
	// (at most maxHot), on a bus made by NewCounting; nil otherwise.
	Hot []Hit `json:",omitempty"`
}

// Hit counts the accesses to one claimed address and names its device. An
// access whose offset is beyond a device's maxCountedOffsets-th address is
// counted at that last address (Clamped).
type Hit struct {
	Addr    uint64
	Device  string
	Count   uint64
	Clamped bool `json:",omitempty"`
}

// maxCountedOffsets bounds a device's per-address counters: port I/O
// devices span a few ports, and a wider one keeps its first ones exact.
const maxCountedOffsets = 64

// maxHot is how many addresses Stats names in Hot.
const maxHot = 16

// maxTrackedAddrs bounds the per-address counters: a guest sweeping the
// address space cannot grow them.
const maxTrackedAddrs = 64

type entry struct {
	base, last uint64 // last is inclusive so a range may end at the top of the address space
	dev        Device
	name       string
	// hits counts accesses per offset (the last slot also those beyond it);
	// nil on a bus that does not count. Shared by the entry's copies.
	hits []atomic.Uint64
}

// count notes one access at offset off of e.
func (e *entry) count(off uint64) {
	if len(e.hits) == 0 {
		return
	}
	e.hits[min(off, uint64(len(e.hits)-1))].Add(1)
}

// Bus is one address space (port I/O or MMIO). Lookups are lock-free: the
// sorted entry slice is replaced wholesale on (rare) registration changes, so
// many vCPUs can dispatch at once without contending on a lock.
type Bus struct {
	name    string
	counts  bool                    // count accesses per claimed address (NewCounting)
	mu      sync.Mutex              // serialises writers of entries
	entries atomic.Pointer[[]entry] // sorted by base, never mutated in place

	unclaimedReads, unclaimedWrites atomic.Uint64
	addrMu                          sync.Mutex
	byAddr                          map[uint64]uint64
}

// countUnclaimed notes one unclaimed access at addr. Unclaimed accesses are
// the slow path already (a guest probing), so a lock here costs nothing
// that matters.
func (b *Bus) countUnclaimed(addr uint64) {
	b.addrMu.Lock()
	defer b.addrMu.Unlock()
	if b.byAddr == nil {
		b.byAddr = make(map[uint64]uint64)
	}
	if _, ok := b.byAddr[addr]; ok || len(b.byAddr) < maxTrackedAddrs {
		b.byAddr[addr]++
	}
}

// New returns an empty bus; name appears in errors ("pio", "mmio").
func New(name string) *Bus {
	return &Bus{name: name}
}

// NewCounting returns an empty bus that also counts the accesses to each
// claimed address, for Stats.Hot: where a guest's exits go. Port I/O
// exits are few enough that an atomic add per access costs nothing.
func NewCounting(name string) *Bus {
	return &Bus{name: name, counts: true}
}

func (b *Bus) snapshot() []entry {
	if p := b.entries.Load(); p != nil {
		return *p
	}
	return nil
}

// upper returns the index of the first entry whose base is above addr.
func upper(es []entry, addr uint64) int {
	lo, hi := 0, len(es)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if es[mid].base <= addr {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

func (b *Bus) find(addr uint64) (entry, bool) {
	es := b.snapshot()
	i := upper(es, addr) - 1
	if i < 0 || addr > es[i].last {
		return entry{}, false
	}
	return es[i], true
}

// Register maps [base, base+size) to d. Ranges may touch but not overlap.
func (b *Bus) Register(base, size uint64, d Device, name string) error {
	if size == 0 || base+(size-1) < base {
		return fmt.Errorf("%s bus: register %s at %#x size %#x: %w", b.name, name, base, size, ErrBadRange)
	}
	if d == nil {
		return fmt.Errorf("%s bus: register %s at %#x: nil device", b.name, name, base)
	}
	last := base + (size - 1)
	b.mu.Lock()
	defer b.mu.Unlock()
	es := b.snapshot()
	i := upper(es, base)
	// Ranges are disjoint and sorted, so only the neighbours can collide.
	for _, j := range []int{i - 1, i} {
		if j < 0 || j >= len(es) {
			continue
		}
		if o := es[j]; o.base <= last && base <= o.last {
			return fmt.Errorf("%s bus: %s [%#x, %#x] and %s [%#x, %#x]: %w",
				b.name, name, base, last, o.name, o.base, o.last, ErrOverlap)
		}
	}
	next := make([]entry, 0, len(es)+1)
	next = append(next, es[:i]...)
	e := entry{base: base, last: last, dev: d, name: name}
	if b.counts {
		e.hits = make([]atomic.Uint64, min(size, maxCountedOffsets))
	}
	next = append(next, e)
	next = append(next, es[i:]...)
	b.entries.Store(&next)
	return nil
}

// Unregister removes the device registered at exactly base (a PCI BAR being moved).
func (b *Bus) Unregister(base uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	es := b.snapshot()
	i := upper(es, base) - 1
	if i < 0 || es[i].base != base {
		return fmt.Errorf("%s bus: unregister %#x: %w", b.name, base, ErrNotFound)
	}
	next := make([]entry, 0, len(es)-1)
	next = append(next, es[:i]...)
	next = append(next, es[i+1:]...)
	b.entries.Store(&next)
	return nil
}

// Read dispatches a read at addr to the device whose range contains addr; an
// access that starts inside a device belongs to it even if it runs past the
// end. It reports false when no device claims addr, and then fills data with
// all ones, as an undriven bus reads.
func (b *Bus) Read(addr uint64, data []byte) bool {
	e, ok := b.find(addr)
	if !ok {
		for i := range data {
			data[i] = 0xff
		}
		b.unclaimedReads.Add(1)
		b.countUnclaimed(addr)
		return false
	}
	e.count(addr - e.base)
	e.dev.Read(addr-e.base, data)
	return true
}

// Write dispatches like Read; an unclaimed write is dropped and counted.
func (b *Bus) Write(addr uint64, data []byte) bool {
	e, ok := b.find(addr)
	if !ok {
		b.unclaimedWrites.Add(1)
		b.countUnclaimed(addr)
		return false
	}
	e.count(addr - e.base)
	e.dev.Write(addr-e.base, data)
	return true
}

// Stats returns the unclaimed-access counters.
func (b *Bus) Stats() Stats {
	s := Stats{UnclaimedReads: b.unclaimedReads.Load(), UnclaimedWrites: b.unclaimedWrites.Load()}
	b.addrMu.Lock()
	defer b.addrMu.Unlock()
	if len(b.byAddr) > 0 {
		s.ByAddr = make(map[uint64]uint64, len(b.byAddr))
		for a, n := range b.byAddr {
			s.ByAddr[a] = n
		}
	}
	s.Hot = b.hot()
	return s
}

// hot returns the maxHot claimed addresses with the most accesses.
func (b *Bus) hot() []Hit {
	var hits []Hit
	for _, e := range b.snapshot() {
		for off := range e.hits {
			if n := e.hits[off].Load(); n > 0 {
				clamped := off == len(e.hits)-1 && e.last-e.base >= uint64(len(e.hits))
				hits = append(hits, Hit{Addr: e.base + uint64(off), Device: e.name, Count: n, Clamped: clamped})
			}
		}
	}
	slices.SortStableFunc(hits, func(a, b Hit) int { return cmp.Compare(b.Count, a.Count) })
	return hits[:min(len(hits), maxHot)]
}
