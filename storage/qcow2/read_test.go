package qcow2

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadQemuImages reads images qemu-img made from a raw disk (v2 and v3,
// 512 B to 2 MiB clusters, plain, deflate- and zstd-compressed) and compares
// every byte with the raw disk.
func TestReadQemuImages(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	const size = 5<<20 + 3*512 // not a cluster multiple
	raw := pattern(r, size)
	rawPath := filepath.Join(dir, "disk.raw")
	writeFile(t, rawPath, raw)

	for _, compat := range []string{"0.10", "1.1"} {
		for _, cs := range []int{512, 4096, 65536, 2 << 20} {
			for _, comp := range []string{"none", "zlib", "zstd"} {
				if comp == "zstd" && compat == "0.10" {
					continue // zstd needs v3
				}
				name := fmt.Sprintf("v%s-%d-%s", compat, cs, comp)
				t.Run(name, func(t *testing.T) {
					path := filepath.Join(dir, name+".qcow2")
					opts := fmt.Sprintf("compat=%s,cluster_size=%d", compat, cs)
					args := []string{"convert", "-O", "qcow2"}
					if comp != "none" {
						args = append(args, "-c")
						if compat == "1.1" {
							opts += ",compression_type=" + comp
						}
					}
					run(t, "qemu-img", append(args, "-o", opts, rawPath, path)...)
					img, err := Open(path, true)
					require.NoError(t, err)
					defer img.Close()
					require.EqualValues(t, size, img.Size())
					requireSame(t, raw, readAll(t, img, r), name)
					info, err := img.Info()
					require.NoError(t, err)
					require.Equal(t, map[string]int{"0.10": 2, "1.1": 3}[compat], info.Version)
					require.Equal(t, cs, info.ClusterSize)
					require.Positive(t, info.AllocatedSize)
					if comp == "zstd" {
						require.Equal(t, "zstd", info.Compression)
					}

					// Reads at the end: short with io.EOF, then io.EOF.
					buf := make([]byte, 4096)
					n, err := img.ReadAt(buf, size-100)
					require.ErrorIs(t, err, io.EOF)
					require.Equal(t, 100, n)
					require.Equal(t, raw[size-100:], buf[:100])
					_, err = img.ReadAt(buf, size)
					require.ErrorIs(t, err, io.EOF)
				})
			}
		}
	}
}

// TestReadBackingChain reads a chain raw <- qcow2 v2 <- qcow2 v3 with
// relative backing names in different directories, zero clusters written by
// qemu-io ("write -z"), discards, and a backing file smaller than the
// overlay, against QEMU's own reading of the top image.
func TestReadBackingChain(t *testing.T) {
	needQemuImg(t)
	needQemuIO(t)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	r := rand.New(rand.NewPCG(3, 4))
	writeFile(t, filepath.Join(dir, "base.raw"), pattern(r, 3<<20))

	mid := filepath.Join(dir, "a", "mid.qcow2")
	run(t, "qemu-img", "create", "-f", "qcow2", "-o", "compat=0.10,cluster_size=4096",
		"-b", "../base.raw", "-F", "raw", mid, "4M")
	qemuIO(t, mid, "write -P 0x11 100k 300k", "write -P 0x22 2M 1M", "write -P 0x33 3500k 20k")

	top := filepath.Join(dir, "a", "b", "top.qcow2")
	run(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=65536",
		"-b", "../mid.qcow2", "-F", "qcow2", top, "6M")
	qemuIO(t, top, "write -P 0x44 0 64k", "write -z 128k 256k", "write -z 2M 64k",
		"write -P 0x55 3M 1000k", "write -z -u 3M 128k", "discard 3200k 64k", "write -P 0x66 5M 12k")

	want := toRaw(t, top)
	img, err := Open(top, true)
	require.NoError(t, err)
	defer img.Close()
	requireSame(t, want, readAll(t, img, r), "chain")

	info, err := img.Info()
	require.NoError(t, err)
	require.Len(t, info.Backing, 2)
	require.Equal(t, "../mid.qcow2", info.Backing[0].Name)
	require.Equal(t, "qcow2", info.Backing[0].Format)
	require.Equal(t, mid, info.Backing[0].Path)
	require.Equal(t, filepath.Join(dir, "base.raw"), info.Backing[1].Path)
	require.Equal(t, "raw", info.Backing[1].Format)
	require.EqualValues(t, 3<<20, info.Backing[1].VirtualSize)

	// Concurrent readers see the same bytes.
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			rr := rand.New(rand.NewPCG(uint64(g), 9))
			buf := make([]byte, 200<<10)
			for range 50 {
				off := rr.IntN(len(want) - len(buf))
				n := 1 + rr.IntN(len(buf))
				if _, err := img.ReadAt(buf[:n], int64(off)); err != nil {
					errs <- err
					return
				}
				if string(buf[:n]) != string(want[off:off+n]) {
					errs <- fmt.Errorf("concurrent read at %d differs", off)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
}
