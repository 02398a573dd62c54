package main

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

// A runner's smaps: its binary, a heap, a small anonymous mapping, a
// read-only anonymous reservation larger than RAM, and guest RAM (256 MiB).
const testSmaps = `00400000-00800000 r-xp 00000000 08:01 1234 /usr/bin/qemu-system-x86_64
Size:               4096 kB
Rss:                3000 kB
Anonymous:             0 kB
01000000-01400000 rw-p 00000000 00:00 0 [heap]
Size:               4096 kB
Rss:                2000 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Size:               1024 kB
Rss:                 512 kB
7f1000000000-7f1040000000 ---p 00000000 00:00 0
Size:            1048576 kB
Rss:                   0 kB
7f2000000000-7f2010000000 rw-p 00000000 00:00 0
Size:             262144 kB
Rss:               70000 kB
VmFlags: rd wr mr mw me ac
`

func TestSplitSmaps(t *testing.T) {
	total, guest := splitSmaps([]byte(testSmaps), 256<<10)
	require.Equal(t, uint64(3000+2000+512+70000), total)
	require.Equal(t, uint64(70000), guest)
	// No mapping as large as the guest: nothing is guest RAM.
	total, guest = splitSmaps([]byte(testSmaps), 512<<10)
	require.Equal(t, uint64(75512), total)
	require.Zero(t, guest)
	total, guest = splitSmaps([]byte("garbage\nRss: x kB\n-\n"), 1)
	require.Zero(t, total)
	require.Zero(t, guest)
}

func TestSampleMemoryOfRunningProcess(t *testing.T) {
	// This process's own smaps: everything is "own" (no mapping of 1 TiB).
	stop := sampleMemory(os.Getpid(), 1<<30, time.Millisecond)
	m := stop()
	require.Positive(t, m.Samples)
	require.Positive(t, m.OwnPeakKiB)
	require.Zero(t, m.GuestPeakKiB)
	back, err := scenario.ParseMemory([]string{scenario.ConsoleLine("x", memoryLine(m))})
	require.NoError(t, err)
	require.Equal(t, []scenario.Memory{m}, back)
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
