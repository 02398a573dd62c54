package main

import (
	"bufio"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

// A runner's smaps: its binary's code, its data (partly copied on write), a
// shared file mapping written to, a heap, a small anonymous mapping, a
// read-only anonymous reservation larger than RAM, and guest RAM (256 MiB).
const testSmaps = `00400000-00800000 r-xp 00000000 08:01 1234 /usr/bin/qemu-system-x86_64
Size:               4096 kB
Rss:                3000 kB
Pss:                1500 kB
Shared_Dirty:          0 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
00800000-00900000 rw-p 00400000 08:01 1234 /usr/bin/qemu-system-x86_64
Size:               1024 kB
Rss:                 100 kB
Pss:                 100 kB
Private_Dirty:        60 kB
Anonymous:            60 kB
00a00000-00a10000 rw-s 00000000 08:01 99 /tmp/shared
Size:                 64 kB
Rss:                  16 kB
Pss:                  16 kB
Shared_Dirty:          8 kB
Anonymous:             0 kB
01000000-01400000 rw-p 00000000 00:00 0 [heap]
Size:               4096 kB
Rss:                2000 kB
Pss:                2000 kB
Private_Dirty:      2000 kB
Anonymous:          2000 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Size:               1024 kB
Rss:                 512 kB
Pss:                 512 kB
Private_Dirty:       512 kB
Anonymous:           512 kB
7f1000000000-7f1040000000 ---p 00000000 00:00 0
Size:            1048576 kB
Rss:                   0 kB
7f2000000000-7f2010000000 rw-p 00000000 00:00 0
Size:             262144 kB
Rss:               70000 kB
Pss:               70000 kB
Private_Dirty:     70000 kB
Anonymous:         70000 kB
VmFlags: rd wr mr mw me ac
`

func TestSplitSmaps(t *testing.T) {
	own := uint64(3000 + 100 + 16 + 2000 + 512)
	require.Equal(t, smapsSums{total: own + 70000, guest: 70000, anon: 60 + 2000 + 512,
		pss: 1500 + 100 + 16 + 2000 + 512, fileDirty: 8}, splitSmaps([]byte(testSmaps), 256<<10))
	// No mapping as large as the guest: nothing is guest RAM.
	require.Equal(t, smapsSums{total: own + 70000, anon: 60 + 2000 + 512 + 70000,
		pss: 1500 + 100 + 16 + 2000 + 512 + 70000, fileDirty: 8}, splitSmaps([]byte(testSmaps), 512<<10))
	require.Zero(t, splitSmaps([]byte("garbage\nRss: x kB\n-\nRss: 99999999999999999999 kB\n"), 1))
	// Figures before the first mapping belong to none.
	require.Equal(t, smapsSums{total: 5}, splitSmaps([]byte("Rss: 7 kB\n-\nRss: 5 kB\n"), 1))
}

func TestStatusKiB(t *testing.T) {
	status := []byte("Name:\tvmm\nVmHWM:\t  9000 kB\nVmPTE:\t   120 kB\nVmBad:\t12\n")
	require.Equal(t, uint64(120), statusKiB(status, "VmPTE:"))
	require.Equal(t, uint64(9000), statusKiB(status, "VmHWM:"))
	require.Zero(t, statusKiB(status, "VmBad:"), "no unit")
	require.Zero(t, statusKiB(status, "VmSwap:"), "absent")
}

func FuzzSplitSmaps(f *testing.F) {
	f.Add([]byte(testSmaps), uint64(256<<10))
	f.Add([]byte("-\nRss: 18446744073709551615 kB\nAnonymous: 1 kB\n"), uint64(0))
	f.Fuzz(func(t *testing.T, smaps []byte, guestKiB uint64) {
		s := splitSmaps(smaps, guestKiB)
		require.LessOrEqual(t, s.guest, s.total)
		statusKiB(smaps, "VmPTE:")
	})
}

func TestSampleMemoryOfRunningProcess(t *testing.T) {
	// This process's own smaps: everything is "own" (no mapping of 1 TiB).
	stop := sampleMemory(os.Getpid(), 1<<30, time.Millisecond)
	m := stop()
	require.Positive(t, m.Samples)
	require.Positive(t, m.OwnPeakKiB)
	require.Zero(t, m.GuestPeakKiB)
	// A Go test binary holds heap (anonymous), its code (file-backed) and
	// page tables; one more such process would cost the first and last.
	require.Positive(t, m.AnonPeakKiB)
	require.Positive(t, m.FilePeakKiB)
	require.Positive(t, m.PageTablesPeakKiB)
	require.Positive(t, m.PssPeakKiB)
	require.GreaterOrEqual(t, m.PerGuestPeakKiB, m.AnonPeakKiB)
	require.LessOrEqual(t, m.PerGuestPeakKiB, m.AnonPeakKiB+m.PageTablesPeakKiB)
	back, err := scenario.ParseMemory([]string{scenario.ConsoleLine("x", memoryLine(m))})
	require.NoError(t, err)
	require.Equal(t, []scenario.Memory{m}, back)
}

// TestSampledFilePagesAreShared is why the per-guest figure leaves file
// pages out: a second process of the same binary (here this test binary,
// acting as a runner) maps the page-cache pages the first has, so its
// proportional share of them is about half, while its anonymous memory is
// its own.
func TestSampledFilePagesAreShared(t *testing.T) {
	cmd := exec.Command(os.Args[0], "hold")
	cmd.Env = append(os.Environ(), fakeEnv+"=1")
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() {
		_ = stdin.Close()
		require.NoError(t, cmd.Wait())
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)

	m := sampleMemory(cmd.Process.Pid, 1<<30, time.Hour)()
	t.Logf("%+v", m)
	require.Equal(t, 1, m.Samples)
	require.Positive(t, m.FilePeakKiB)
	require.Equal(t, m.OwnPeakKiB, m.AnonPeakKiB+m.FilePeakKiB)
	require.Less(t, m.PssPeakKiB, m.AnonPeakKiB+m.FilePeakKiB*3/4, "%+v: file pages shared with this process", m)
	require.GreaterOrEqual(t, m.PssPeakKiB, m.AnonPeakKiB, "%+v: anonymous pages are the helper's own", m)
}

func TestRunPrintsSampledMemory(t *testing.T) {
	r, rec := newTestRunner(t)
	s := scenario.Scenario{Name: "mem", Args: []string{"boot"}, Stream: true, SampleMemoryMiB: 1 << 20}
	require.NoError(t, s.Validate())
	res := r.run(t.Context(), scenario.Run{Scenario: s, Index: 1})
	require.True(t, res.Pass, res.Reason)
	var console []string
	for _, ev := range rec.events(t) {
		if ev.Kind == scenario.KindConsole {
			console = append(console, ev.Text)
		}
	}
	mems, err := scenario.ParseMemory(console)
	require.NoError(t, err)
	require.Len(t, mems, 1, "one memory line per run")

	s.Stream = false
	require.ErrorIs(t, s.Validate(), scenario.ErrInvalid)
	s.Stream, s.SampleMemoryMiB = true, -1
	require.ErrorIs(t, s.Validate(), scenario.ErrInvalid)
}
