package block

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/storage/qcow2"
)

// benchImages makes a raw image and a fully allocated qcow2 of the same
// 64 MiB of data.
func benchImages(b *testing.B) (string, string) {
	dir := b.TempDir()
	data := make([]byte, 64<<20)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	rawPath := filepath.Join(dir, "d.raw")
	require.NoError(b, os.WriteFile(rawPath, data, 0o644))
	qPath := filepath.Join(dir, "d.qcow2")
	require.NoError(b, qcow2.Create(qPath, int64(len(data)), "", nil))
	img, err := qcow2.Open(qPath, false)
	require.NoError(b, err)
	_, err = img.WriteAt(data, 0)
	require.NoError(b, err)
	require.NoError(b, img.Close())
	return rawPath, qPath
}

// BenchmarkRead reads through the Device both formats give, from the page
// cache: sequentially in 128 KiB requests of 4 KiB segments, and 4 KiB at
// random offsets. What it measures is the format's own cost.
func BenchmarkRead(b *testing.B) {
	rawPath, qPath := benchImages(b)
	for _, f := range []struct{ name, path string }{{"raw", rawPath}, {"qcow2", qPath}} {
		d, err := Open(Options{Path: f.path, ReadOnly: true}, nil)
		require.NoError(b, err)
		b.Run(f.name+"/seq128k", func(b *testing.B) {
			bufs := make([][]byte, 32)
			for i := range bufs {
				bufs[i] = make([]byte, 4096)
			}
			b.SetBytes(128 << 10)
			off := uint64(0)
			for b.Loop() {
				require.NoError(b, d.ReadV(bufs, off))
				off = (off + 128<<10) % d.Size()
			}
		})
		b.Run(f.name+"/rand4k", func(b *testing.B) {
			buf := [][]byte{make([]byte, 4096)}
			r := rand.New(rand.NewPCG(2, 2))
			b.SetBytes(4096)
			for b.Loop() {
				require.NoError(b, d.ReadV(buf, uint64(r.IntN(int(d.Size()/4096)))*4096))
			}
		})
		require.NoError(b, d.Close())
	}
}

// BenchmarkReadVsRaw reads the same offsets from both formats in turn,
// timing each request, and reports qcow2's throughput as a fraction of
// raw's ("x-raw"): the ratio of the median request times. Interleaving
// and medians keep a busy machine's noise (other processes, preemption)
// out of the ratio.
func BenchmarkReadVsRaw(b *testing.B) { benchVsRaw(b, true) }

// BenchmarkWriteVsRaw is BenchmarkReadVsRaw for writes into allocated
// clusters (the qcow2 image is fully allocated: no metadata changes).
func BenchmarkWriteVsRaw(b *testing.B) { benchVsRaw(b, false) }

func benchVsRaw(b *testing.B, read bool) {
	rawPath, qPath := benchImages(b)
	var devs [2]Device
	for i, p := range []string{rawPath, qPath} {
		d, err := Open(Options{Path: p, ReadOnly: read}, nil)
		require.NoError(b, err)
		defer d.Close()
		devs[i] = d
	}
	size := devs[0].Size()
	for _, c := range []struct {
		name string
		segs int
		next func(r *rand.Rand, off uint64) uint64
	}{
		{"seq128k", 32, func(_ *rand.Rand, off uint64) uint64 { return (off + 128<<10) % size }},
		{"rand4k", 1, func(r *rand.Rand, _ uint64) uint64 { return uint64(r.IntN(int(size/4096))) * 4096 }},
	} {
		b.Run(c.name, func(b *testing.B) {
			bufs := make([][]byte, c.segs)
			for i := range bufs {
				bufs[i] = make([]byte, 4096)
			}
			r := rand.New(rand.NewPCG(3, 3))
			var took [2][]time.Duration
			off := uint64(0)
			for b.Loop() {
				for i, d := range devs {
					start := time.Now()
					if read {
						require.NoError(b, d.ReadV(bufs, off))
					} else {
						require.NoError(b, d.WriteV(bufs, off))
					}
					took[i] = append(took[i], time.Since(start))
				}
				off = c.next(r, off)
			}
			b.ReportMetric(float64(median(took[0]))/float64(median(took[1])), "x-raw")
		})
	}
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}
