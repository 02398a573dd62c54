package qcow2

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/testenv"
)

// needQemuImg skips (fails under CI=true) without qemu-img.
func needQemuImg(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testenv.Skip(t, "qemu-img missing (Debian: qemu-utils)")
	}
}

func needQemuIO(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-io"); err != nil {
		testenv.Skip(t, "qemu-io missing (Debian: qemu-utils)")
	}
}

// run runs a command and returns its combined output, failing t on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

// qemuIO runs qemu-io commands on a qcow2 image.
func qemuIO(t testing.TB, path string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	run(t, "qemu-io", append(args, path)...)
}

// toRaw is QEMU's view of an image: the oracle every test compares with.
func toRaw(t testing.TB, path string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.raw")
	run(t, "qemu-img", "convert", "-O", "raw", path, out)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	return b
}

// qemuCheck runs qemu-img check; leaks are reported, corruption fails t.
func qemuCheck(t testing.TB, path string, allowLeaks bool) string {
	t.Helper()
	out, err := exec.Command("qemu-img", "check", "-f", "qcow2", path).CombinedOutput()
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		// 3: leaked clusters only; 2: corruption; 1: check failed.
		require.True(t, ok && ee.ExitCode() == 3 && allowLeaks, "qemu-img check %s: %v\n%s", path, err, out)
	}
	return string(out)
}

// pattern fills a buffer with data that has runs of zeros (so qemu-img
// convert leaves holes) and compressible and incompressible stretches.
func pattern(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for off := 0; off < n; {
		l := min(n-off, 1+r.IntN(96<<10))
		switch r.IntN(4) {
		case 0: // zeros
		case 1:
			for i := range l {
				b[off+i] = byte((off + i) / 7)
			}
		default:
			for i := range l {
				b[off+i] = byte(r.Uint32())
			}
		}
		off += l
	}
	return b
}

// readAll reads the whole virtual disk through the package, in chunks of
// varying size and alignment, half of them with ReadAt and half with
// ReadV into up to 40 pieces of random sizes (empty ones included).
func readAll(t testing.TB, img *Image, r *rand.Rand) []byte {
	t.Helper()
	b := make([]byte, img.Size())
	for off := 0; off < len(b); {
		n := min(len(b)-off, 1+r.IntN(300<<10))
		chunk := b[off : off+n]
		if r.IntN(2) == 0 {
			got, err := img.ReadAt(chunk, int64(off))
			require.NoError(t, err)
			require.Equal(t, n, got)
		} else {
			var bufs [][]byte
			for rest := chunk; len(rest) > 0; {
				l := len(rest)
				if len(bufs) < 39 {
					l = min(l, r.IntN(2*n/10+2))
				}
				bufs, rest = append(bufs, rest[:l]), rest[l:]
			}
			require.NoError(t, img.ReadV(bufs, int64(off)))
		}
		off += n
	}
	return b
}

// requireSame compares disks without dumping megabytes on failure.
func requireSame(t testing.TB, want, got []byte, what string) {
	t.Helper()
	require.Equal(t, len(want), len(got), "%s: size", what)
	if !bytes.Equal(want, got) {
		for i := range want {
			if want[i] != got[i] {
				t.Fatalf("%s: first difference at byte %d (%#x): want %#x, got %#x", what, i, i, want[i], got[i])
			}
		}
	}
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, b, 0o644))
}
