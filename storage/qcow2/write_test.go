package qcow2

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// op is one random write, zeroing or discard, applied alike to an image and
// to a raw reference.
type op struct {
	kind   int // 0 write, 1 write zeroes, 2 discard
	off, n int64
	seed   uint64
}

const (
	opWrite = iota
	opZero
	opDiscard
)

// randomOps makes n operations on a disk of size bytes: mostly small and
// unaligned, some spanning many clusters, some whole-cluster zeroings.
func randomOps(r *rand.Rand, n int, size, cs int64) []op {
	ops := make([]op, n)
	for i := range ops {
		o := op{kind: opWrite, seed: r.Uint64()}
		switch x := r.IntN(20); {
		case x < 13:
			o.n = 1 + r.Int64N(3*cs)
		case x < 16:
			o.n = 1 + r.Int64N(min(size, 40*cs))
		case x < 18:
			o.kind = opZero
			o.n = 1 + r.Int64N(min(size, 20*cs))
		default:
			o.kind = opDiscard
			o.n = 1 + r.Int64N(min(size, 20*cs))
		}
		o.n = min(o.n, size)
		o.off = r.Int64N(size - o.n + 1)
		if r.IntN(3) == 0 { // sector aligned, as a guest writes
			o.off &^= 511
			o.n = max(512, o.n&^511)
		}
		ops[i] = o
	}
	return ops
}

func (o op) data() []byte {
	b := make([]byte, o.n)
	r := rand.New(rand.NewPCG(o.seed, 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// apply does o on the image: a write with WriteAt, or (odd seeds) with
// WriteV from up to 9 pieces of the data, empty ones included.
func (o op) apply(img *Image) error {
	switch o.kind {
	case opWrite:
		if o.seed%2 == 0 {
			_, err := img.WriteAt(o.data(), o.off)
			return err
		}
		var bufs [][]byte
		r := rand.New(rand.NewPCG(o.seed, 8))
		for rest := o.data(); len(rest) > 0; {
			l := len(rest)
			if len(bufs) < 8 {
				l = min(l, r.IntN(len(rest)/2+2))
			}
			bufs, rest = append(bufs, rest[:l]), rest[l:]
		}
		return img.WriteV(bufs, o.off)
	case opZero:
		return img.WriteZeroes(o.off, o.n)
	}
	return img.Discard(o.off, o.n)
}

// applyRef does o on the raw reference. A discard is done as the image does
// it: only whole clusters, and nothing on v2 images with a backing file.
func (o op) applyRef(ref []byte, cs int64, discards bool) {
	switch o.kind {
	case opWrite:
		copy(ref[o.off:], o.data())
	case opZero:
		clear(ref[o.off : o.off+o.n])
	default:
		if !discards {
			return
		}
		first := (o.off + cs - 1) / cs * cs
		last := (o.off + o.n) / cs * cs
		if o.off+o.n == int64(len(ref)) {
			last = o.off + o.n
		}
		if first < last {
			clear(ref[first:last])
		}
	}
}

// TestWriteAgainstQemu writes through the package (random offsets and sizes,
// partial clusters, zeroing and discards) into images made by qemu-img and
// by Create, with and without backing files and compressed clusters, then
// has qemu-img check them (no leak, no corruption) and compare them with a
// raw disk written the same way.
func TestWriteAgainstQemu(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(5, 6))
	const size = 3<<20 + 512
	base := filepath.Join(dir, "base.raw")
	writeFile(t, base, pattern(r, 2<<20+4096)) // smaller than the overlays
	baseQ := filepath.Join(dir, "base.qcow2")
	run(t, "qemu-img", "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4096", base, baseQ)

	type tc struct {
		name    string
		cs      int64
		make    func(path string)
		v2      bool
		backing bool
	}
	var cases []tc
	for _, cs := range []int64{512, 4096, 65536, 2 << 20} {
		for _, compat := range []string{"0.10", "1.1"} {
			cases = append(cases, tc{name: fmt.Sprintf("qemu-v%s-%d", compat, cs), cs: cs, v2: compat == "0.10", make: func(path string) {
				run(t, "qemu-img", "create", "-f", "qcow2", "-o", fmt.Sprintf("compat=%s,cluster_size=%d", compat, cs), path, fmt.Sprint(size))
			}})
			cases = append(cases, tc{name: fmt.Sprintf("qemu-v%s-%d-backing", compat, cs), cs: cs, v2: compat == "0.10", backing: true, make: func(path string) {
				run(t, "qemu-img", "create", "-f", "qcow2", "-o", fmt.Sprintf("compat=%s,cluster_size=%d", compat, cs),
					"-b", "base.qcow2", "-F", "qcow2", path, fmt.Sprint(size))
			}})
		}
		cases = append(cases, tc{name: fmt.Sprintf("create-%d-raw-backing", cs), cs: cs, backing: true, make: func(path string) {
			require.NoError(t, Create(path, size, "base.raw", &CreateOptions{ClusterSize: int(cs)}))
		}})
	}
	cases = append(cases,
		// 4 KiB clusters (convert -o): discards free whole ones of that size.
		tc{name: "qemu-compressed-zlib", cs: 4096, make: func(path string) {
			run(t, "qemu-img", "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4096", base, path)
			run(t, "qemu-img", "resize", path, fmt.Sprint(size))
		}},
		tc{name: "qemu-compressed-zstd-v3", cs: 65536, make: func(path string) {
			run(t, "qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", base, path)
			run(t, "qemu-img", "resize", path, fmt.Sprint(size))
		}},
		tc{name: "qemu-zero-allocated", cs: 65536, make: func(path string) {
			// "write -z" without -u keeps the clusters: zero flag and offset.
			run(t, "qemu-img", "create", "-f", "qcow2", path, fmt.Sprint(size))
			qemuIO(t, path, "write -P 0x5a 0 2M", "write -z 64k 1M", "write -z -u 1536k 128k")
		}},
		tc{name: "qemu-preallocated-metadata", cs: 65536, make: func(path string) {
			run(t, "qemu-img", "create", "-f", "qcow2", "-o", "preallocation=metadata", path, fmt.Sprint(size))
		}},
		tc{name: "create-512-refcount64-growth", cs: 512, make: func(path string) {
			// 64 clusters per refcount block and 64 blocks per table
			// cluster: writing 3 MiB grows the refcount table.
			require.NoError(t, Create(path, size, "", &CreateOptions{ClusterSize: 512, RefcountBits: 64}))
		}},
		tc{name: "create-4096-refcount1", cs: 4096, make: func(path string) {
			require.NoError(t, Create(path, size, "", &CreateOptions{ClusterSize: 4096, RefcountBits: 1}))
		}},
		tc{name: "create-65536-refcount2", cs: 65536, make: func(path string) {
			require.NoError(t, Create(path, size, "", &CreateOptions{ClusterSize: 65536, RefcountBits: 2}))
		}},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".qcow2")
			c.make(path)
			ref := toRaw(t, path)
			require.Len(t, ref, size)
			img, err := Open(path, false)
			require.NoError(t, err)
			ops := randomOps(r, 60, size, c.cs)
			// A full pass over the disk first makes the refcount table grow
			// where it is small.
			ops = append([]op{{kind: opWrite, off: 0, n: size, seed: 1}}, ops...)
			for _, o := range ops {
				require.NoError(t, o.apply(img), "%+v", o)
				o.applyRef(ref, c.cs, !(c.v2 && c.backing))
			}
			requireSame(t, ref, readAll(t, img, r), "read back before close")
			require.NoError(t, img.Close())

			if c.name == "create-512-refcount64-growth" {
				img, err := Open(path, true)
				require.NoError(t, err)
				require.Greater(t, img.h.refTableCluster, uint32(1), "the refcount table grew")
				require.NoError(t, img.Close())
			}
			qemuCheck(t, path, false)
			refPath := filepath.Join(t.TempDir(), "ref.raw")
			writeFile(t, refPath, ref)
			run(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", path, refPath)
		})
	}
}

// TestConcurrentWriters writes disjoint stripes from several goroutines
// (allocating and in place) and checks the result with qemu-img.
func TestConcurrentWriters(t *testing.T) {
	needQemuImg(t)
	path := filepath.Join(t.TempDir(), "c.qcow2")
	const size, stripe = 6 << 20, 48 << 10 // stripes straddle 64 KiB clusters
	require.NoError(t, Create(path, size, "", nil))
	img, err := Open(path, false)
	require.NoError(t, err)
	ref := make([]byte, size)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for pass := range 3 {
				for s := g; s*stripe < size; s += 4 {
					b := make([]byte, stripe)
					for i := range b {
						b[i] = byte(r.Uint32())
					}
					if pass == 2 {
						copy(ref[s*stripe:], b) // the last pass wins
					}
					if _, err := img.WriteAt(b, int64(s*stripe)); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, img.Close())
	qemuCheck(t, path, false)
	requireSame(t, ref, toRaw(t, path), "concurrent writers")
}

// TestCreate checks Create's images with qemu-img info and check, and its
// refusals.
func TestCreate(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b.raw"), make([]byte, 1<<20+100))
	for _, cs := range []int{512, 65536, 2 << 20} {
		path := filepath.Join(dir, fmt.Sprintf("c%d.qcow2", cs))
		size, want := int64(1<<40), "virtual size: 1 TiB"
		if cs == 512 {
			size, want = 1<<30, "virtual size: 1 GiB" // a 1 TiB L1 table would pass QEMU's limit
		}
		require.NoError(t, Create(path, size, "", &CreateOptions{ClusterSize: cs}))
		out := run(t, "qemu-img", "info", path)
		require.Contains(t, out, want)
		require.Contains(t, out, fmt.Sprintf("cluster_size: %d", cs))
		require.Contains(t, out, "compat: 1.1")
		qemuCheck(t, path, false)
	}
	path := filepath.Join(dir, "sub.qcow2")
	require.NoError(t, Create(path, 0, "b.raw", nil))
	out := run(t, "qemu-img", "info", path)
	require.Contains(t, out, "backing file: b.raw")
	require.Contains(t, out, "backing file format: raw")
	img, err := Open(path, true)
	require.NoError(t, err)
	require.EqualValues(t, 1<<20+512, img.Size())
	require.NoError(t, img.Close())
	qemuCheck(t, path, false)

	require.ErrorIs(t, Create(path, 1<<20, "", nil), os.ErrExist)
	require.ErrorIs(t, Create(filepath.Join(dir, "x.qcow2"), 1<<20, "missing.raw", nil), os.ErrNotExist)
	require.Error(t, Create(filepath.Join(dir, "y.qcow2"), 1000, "", nil))
	require.Error(t, Create(filepath.Join(dir, "z.qcow2"), 1<<20, "", &CreateOptions{ClusterSize: 3000}))
}

// TestWriteWithSnapshot writes to an image with an internal snapshot: the
// clusters and L2 tables the snapshot shares are copied, not overwritten,
// so reverting to the snapshot gives back the disk as it was.
func TestWriteWithSnapshot(t *testing.T) {
	needQemuImg(t)
	needQemuIO(t)
	path := filepath.Join(t.TempDir(), "snap.qcow2")
	run(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", path, "4M")
	qemuIO(t, path, "write -P 0x11 0 3M", "write -c -P 0x22 3M 64k")
	before := toRaw(t, path)
	run(t, "qemu-img", "snapshot", "-c", "s1", path)

	img, err := Open(path, false)
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(10, 11))
	ref := append([]byte(nil), before...)
	for _, o := range randomOps(r, 40, int64(len(ref)), 4096) {
		require.NoError(t, o.apply(img), "%+v", o)
		o.applyRef(ref, 4096, true)
	}
	info, err := img.Info()
	require.NoError(t, err)
	require.Equal(t, 1, info.Snapshots)
	require.NoError(t, img.Close())

	qemuCheck(t, path, false)
	requireSame(t, ref, toRaw(t, path), "after writes")
	run(t, "qemu-img", "snapshot", "-a", "s1", path)
	qemuCheck(t, path, false)
	requireSame(t, before, toRaw(t, path), "snapshot reverted")
}

// TestCreateOverlay: an overlay has no name in its directory, reads as its
// backing file, takes writes that qemu-img (reading it through /proc) finds
// consistent and equal to the same writes on a copy, and leaves the base as
// it was.
func TestCreateOverlay(t *testing.T) {
	needQemuImg(t)
	dir, tmp := t.TempDir(), t.TempDir()
	r := rand.New(rand.NewPCG(21, 5))
	base := filepath.Join(dir, "base.raw")
	want := pattern(r, 3<<20)
	orig := append([]byte(nil), want...)
	writeFile(t, base, want)
	_, err := CreateOverlay(tmp, "base.raw", "raw")
	require.ErrorContains(t, err, "not absolute")

	img, err := CreateOverlay(tmp, base, "")
	require.NoError(t, err)
	defer img.Close()
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, left)
	requireSame(t, want, readAll(t, img, r), "overlay before writes")
	for range 40 {
		off, n := r.Int64N(int64(len(want))-70000), 1+r.IntN(70000)
		b := pattern(r, n)
		_, err := img.WriteAt(b, off)
		require.NoError(t, err)
		copy(want[off:], b)
	}
	require.NoError(t, img.WriteZeroes(1<<20, 300000))
	clear(want[1<<20 : 1<<20+300000])
	require.NoError(t, img.Flush())
	requireSame(t, want, readAll(t, img, r), "overlay after writes")

	self := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), img.f.Fd())
	qemuCheck(t, self, false)
	ref := filepath.Join(dir, "ref.raw")
	writeFile(t, ref, want)
	run(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", self, ref)
	b, err := os.ReadFile(base)
	require.NoError(t, err)
	require.True(t, bytes.Equal(b, orig), "the base changed")
}
