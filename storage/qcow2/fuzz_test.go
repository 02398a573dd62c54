package qcow2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzOpen opens arbitrary bytes as an image, reads it, and writes to it:
// any outcome but a panic, a hang or a huge allocation is fine, and every
// error must wrap one of the package's sentinels or be an I/O error.
// The seeds under testdata/fuzz/FuzzOpen are small images qemu-img made
// (TestGenerateFuzzSeeds).
func FuzzOpen(f *testing.F) {
	// Writable opens sync the file: on tmpfs that costs nothing.
	dir, err := os.MkdirTemp("/dev/shm", "qcow2-fuzz")
	if err != nil {
		dir = f.TempDir()
	} else {
		f.Cleanup(func() { os.RemoveAll(dir) })
	}
	p := filepath.Join(dir, "seed.qcow2")
	if err := Create(p, 1<<20, "", &CreateOptions{ClusterSize: 512}); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(p)

	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	// A raw backing file the seeds may name, next to the fuzzed image.
	if err := os.WriteFile(filepath.Join(dir, "base.raw"), bytes.Repeat([]byte{0xa5}, 12<<10), 0o644); err != nil {
		f.Fatal(err)
	}
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		n++
		path := filepath.Join(dir, fmt.Sprintf("f%d.qcow2", n))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(path)
		for _, readOnly := range []bool{true, false} {
			img, err := Open(path, readOnly)
			if err != nil {
				checkErr(t, err)
				return
			}
			size := img.Size()
			buf := make([]byte, 64<<10)
			for _, off := range []int64{0, size / 2, size - 100, size - int64(len(buf))} {
				if off < 0 || off >= size {
					continue
				}
				if _, err := img.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
					checkErr(t, err)
				}
				// The vectored read, scattered, within the disk.
				n := min(int64(len(buf)), size-off)
				if err := img.ReadV([][]byte{buf[:n/3], nil, buf[n/3 : n]}, off); err != nil {
					checkErr(t, err)
				}
			}
			if _, err := img.Info(); err != nil {
				t.Fatal(err)
			}
			if !readOnly {
				for _, off := range []int64{0, size / 3} {
					if n := min(int64(1500), size-off); n > 0 {
						if _, err := img.WriteAt(bytes.Repeat([]byte{7}, int(n)), off); err != nil {
							checkErr(t, err)
						}
					}
				}
				if size > 0 {
					if err := img.WriteZeroes(size/4, min(size-size/4, 300<<10)); err != nil {
						checkErr(t, err)
					}
				}
				if _, err := img.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
					checkErr(t, err)
				}
			}
			if err := img.Close(); err != nil {
				checkErr(t, err)
			}
		}
	})
}

// checkErr fails t for an error that is neither about the image nor I/O.
func checkErr(t *testing.T, err error) {
	t.Helper()
	var pe *os.PathError
	for _, s := range []error{ErrNotQcow2, ErrCorrupt, ErrUnsupported, ErrBackingChain, io.ErrUnexpectedEOF} {
		if errors.Is(err, s) {
			return
		}
	}
	if errors.As(err, &pe) {
		return // a file the image names, or a write the filesystem refused
	}
	t.Fatalf("error wraps no sentinel: %v", err)
}

// TestGenerateFuzzSeeds writes FuzzOpen's seed corpus from small images
// qemu-img makes; run it with QCOW2_GENERATE_SEEDS=1 and commit the files.
func TestGenerateFuzzSeeds(t *testing.T) {
	if os.Getenv("QCOW2_GENERATE_SEEDS") != "1" {
		return // a tool, not a check: the committed seeds are what FuzzOpen uses
	}
	needQemuImg(t)
	needQemuIO(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "base.raw")
	data := make([]byte, 12<<10)
	for i := range data {
		if i/2048%3 != 0 {
			data[i] = byte('a' + i%26)
		}
	}
	writeFile(t, raw, data)
	out := filepath.Join("testdata", "fuzz", "FuzzOpen")
	require.NoError(t, os.MkdirAll(out, 0o755))
	seed := func(name, path string) {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Less(t, len(b), 64<<10, name)
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		require.NoError(t, os.WriteFile(filepath.Join(out, name), []byte(content), 0o644))
	}
	img := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		if args[0] == "create" { // the size goes last
			args = append(args[:len(args)-1], p, args[len(args)-1])
		} else {
			args = append(args, p)
		}
		run(t, "qemu-img", args...)
		return p
	}
	seed("v2-512", img("v2.qcow2", "convert", "-O", "qcow2", "-o", "compat=0.10,cluster_size=512", raw))
	seed("v3-512", img("v3.qcow2", "convert", "-O", "qcow2", "-o", "cluster_size=512", raw))
	seed("v3-zlib", img("zlib.qcow2", "convert", "-c", "-O", "qcow2", "-o", "cluster_size=1024", raw))
	seed("v3-zstd", img("zstd.qcow2", "convert", "-c", "-O", "qcow2", "-o", "cluster_size=1024,compression_type=zstd", raw))
	seed("v3-refcount1", img("rc1.qcow2", "convert", "-O", "qcow2", "-o", "cluster_size=512,refcount_bits=1", raw))
	over := img("over.qcow2", "create", "-f", "qcow2", "-o", "cluster_size=512", "-b", "base.raw", "-F", "raw", "-u", "16K")
	qemuIO(t, over, "write -P 0x33 1k 3k", "write -z 6k 2k", "write -z 14k 1k")
	seed("v3-backing-raw-zero", over)
	over2 := img("over2.qcow2", "create", "-f", "qcow2", "-o", "compat=0.10,cluster_size=512", "-b", "base.raw", "-F", "raw", "-u", "12K")
	qemuIO(t, over2, "write -P 0x44 0 1k")
	hideBackingFormat(t, over2)
	seed("v2-backing-probed", over2)
}

// hideBackingFormat turns an image's backing format extension into one of
// an unknown type, so that the backing file's format is probed.
func hideBackingFormat(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	i := bytes.Index(b[:512], be32(extBackingFormat))
	require.Positive(t, i)
	patch(t, path, int64(i), be32(0x12345678))
}
