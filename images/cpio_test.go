package images

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
)

func readArchive(t *testing.T, path string, gz bool) map[string]cpio.Record {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	if gz {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		require.NoError(t, err)
		raw, err = io.ReadAll(zr)
		require.NoError(t, err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	require.NoError(t, err)
	out := map[string]cpio.Record{}
	var order []string
	for _, r := range recs {
		out[r.Name] = r
		order = append(order, r.Name)
	}
	// Parents must precede children for the kernel's unpacker.
	seen := map[string]bool{}
	for _, n := range order {
		if d := filepath.Dir(n); d != "." {
			assert.True(t, seen[d], "%s appears before its directory %s", n, d)
		}
		seen[n] = true
	}
	return out
}

func content(t *testing.T, r cpio.Record) string {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	require.NoError(t, err)
	return string(b)
}

func TestWriteInitramfsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "host.bin")
	require.NoError(t, os.WriteFile(host, []byte("from the host"), 0o600))
	entries := []Entry{
		File("/init", 0o755, []byte("#!init")),
		HostFile("lib/modules/v/kernel/a.ko", 0o644, host),
		Symlink("bin/sh", "/init"),
		CharDev("dev/console", 0o600, 5, 1),
		Dir("proc"),
	}
	for _, name := range []string{"x.cpio", "x.cpio.gz"} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			require.NoError(t, WriteInitramfs(p, entries))
			recs := readArchive(t, p, filepath.Ext(name) == ".gz")

			require.Contains(t, recs, "init")
			assert.Equal(t, "#!init", content(t, recs["init"]))
			assert.Equal(t, uint64(cpio.S_IFREG|0o755), recs["init"].Mode)
			assert.Equal(t, "from the host", content(t, recs["lib/modules/v/kernel/a.ko"]))
			assert.Equal(t, "/init", content(t, recs["bin/sh"]))
			assert.Equal(t, uint64(cpio.S_IFLNK), recs["bin/sh"].Mode&cpio.S_IFMT)
			assert.Equal(t, uint64(cpio.S_IFCHR|0o600), recs["dev/console"].Mode)
			assert.Equal(t, []uint64{5, 1}, []uint64{recs["dev/console"].Rmajor, recs["dev/console"].Rminor})
			for _, d := range []string{"lib", "lib/modules", "lib/modules/v/kernel", "bin", "dev", "proc"} {
				require.Contains(t, recs, d)
				assert.Equal(t, uint64(cpio.S_IFDIR), recs[d].Mode&cpio.S_IFMT, d)
			}
			for n, r := range recs {
				assert.Zero(t, r.MTime, n)
			}
		})
	}
}

func TestWriteInitramfsDeterministic(t *testing.T) {
	dir := t.TempDir()
	a := []Entry{File("b", 0o644, []byte("1")), File("a/c", 0o644, []byte("2"))}
	b := []Entry{a[1], a[0]}
	pa, pb := filepath.Join(dir, "a.cpio.gz"), filepath.Join(dir, "b.cpio.gz")
	require.NoError(t, WriteInitramfs(pa, a))
	require.NoError(t, WriteInitramfs(pb, b))
	ra, err := os.ReadFile(pa)
	require.NoError(t, err)
	rb, err := os.ReadFile(pb)
	require.NoError(t, err)
	assert.Equal(t, ra, rb)
}

func TestWriteInitramfsRejects(t *testing.T) {
	dir := t.TempDir()
	for name, entries := range map[string][]Entry{
		"duplicate":   {File("a", 0, nil), File("/a", 0, nil)},
		"escape":      {File("../a", 0, nil)},
		"root":        {File("/", 0, nil)},
		"under file":  {File("a", 0, nil), File("a/b", 0, nil)},
		"no target":   {{Path: "l", Mode: fs.ModeSymlink}},
		"named pipe":  {{Path: "p", Mode: fs.ModeNamedPipe}},
		"host is dir": {HostFile("h", 0, dir)},
	} {
		err := WriteInitramfs(filepath.Join(dir, "x.cpio"), entries)
		assert.Error(t, err, name)
		if name != "host is dir" {
			assert.ErrorIs(t, err, ErrBadEntry, name)
		}
	}
	_, err := os.Stat(filepath.Join(dir, "x.cpio"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "a failed write leaves no archive")
}

func TestHostTree(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a", "b", "f"), []byte("x"), 0o755))
	require.NoError(t, os.Symlink("b/f", filepath.Join(dir, "a", "l")))
	entries, err := HostTree("/usr", dir)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "t.cpio")
	require.NoError(t, WriteInitramfs(p, entries))
	recs := readArchive(t, p, false)
	assert.Equal(t, "x", content(t, recs["usr/a/b/f"]))
	assert.Equal(t, uint64(cpio.S_IFREG|0o755), recs["usr/a/b/f"].Mode)
	assert.Equal(t, "b/f", content(t, recs["usr/a/l"]))
}
