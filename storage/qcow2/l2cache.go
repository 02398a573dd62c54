package qcow2

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// l2CacheMaxBytes bounds the L2 cache of one image, as QEMU's default
// l2-cache-size does on Linux (32 MiB); like QEMU's, the cache never holds
// more than the tables the whole disk needs, and holds only tables read.
const l2CacheMaxBytes = 32 << 20

// l2Cache keeps decoded L2 tables by L1 index, so a read costs one pread of
// data rather than one of metadata too. The image file stays the truth:
// every L2 write goes to the file first, then to the cached table
// (writeEntries), and an entry remembers the table offset it was read
// from, so a table that moved (writableL2's copy) is never served stale.
//
// Locking: the tables' contents change only with Image.mu held
// exclusively, so a reader holding it shared may use a table without
// copying; the cache's own lock guards the map, which readers fill.
type l2Cache struct {
	mu    sync.RWMutex
	max   int
	clock atomic.Uint64
	m     map[uint64]*l2Entry // by L1 index
}

type l2Entry struct {
	table   uint64   // host offset of the table
	es      []uint64 // its entries
	lastUse atomic.Uint64
}

func newL2Cache(clusterSize uint64, l1Size uint32) *l2Cache {
	n := max(1, min(int(l1Size), int(l2CacheMaxBytes/clusterSize)))
	return &l2Cache{max: n, m: make(map[uint64]*l2Entry, min(n, 64))}
}

// get returns the cached entries of L1 index i if they were read from the
// table at host offset t.
func (c *l2Cache) get(i, t uint64) []uint64 {
	c.mu.RLock()
	e := c.m[i]
	c.mu.RUnlock()
	if e == nil || e.table != t {
		return nil
	}
	e.lastUse.Store(c.clock.Add(1))
	return e.es
}

// put caches es as the table of L1 index i at host offset t, evicting the
// least recently used table when full.
func (c *l2Cache) put(i, t uint64, es []uint64) {
	e := &l2Entry{table: t, es: es}
	e.lastUse.Store(c.clock.Add(1))
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[i]; !ok && len(c.m) >= c.max {
		var victim uint64
		oldest := uint64(1<<64 - 1)
		for k, v := range c.m {
			if u := v.lastUse.Load(); u < oldest {
				victim, oldest = k, u
			}
		}
		delete(c.m, victim)
	}
	c.m[i] = e
}

// drop forgets L1 index i's table.
func (c *l2Cache) drop(i uint64) {
	c.mu.Lock()
	delete(c.m, i)
	c.mu.Unlock()
}

// len is the number of cached tables (tests).
func (c *l2Cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// decodeL2 decodes a raw L2 table.
func decodeL2(raw []byte) []uint64 {
	es := make([]uint64, len(raw)/8)
	for i := range es {
		es[i] = binary.BigEndian.Uint64(raw[i*8:])
	}
	return es
}
