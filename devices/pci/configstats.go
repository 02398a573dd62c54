package pci

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
)

// ConfigStats counts the guest's configuration accesses (both
// mechanisms): where its port I/O exits at 0xCF8-0xCFF go. A guest that
// probes for devices shows up as many accesses to absent functions, on
// as many buses.
type ConfigStats struct {
	Accesses uint64 `json:"accesses"`
	// Absent counts the accesses to functions that do not exist, and
	// AbsentBuses the bus numbers they named.
	Absent      uint64 `json:"absent"`
	AbsentBuses int    `json:"absent_buses"`
	// Functions are the functions accessed most, most first (at most
	// maxTopFunctions; absent ones included).
	Functions []FunctionAccesses `json:"functions,omitempty"`
}

// FunctionAccesses counts the configuration accesses to one function.
type FunctionAccesses struct {
	BDF      string `json:"bdf"` // "00:03.0"
	Present  bool   `json:"present"`
	Accesses uint64 `json:"accesses"`
}

// maxCountedFunctions bounds the per-function counters: a guest scanning
// every bus cannot grow them.
const maxCountedFunctions = 64

// maxTopFunctions is how many functions ConfigStats names.
const maxTopFunctions = 8

type configCounter struct {
	mu          sync.Mutex
	accesses    uint64
	absent      uint64
	absentBuses [256]bool
	byFn        map[uint16]*fnCount
}

type fnCount struct {
	n       uint64
	present bool
}

// note counts one access to bus:dev.fn.
func (c *configCounter) note(busNum, dev, fn uint64, present bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.accesses++
	if !present {
		c.absent++
		c.absentBuses[busNum&0xff] = true
	}
	key := uint16(busNum&0xff)<<8 | uint16(dev&0x1f)<<3 | uint16(fn&7)
	if c.byFn == nil {
		c.byFn = map[uint16]*fnCount{}
	}
	e := c.byFn[key]
	if e == nil {
		if len(c.byFn) >= maxCountedFunctions {
			return
		}
		e = &fnCount{present: present}
		c.byFn[key] = e
	}
	e.n++
}

// ConfigStats returns the configuration access counters.
func (b *Bus) ConfigStats() ConfigStats {
	c := &b.config
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ConfigStats{Accesses: c.accesses, Absent: c.absent}
	for _, a := range c.absentBuses {
		if a {
			s.AbsentBuses++
		}
	}
	keys := make([]uint16, 0, len(c.byFn))
	for k := range c.byFn {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y uint16) int {
		if d := cmp.Compare(c.byFn[y].n, c.byFn[x].n); d != 0 {
			return d
		}
		return cmp.Compare(x, y)
	})
	for _, k := range keys[:min(len(keys), maxTopFunctions)] {
		s.Functions = append(s.Functions, FunctionAccesses{
			BDF:     fmt.Sprintf("%02x:%02x.%d", k>>8, k>>3&0x1f, k&7),
			Present: c.byFn[k].present, Accesses: c.byFn[k].n,
		})
	}
	return s
}
