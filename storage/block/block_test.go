package block

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/testenv"
	"github.com/vmmdev/vmm/storage/qcow2"
)

func needQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testenv.Skip(t, "qemu-img missing (Debian: qemu-utils)")
	}
}

func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	require.NoError(t, err, "qemu-img %s: %s", strings.Join(args, " "), out)
	return string(out)
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

// randomDisk writes a raw disk of size bytes with random data and holes.
func randomDisk(t *testing.T, path string, size int, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	for off := 0; off < size; off += 64 << 10 {
		if r.IntN(3) > 0 {
			for i := off; i < min(size, off+(64<<10)); i++ {
				b[i] = byte(r.Uint32())
			}
		}
	}
	require.NoError(t, os.WriteFile(path, b, 0o644))
	return b
}

func readDisk(t *testing.T, d Device) []byte {
	t.Helper()
	b := make([]byte, d.Size())
	// Two buffers per request, as a scatter list brings them.
	for off := 0; off < len(b); off += 1 << 20 {
		end := min(len(b), off+1<<20)
		mid := off + (end-off)/3
		require.NoError(t, d.ReadV([][]byte{b[off:mid], b[mid:end]}, uint64(off)))
	}
	return b
}

// TestFormats: the same data reads the same as raw, as qcow2 probed from
// its header, and as qcow2 forced; writes through the qcow2 device leave an
// image qemu-img checks clean and compares equal to the same writes raw.
func TestFormats(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	rawPath := filepath.Join(dir, "disk.raw")
	want := randomDisk(t, rawPath, 8<<20, 1)
	qPath := filepath.Join(dir, "disk.qcow2")
	qemuImg(t, "convert", "-O", "qcow2", rawPath, qPath)

	for _, c := range []struct{ path, format, want string }{
		{rawPath, FormatProbe, FormatRaw}, {rawPath, FormatRaw, FormatRaw},
		{qPath, FormatProbe, FormatQcow2}, {qPath, FormatQcow2, FormatQcow2},
	} {
		f, size, err := Check(c.path, c.format)
		require.NoError(t, err)
		require.Equal(t, c.want, f)
		require.Equal(t, uint64(len(want)), size)
		d, err := Open(Options{Path: c.path, Format: c.format}, nil)
		require.NoError(t, err)
		require.Equal(t, uint64(len(want)), d.Size())
		require.True(t, bytes.Equal(want, readDisk(t, d)), "%s as %q", c.path, c.format)
		require.NoError(t, d.Close())
	}

	// The same writes, zeroes and discards through both devices.
	devs := []Device{}
	for _, p := range []string{rawPath, qPath} {
		d, err := Open(Options{Path: p}, nil)
		require.NoError(t, err)
		devs = append(devs, d)
	}
	r := rand.New(rand.NewPCG(2, 2))
	for range 200 {
		off := uint64(r.IntN(len(want)/512)) * 512
		n := min(uint64(len(want))-off, uint64(1+r.IntN(256))*512)
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		op := r.IntN(4)
		for _, d := range devs {
			switch op {
			case 0:
				require.NoError(t, d.WriteZeroes(off, n))
			case 1:
				require.NoError(t, d.Discard(off, n))
			default:
				require.NoError(t, d.WriteV([][]byte{data[:n/2], data[n/2:]}, off))
			}
		}
	}
	for _, d := range devs {
		require.NoError(t, d.Flush())
		require.True(t, d.CanPunchHoles() || d.Path() == rawPath)
	}
	require.True(t, bytes.Equal(readDisk(t, devs[0]), readDisk(t, devs[1])), "raw and qcow2 differ after the same writes")
	for _, d := range devs {
		require.NoError(t, d.Close())
	}
	qemuImg(t, "check", qPath)
	qemuImg(t, "compare", "-f", "raw", "-F", "qcow2", rawPath, qPath)
}

// TestRangesAndReadOnly: ranges beyond the disk and writes to read-only
// disks fail with the sentinels the controllers branch on, for both formats.
func TestRangesAndReadOnly(t *testing.T) {
	dir := t.TempDir()
	qPath := filepath.Join(dir, "d.qcow2")
	require.NoError(t, qcow2.Create(qPath, 1<<20, "", nil))
	rawPath := filepath.Join(dir, "d.raw")
	require.NoError(t, os.WriteFile(rawPath, make([]byte, 1<<20), 0o644))
	for _, p := range []string{qPath, rawPath} {
		d, err := Open(Options{Path: p}, nil)
		require.NoError(t, err)
		require.ErrorIs(t, d.ReadV([][]byte{make([]byte, 1024)}, 1<<20-512), ErrOutOfRange)
		require.ErrorIs(t, d.WriteV([][]byte{make([]byte, 1024)}, 1<<20-512), ErrOutOfRange)
		require.ErrorIs(t, d.WriteZeroes(1<<20, 512), ErrOutOfRange)
		require.NoError(t, d.Close())
		d, err = Open(Options{Path: p, ReadOnly: true}, nil)
		require.NoError(t, err)
		require.True(t, d.ReadOnly())
		require.ErrorIs(t, d.WriteV([][]byte{make([]byte, 512)}, 0), ErrReadOnly)
		require.ErrorIs(t, d.Discard(0, 512), ErrReadOnly)
		require.NoError(t, d.Close())
	}
	_, _, err := Check(rawPath, "vhd")
	require.ErrorContains(t, err, `unknown format "vhd"`)
}

// TestProbedRawGuard: a guest cannot turn a probed raw image into a qcow2
// one by writing the magic to its first sector; with format=raw it may.
func TestProbedRawGuard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.raw")
	require.NoError(t, os.WriteFile(path, make([]byte, 1<<20), 0o644))
	hdr := make([]byte, 512)
	copy(hdr, "QFI\xfb")

	d, err := Open(Options{Path: path}, nil)
	require.NoError(t, err)
	require.ErrorIs(t, d.WriteV([][]byte{hdr[:2], hdr[2:]}, 0), ErrFormatWrite, "magic split over two buffers")
	require.NoError(t, d.WriteV([][]byte{hdr}, 512), "the magic elsewhere is data")
	other := bytes.Repeat([]byte{0xeb}, 512)
	require.NoError(t, d.WriteV([][]byte{other}, 0), "any other first sector")
	require.NoError(t, d.Close())
	f, err := Detect(path)
	require.NoError(t, err)
	require.Equal(t, FormatRaw, f)

	d, err = Open(Options{Path: path, Format: FormatRaw}, nil)
	require.NoError(t, err)
	require.NoError(t, d.WriteV([][]byte{hdr}, 0))
	require.NoError(t, d.Close())
	f, err = Detect(path)
	require.NoError(t, err)
	require.Equal(t, FormatQcow2, f, "format=raw lets the guest write what it likes")
}

// TestSnapshot: snapshot mode never changes the image (raw or qcow2, with a
// backing chain), many snapshots share one base at once, each sees its own
// writes only, and the overlays have no name in the file system at any
// time, so a killed vmm leaves nothing behind.
func TestSnapshot(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	rawPath := filepath.Join(dir, "base.raw")
	want := randomDisk(t, rawPath, 4<<20, 3)
	qPath := filepath.Join(dir, "top.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", qPath)

	for _, base := range []string{rawPath, qPath} {
		t.Run(filepath.Base(base), func(t *testing.T) {
			tmp := t.TempDir()
			before, beforeRaw := sum(t, base), sum(t, rawPath)
			var devs []Device
			for i := range 3 {
				d, err := Open(Options{Path: base, Snapshot: true, TempDir: tmp}, nil)
				require.NoError(t, err, "snapshot %d", i)
				require.False(t, d.ReadOnly())
				devs = append(devs, d)
			}
			// The base is held shared: no writer can open it meanwhile.
			_, err := Open(Options{Path: base}, nil)
			require.ErrorIs(t, err, ErrBusy)
			for i, d := range devs {
				buf := bytes.Repeat([]byte{byte(i + 1)}, 64<<10)
				require.NoError(t, d.WriteV([][]byte{buf}, uint64(i)*4096+512))
				require.NoError(t, d.WriteZeroes(1<<20, 1<<20))
				require.NoError(t, d.Flush())
			}
			left, err := os.ReadDir(tmp)
			require.NoError(t, err)
			require.Empty(t, left, "overlays must have no name")
			for i, d := range devs {
				got := readDisk(t, d)
				exp := append([]byte(nil), want...)
				copy(exp[i*4096+512:], bytes.Repeat([]byte{byte(i + 1)}, 64<<10))
				clear(exp[1<<20 : 2<<20])
				require.True(t, bytes.Equal(exp, got), "snapshot %d sees its own writes only", i)
				require.NoError(t, d.Close())
			}
			require.Equal(t, before, sum(t, base), "the base image changed")
			require.Equal(t, beforeRaw, sum(t, rawPath), "the base's backing file changed")
			// A writer of the base keeps snapshots out.
			w, err := Open(Options{Path: base}, nil)
			require.NoError(t, err)
			_, err = Open(Options{Path: base, Snapshot: true, TempDir: tmp}, nil)
			require.ErrorIs(t, err, ErrBusy)
			require.NoError(t, w.Close())
		})
	}
}

// TestSnapshotForcedRaw: a raw base that starts with the qcow2 magic stays
// raw in snapshot mode with format=raw (the overlay records the format, so
// the base is never probed).
func TestSnapshotForcedRaw(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tricky.raw")
	data := make([]byte, 1<<20)
	copy(data, "QFI\xfb")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	d, err := Open(Options{Path: path, Format: FormatRaw, Snapshot: true, TempDir: dir}, nil)
	require.NoError(t, err)
	require.Equal(t, uint64(len(data)), d.Size())
	require.True(t, bytes.Equal(data, readDisk(t, d)))
	require.NoError(t, d.Close())
	_, err = Open(Options{Path: path, Snapshot: true, TempDir: dir}, nil)
	require.ErrorIs(t, err, qcow2.ErrUnsupported, "probed, it is a qcow2 of version 0")
}

func TestTempDir(t *testing.T) {
	t.Setenv("TMPDIR", "/some/where")
	require.Equal(t, "/some/where", TempDir())
	t.Setenv("TMPDIR", "")
	want := "/tmp"
	if fi, err := os.Stat("/var/tmp"); err == nil && fi.IsDir() {
		want = "/var/tmp"
	}
	require.Equal(t, want, TempDir())
}
