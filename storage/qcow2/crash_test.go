package qcow2

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// crashOps is the workload of the crash test's child: the same for the
// parent, which replays it on a raw reference. The first write allocates
// two thirds of the disk, so that later writes, zeroings and discards
// replace and free clusters.
func crashOps(seed uint64, size, cs int64) []op {
	first := op{kind: opWrite, off: cs / 2, n: size * 2 / 3, seed: seed}
	return append([]op{first}, randomOps(rand.New(rand.NewPCG(seed, 11)), 50, size, cs)...)
}

const crashFlushEvery = 5

// TestCrashChild is the child of TestCrash: it runs the workload on the
// image named by its environment, reporting on fd 3 "w I" when op I has
// completed and "f I" when a Flush after op I has, and it SIGKILLs itself
// just before its K-th write or sync of the image file (K=0: never; it then
// reports the number of writes and syncs it made).
func TestCrashChild(t *testing.T) {
	path := os.Getenv("QCOW2_CRASH_IMAGE")
	if path == "" {
		return // only an entry point for TestCrash's child processes
	}
	seed, _ := strconv.ParseUint(os.Getenv("QCOW2_CRASH_SEED"), 10, 64)
	kill, _ := strconv.Atoi(os.Getenv("QCOW2_CRASH_KILL"))
	report := os.NewFile(3, "report")
	say := func(format string, args ...any) {
		if _, err := fmt.Fprintf(report, format+"\n", args...); err != nil {
			t.Fatal(err)
		}
	}
	img, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	img.hook = func() {
		calls++
		if calls == kill {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
	for i, o := range crashOps(seed, img.Size(), int64(img.cs)) {
		if err := o.apply(img); err != nil {
			t.Fatal(err)
		}
		say("w %d", i)
		if i%crashFlushEvery == crashFlushEvery-1 {
			if err := img.Flush(); err != nil {
				t.Fatal(err)
			}
			say("f %d", i)
		}
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	say("n %d", calls)
}

// crashRun runs the child on path. With kill > 0 the child kills itself at
// its kill-th write or sync; with killAfter >= 0 the parent SIGKILLs it as
// soon as it reports op killAfter done. It returns the last op reported
// done, the last op a completed Flush followed, and the child's count of
// writes and syncs if it finished.
func crashRun(t *testing.T, path string, seed uint64, kill, killAfter int) (acked, flushed, calls int) {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "QCOW2_CRASH_IMAGE="+path,
		fmt.Sprintf("QCOW2_CRASH_SEED=%d", seed), fmt.Sprintf("QCOW2_CRASH_KILL=%d", kill))
	cmd.ExtraFiles = []*os.File{w}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	w.Close()
	acked, flushed, calls = -1, -1, -1
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var what string
		var n int
		_, err := fmt.Sscanf(sc.Text(), "%s %d", &what, &n)
		require.NoError(t, err, "child said %q", sc.Text())
		switch what {
		case "w":
			acked = n
			if n == killAfter {
				require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			}
		case "f":
			flushed = n
		case "n":
			calls = n
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws := ee.Sys().(syscall.WaitStatus)
		require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child: %v\n%s", err, out.String())
	} else {
		require.NoError(t, err, "child:\n%s", out.String())
	}
	return acked, flushed, calls
}

// TestCrash kills a process writing through the package at many points (at
// each of a spread of its file writes and syncs, and asynchronously after a
// number of completed writes) and checks that qemu-img finds no corruption
// (leaks allowed), that QEMU and this package read the same disk, and that
// every write the child saw complete reads back; writes followed by a
// completed Flush are a subset of those.
func TestCrash(t *testing.T) {
	needQemuImg(t)
	for _, c := range []struct {
		name     string
		cs, bits int
		size     int64
	}{
		{"4k", 4096, 16, 1 << 20},
		// New refcount blocks, and a refcount table (64 blocks of 64
		// clusters a cluster) that grows during the first write.
		{"512-refcount64", 512, 64, 3 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			size := c.size
			base := pattern(rand.New(rand.NewPCG(8, 9)), int(size/2+4096))
			writeFile(t, filepath.Join(dir, "base.raw"), base)
			tmpl := filepath.Join(dir, "template.qcow2")
			require.NoError(t, Create(tmpl, size, "base.raw", &CreateOptions{ClusterSize: c.cs, RefcountBits: c.bits}))
			fresh, err := os.ReadFile(tmpl)
			require.NoError(t, err)
			start := make([]byte, size)
			copy(start, base)
			seed := uint64(c.cs)
			ops := crashOps(seed, size, int64(c.cs))

			path := filepath.Join(dir, "disk.qcow2")
			writeFile(t, path, fresh)
			_, _, total := crashRun(t, path, seed, 0, -1)
			require.Positive(t, total)

			check := func(label string, acked, flushed int) {
				t.Helper()
				require.LessOrEqual(t, flushed, acked)
				qemuCheck(t, path, true)
				img, err := Open(path, true)
				require.NoError(t, err, label)
				got := readAll(t, img, rand.New(rand.NewPCG(1, 1)))
				require.NoError(t, img.Close())
				requireSame(t, toRaw(t, path), got, label+": QEMU and qcow2 read the same disk")
				want := append([]byte(nil), start...)
				for _, o := range ops[:acked+1] {
					o.applyRef(want, int64(c.cs), true)
				}
				if acked+1 < len(ops) { // the op in flight may have landed in part
					o := ops[acked+1]
					copy(want[o.off:o.off+o.n], got[o.off:o.off+o.n])
				}
				requireSame(t, want, got, label+": completed writes read back")
			}

			points := 0
			step := max(1, total/40)
			for k := 1; k <= total; k += step {
				writeFile(t, path, fresh)
				acked, flushed, _ := crashRun(t, path, seed, k, -1)
				check(fmt.Sprintf("killed at file write/sync %d of %d", k, total), acked, flushed)
				points++
			}
			for n := 0; n < len(ops); n += 5 {
				writeFile(t, path, fresh)
				acked, flushed, _ := crashRun(t, path, seed, 0, n)
				check(fmt.Sprintf("killed after op %d", n), acked, flushed)
				points++
			}
			t.Logf("%d kill points, %d file writes and syncs in the whole run", points, total)

			// A crashed image (with leaks) takes more writes.
			img, err := Open(path, false)
			require.NoError(t, err)
			_, err = img.WriteAt(make([]byte, 3*c.cs), int64(c.cs/2))
			require.NoError(t, err)
			require.NoError(t, img.Close())
			qemuCheck(t, path, true)
		})
	}
}
