package qcow2

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestL2CacheCoherent reads through the image between every write, zeroing
// and discard, so reads are served from cached L2 tables that writes have
// just changed: in place, by allocation, by zeroing, and (with an internal
// snapshot sharing the tables) by copying a table to a new place. Every
// read must match a raw reference, and qemu-img must find the result
// consistent and equal to it.
func TestL2CacheCoherent(t *testing.T) {
	needQemuImg(t)
	needQemuIO(t)
	for _, c := range []struct {
		name string
		cs   int64
		snap bool
	}{{"512", 512, false}, {"4096-snapshot", 4096, true}, {"65536", 65536, false}} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.qcow2")
			const size = 2<<20 + 512
			run(t, "qemu-img", "create", "-f", "qcow2", "-o", fmt.Sprintf("cluster_size=%d", c.cs), path, fmt.Sprint(size))
			qemuIO(t, path, "write -P 0x33 0 1M", "write -z 1M 256k")
			if c.snap {
				run(t, "qemu-img", "snapshot", "-c", "s1", path)
			}
			ref := toRaw(t, path)
			img, err := Open(path, false)
			require.NoError(t, err)
			r := rand.New(rand.NewPCG(12, 13))
			requireSame(t, ref, readAll(t, img, r), "read before writes")
			require.Positive(t, img.l2.len(), "reads cached tables")
			for i, o := range randomOps(r, 80, size, c.cs) {
				require.NoError(t, o.apply(img), "%+v", o)
				o.applyRef(ref, c.cs, true)
				// The range written, widened to whole clusters, and one elsewhere.
				lo := o.off / c.cs * c.cs
				hi := min(size, (o.off+o.n+c.cs-1)/c.cs*c.cs)
				got := make([]byte, hi-lo)
				_, err := img.ReadAt(got, lo)
				require.NoError(t, err)
				requireSame(t, ref[lo:hi], got, fmt.Sprintf("op %d %+v", i, o))
				roff := r.Int64N(size - 4096)
				got = make([]byte, 4096)
				_, err = img.ReadAt(got, roff)
				require.NoError(t, err)
				requireSame(t, ref[roff:roff+4096], got, fmt.Sprintf("after op %d, at %d", i, roff))
			}
			requireSame(t, ref, readAll(t, img, r), "read after writes")
			require.LessOrEqual(t, img.l2.len(), img.l2.max)
			require.NoError(t, img.Close())
			qemuCheck(t, path, false)
			requireSame(t, ref, toRaw(t, path), "qemu-img's view")
		})
	}
}

// TestL2CacheBound: the cache holds at most what covers the disk and at
// most 32 MiB of tables (QEMU's default), and evicts the least recently
// used table when full.
func TestL2CacheBound(t *testing.T) {
	require.Equal(t, 8, newL2Cache(64<<10, 8).max, "a 4 GiB disk of 64 KiB clusters: 8 tables")
	require.Equal(t, 512, newL2Cache(64<<10, 2048).max, "1 TiB: 32 MiB of 64 KiB tables")
	require.Equal(t, 16, newL2Cache(2<<20, 4096).max)
	require.Equal(t, 1, newL2Cache(64<<10, 0).max)

	c := newL2Cache(64<<10, 3)
	for i := range uint64(3) {
		c.put(i, 0x10000*(i+1), []uint64{i})
	}
	require.Equal(t, []uint64{0}, c.get(0, 0x10000)) // 1 is now the least recently used
	require.Nil(t, c.get(2, 0x99999), "a table that moved is not served")
	c.put(3, 0x40000, []uint64{3})
	require.Equal(t, 3, c.len())
	require.Nil(t, c.get(1, 0x20000), "evicted")
	require.NotNil(t, c.get(0, 0x10000))
	require.NotNil(t, c.get(3, 0x40000))
	c.put(0, 0x50000, []uint64{9}) // replacing evicts nothing
	require.Equal(t, []uint64{9}, c.get(0, 0x50000))
	require.NotNil(t, c.get(2, 0x30000))
	c.drop(2)
	require.Nil(t, c.get(2, 0x30000))
}

// TestL2CacheConcurrent has goroutines write and read back their own
// stripes of one image at once (allocating writes that update cached
// tables, in-place writes and cached reads interleaved): every read must
// return what its goroutine last wrote. Run with -race too.
func TestL2CacheConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.qcow2")
	const size, stripe, workers = 8 << 20, 24 << 10, 4
	require.NoError(t, Create(path, size, "", &CreateOptions{ClusterSize: 4096}))
	img, err := Open(path, false)
	require.NoError(t, err)
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			r := rand.New(rand.NewPCG(uint64(w), 99))
			for round := range 30 {
				off := int64((r.IntN(size/stripe/workers)*workers + w) * stripe)
				data := pattern(r, stripe)
				if _, err := img.WriteAt(data, off); err != nil {
					errs <- err
					return
				}
				got := make([]byte, stripe)
				if err := img.ReadV([][]byte{got[:stripe/3], got[stripe/3:]}, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("worker %d round %d: stripe at %d reads back wrong", w, round, off)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		require.NoError(t, <-errs)
	}
	require.NoError(t, img.Close())
}
