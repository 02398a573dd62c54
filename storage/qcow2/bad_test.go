package qcow2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// patch overwrites bytes of a file.
func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// TestBadImages: a crafted or damaged image gives one clear error that
// wraps the right sentinel, never a panic or a huge allocation.
func TestBadImages(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.qcow2")
	require.NoError(t, Create(good, 64<<20, "", nil))
	img, err := Open(good, false)
	require.NoError(t, err)
	_, err = img.WriteAt(bytes.Repeat([]byte{1}, 200<<10), 1<<20)
	require.NoError(t, err)
	require.NoError(t, img.Close())
	goodBytes, err := os.ReadFile(good)
	require.NoError(t, err)
	l2 := binary.BigEndian.Uint64(goodBytes[65536:]) & offsetMask // L1 is cluster 1
	require.NotZero(t, l2)

	for _, c := range []struct {
		name  string
		edit  func(path string)
		want  error
		msg   string
		write bool // only a writable open fails
	}{
		{"truncated header", func(p string) { require.NoError(t, os.Truncate(p, 50)) }, ErrCorrupt, "shorter than a header", false},
		{"truncated tables", func(p string) { require.NoError(t, os.Truncate(p, 70000)) }, ErrCorrupt, "beyond the end of the file", false},
		{"empty file", func(p string) { require.NoError(t, os.Truncate(p, 0)) }, ErrNotQcow2, "", false},
		{"raw", func(p string) { patch(t, p, 0, []byte("RAW!")) }, ErrNotQcow2, "", false},
		{"version 4", func(p string) { patch(t, p, 4, be32(4)) }, ErrUnsupported, "version 4", false},
		{"cluster_bits 8", func(p string) { patch(t, p, 20, be32(8)) }, ErrCorrupt, "cluster_bits 8", false},
		{"cluster_bits 22", func(p string) { patch(t, p, 20, be32(22)) }, ErrCorrupt, "cluster_bits 22", false},
		{"L1 beyond the file", func(p string) { patch(t, p, 40, be64(1<<40)) }, ErrCorrupt, "L1 table at 0x10000000000", false},
		{"L1 unaligned", func(p string) { patch(t, p, 40, be64(65536+512)) }, ErrCorrupt, "not cluster aligned", false},
		{"L1 huge", func(p string) { patch(t, p, 36, be32(0xffffffff)) }, ErrUnsupported, "L1 table of 4294967295 entries", false},
		{"L1 too small", func(p string) { patch(t, p, 36, be32(0)) }, ErrCorrupt, "too small", false},
		{"virtual size huge", func(p string) { patch(t, p, 24, be64(1<<62)) }, ErrCorrupt, "virtual size", false},
		{"refcount table beyond the file", func(p string) { patch(t, p, 48, be64(1<<30)) }, ErrCorrupt, "refcount table", false},
		{"refcount table huge", func(p string) { patch(t, p, 56, be32(1<<20)) }, ErrUnsupported, "refcount table of", false},
		{"refcount_order 7", func(p string) { patch(t, p, 96, be32(7)) }, ErrCorrupt, "refcount_order 7", false},
		{"header_length 40", func(p string) { patch(t, p, 100, be32(40)) }, ErrCorrupt, "header_length 40", false},
		{"header_length beyond cluster", func(p string) { patch(t, p, 100, be32(1<<20)) }, ErrCorrupt, "header_length", false},
		{"encrypted", func(p string) { patch(t, p, 32, be32(2)) }, ErrUnsupported, "encrypted", false},
		{"unknown incompatible bit", func(p string) { patch(t, p, 72, be64(1<<20)) }, ErrUnsupported, "bit 20", false},
		{"external data file", func(p string) { patch(t, p, 72, be64(incExternalData)) }, ErrUnsupported, "external data", false},
		{"extended L2", func(p string) { patch(t, p, 72, be64(incExtendedL2)) }, ErrUnsupported, "extended L2", false},
		{"compression type without bit", func(p string) { patch(t, p, 104, []byte{1}) }, ErrCorrupt, "compression_type", false},
		{"compression type 2", func(p string) { patch(t, p, 72, be64(incCompression)); patch(t, p, 104, []byte{2}) }, ErrUnsupported, "compression_type 2", false},
		{"extension overruns", func(p string) { patch(t, p, 112, append(be32(0x1234), be32(1<<20)...)) }, ErrCorrupt, "overruns", false},
		{"backing name too long", func(p string) { patch(t, p, 8, be64(512)); patch(t, p, 16, be32(5000)) }, ErrCorrupt, "backing file name of 5000 bytes", false},
		{"backing name outside", func(p string) { patch(t, p, 8, be64(65530)); patch(t, p, 16, be32(100)) }, ErrCorrupt, "outside the first cluster", false},
		{"dirty, writable", func(p string) { patch(t, p, 72, be64(incDirty)) }, ErrUnsupported, "dirty", true},
		{"marked corrupt, writable", func(p string) { patch(t, p, 72, be64(incCorrupt)) }, ErrCorrupt, "marked corrupt", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.qcow2")
			writeFile(t, path, goodBytes)
			c.edit(path)
			img, err := Open(path, !c.write)
			require.ErrorIs(t, err, c.want)
			require.Nil(t, img)
			require.Contains(t, err.Error(), c.msg)
			require.Contains(t, err.Error(), path)
			require.Equal(t, 1, strings.Count(err.Error(), "qcow2 "+path), "one error, said once: %v", err)
			if c.write {
				img, err := Open(path, true)
				require.NoError(t, err, "read-only opens")
				require.NoError(t, img.Close())
			}
		})
	}

	// Tables that open but point nowhere fail the access that uses them.
	for _, c := range []struct {
		name string
		off  int64
		val  []byte
	}{
		{"L2 table beyond the file", 65536, be64(1<<40 | flagCopied)},
		{"L2 table unaligned", 65536, be64(l2 + 512)},
		{"data cluster unaligned", int64(l2) + 16*8, be64(5*65536 + 4096 | flagCopied)},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.qcow2")
			writeFile(t, path, goodBytes)
			patch(t, path, c.off, c.val)
			img, err := Open(path, false)
			require.NoError(t, err)
			defer img.Close()
			_, err = img.ReadAt(make([]byte, 4096), 1<<20)
			require.ErrorIs(t, err, ErrCorrupt)
			_, err = img.WriteAt(make([]byte, 4096), 1<<20)
			require.ErrorIs(t, err, ErrCorrupt)
		})
	}
}

// TestBackingErrors: a missing backing file, a loop in the chain and a
// chain too deep are clear errors.
func TestBackingErrors(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	require.NoError(t, Create(b, 1<<20, "", nil))
	require.NoError(t, Create(a, 1<<20, "b.qcow2", nil))

	// b names a: a -> b -> a.
	run(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b)
	_, err := Open(a, true)
	require.ErrorIs(t, err, ErrBackingChain)
	require.Contains(t, err.Error(), "loop")

	// A names itself.
	self := filepath.Join(dir, "self.qcow2")
	require.NoError(t, Create(self, 1<<20, "", nil))
	run(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "self.qcow2", "-F", "qcow2", self)
	_, err = Open(self, true)
	require.ErrorIs(t, err, ErrBackingChain)

	// Missing.
	run(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "gone.qcow2", "-F", "qcow2", b)
	_, err = Open(a, true)
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.Contains(t, err.Error(), "gone.qcow2")

	// Unsupported backing format.
	run(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "vmdk", b)
	_, err = Open(b, true)
	require.ErrorIs(t, err, ErrUnsupported)

	// No backing format: probed.
	writeFile(t, filepath.Join(dir, "r.raw"), make([]byte, 4096))
	probed := filepath.Join(dir, "probed.qcow2")
	require.NoError(t, Create(probed, 1<<20, "r.raw", nil))
	hideBackingFormat(t, probed)
	img, err := Open(probed, true)
	require.NoError(t, err)
	info, err := img.Info()
	require.NoError(t, err)
	require.Equal(t, "raw", info.Backing[0].Format)
	require.NoError(t, img.Close())

	// Too deep: 40 images, each backed by the previous.
	prev := ""
	for i := range maxChainDepth + 8 {
		p := filepath.Join(dir, fmt.Sprintf("d%d.qcow2", i))
		if i <= maxChainDepth {
			require.NoError(t, Create(p, 1<<20, prev, nil))
		} else { // Create refuses a chain too deep to open
			run(t, "qemu-img", "create", "-f", "qcow2", "-u", "-b", prev, "-F", "qcow2", p, "1M")
		}
		prev = filepath.Base(p)
	}
	_, err = Open(filepath.Join(dir, prev), true)
	require.ErrorIs(t, err, ErrBackingChain)
	require.Contains(t, err.Error(), "more than")
	require.Equal(t, 1, strings.Count(err.Error(), "backing file /"), "one error, not one per level: %v", err)
}

func TestMisuse(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.qcow2")
	require.NoError(t, Create(path, 1<<20, "", nil))

	f, err := os.Open(path)
	require.NoError(t, err)
	ok, err := Detect(f)
	require.NoError(t, err)
	require.True(t, ok)
	f.Close()
	ok, err = Detect(bytes.NewReader([]byte("QF")))
	require.NoError(t, err)
	require.False(t, ok)

	ro, err := Open(path, true)
	require.NoError(t, err)
	_, err = ro.WriteAt([]byte{1}, 0)
	require.ErrorIs(t, err, ErrReadOnly)
	require.ErrorIs(t, ro.WriteZeroes(0, 512), ErrReadOnly)
	_, err = Open(path, false)
	require.ErrorIs(t, err, ErrBusy, "a reader holds it")
	require.NoError(t, ro.Close())

	rw, err := Open(path, false)
	require.NoError(t, err)
	_, err = Open(path, true)
	require.ErrorIs(t, err, ErrBusy, "a writer holds it")
	_, err = rw.WriteAt(make([]byte, 2), 1<<20-1)
	require.ErrorIs(t, err, ErrRange)
	_, err = rw.ReadAt(make([]byte, 1), -1)
	require.Error(t, err)
	require.NoError(t, rw.Close())
}
