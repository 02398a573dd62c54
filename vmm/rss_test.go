package vmm

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestStatusKiB(t *testing.T) {
	status := "Name:\tvmm\nVmPeak:\t  900000 kB\nVmHWM:\t    6868 kB\nVmRSS:\t    6000 kB\nVmPTE:\t     148 kB\n"
	require.Equal(t, uint64(6868<<10), statusKiB([]byte(status), "VmHWM:"))
	require.Equal(t, uint64(148<<10), statusKiB([]byte(status), "VmPTE:"))
	for _, bad := range []string{"", "VmRSS:\t1 kB\n", "VmHWM:\t12\n", "VmHWM:\tx kB\n", "VmHWM:\t12 MB\n",
		"VmHWM:\t99999999999999999 kB\n", "VmHWM:\t-1 kB\n"} {
		require.Zero(t, statusKiB([]byte(bad), "VmHWM:"), "%q", bad)
	}
}

func FuzzStatusKiB(f *testing.F) {
	f.Add([]byte("VmHWM:\t    6868 kB\nVmPTE:\t     148 kB\n"))
	f.Add([]byte("VmHWM:\t12 MB\n"))
	f.Add([]byte("VmPTE:\n"))
	f.Fuzz(func(t *testing.T, status []byte) {
		for _, key := range []string{"VmHWM:", "VmPTE:"} {
			v := statusKiB(status, key)
			require.Zero(t, v%1024, "whole KiB")
			require.LessOrEqual(t, v, uint64(1)<<54)
		}
	})
}

// smapsSample is a shortened /proc/self/smaps: the binary's text, a heap
// mapping, guest RAM split in two mappings, and one straddling its end.
const smapsSample = `00400000-00a00000 r-xp 00000000 fe:01 1234                               /usr/bin/vmm
Size:               6144 kB
Rss:                1200 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
c000000000-c000400000 rw-p 00000000 00:00 0 
Size:               4096 kB
Anonymous:          1500 kB
THPeligible:    0
7f0000000000-7f0008000000 rw-p 00000000 00:00 0 
Size:             131072 kB
Anonymous:         65536 kB
AnonHugePages:     65536 kB
7f0008000000-7f0010000000 rw-p 00000000 00:00 0 
Anonymous:          4000 kB
7f000fff0000-7f0010010000 rw-p 00000000 00:00 0 
Anonymous:            12 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Anonymous:            40 kB
`

func parseSmapsString(s string, guest [][2]uintptr, bufSize int) (uint64, uint64, bool) {
	return parseSmapsAnon(bufio.NewReaderSize(strings.NewReader(s), bufSize), guest)
}

func TestParseSmapsAnon(t *testing.T) {
	guest := [][2]uintptr{{0x7f0000000000, 0x7f0010000000}}
	own, g, ok := parseSmapsString(smapsSample, guest, smapsLineMax)
	require.True(t, ok)
	require.Equal(t, uint64(1500+12+40)<<10, own, "heap, the straddling mapping and the stack")
	require.Equal(t, uint64(65536+4000)<<10, g)

	own, g, ok = parseSmapsString(smapsSample, nil, smapsLineMax)
	require.True(t, ok)
	require.Equal(t, uint64(1500+65536+4000+12+40)<<10, own)
	require.Zero(t, g)

	// A path longer than the buffer: the header's range still counts, the
	// rest of the line is skipped.
	long := "7f0000000000-7f0008000000 rw-p 00000000 00:00 0 /" + strings.Repeat("x", 100) + "\nAnonymous:  8 kB\n"
	own, g, ok = parseSmapsString(long, guest, 64)
	require.True(t, ok)
	require.Zero(t, own)
	require.Equal(t, uint64(8<<10), g)

	for _, bad := range []string{
		"",
		"Anonymous: 4 kB\n", // no mapping yet
		"00400000-00a00000 r-xp 0 fe:01 1 /x\nAnonymous: 4 MB\n",
		"00400000-00a00000 r-xp 0 fe:01 1 /x\nAnonymous: x kB\n",
		"00a00000-00400000 r-xp 0 fe:01 1 /x\n", // end before start
		"zz-00a00000 r-xp 0 fe:01 1 /x\n",
		"00400000 r-xp 0 fe:01 1 /x\n",
	} {
		_, _, ok := parseSmapsString(bad, guest, smapsLineMax)
		require.False(t, ok, "%q", bad)
	}
}

func FuzzParseSmapsAnon(f *testing.F) {
	f.Add([]byte(smapsSample))
	f.Add([]byte("00400000-00a00000 r-xp 0 fe:01 1 /x\nAnonymous: 4 kB\n"))
	f.Add([]byte("Anonymous: 4 kB\n"))
	f.Add([]byte("7f0000000000-7f0008000000 rw-p 0 00:00 0\nAnonymous: 17592186044416 kB\n"))
	guest := [][2]uintptr{{0x7f0000000000, 0x7f0010000000}}
	f.Fuzz(func(t *testing.T, text []byte) {
		own, g, ok := parseSmapsString(string(text), guest, 64)
		all, none, okAll := parseSmapsString(string(text), nil, 64)
		require.Equal(t, ok, okAll)
		require.Zero(t, none, "no guest ranges, no guest memory")
		if !ok {
			require.Zero(t, own+g)
			return
		}
		require.Equal(t, all, own+g, "guest ranges only split the sum")
	})
}

// The probe reads this process's own peak, which is at least its current RSS.
func TestRSSProbe(t *testing.T) {
	p := openRSSProbe()
	defer p.Close()
	peak := p.peak()
	require.Greater(t, peak, uint64(1<<20))
	require.GreaterOrEqual(t, p.peak(), peak, "a peak never shrinks")
}

// vmm's own memory is exact: pages written in a mapping outside guest RAM
// count in full, guest RAM's never.
func TestOwnMemory(t *testing.T) {
	p := openRSSProbe()
	defer p.Close()
	const size = 1 << 20 // below a huge page: 4 KiB pages only
	own := isolatedMapping(t, size)
	guest := isolatedMapping(t, size)
	start := uintptr(unsafe.Pointer(&guest[0]))
	ranges := [][2]uintptr{{start, start + size}}

	o, ok := p.own(ranges)
	require.True(t, ok)
	require.Positive(t, o.Anon)
	require.Positive(t, o.PageTables)
	page := os.Getpagesize()
	var sum byte
	for i := 0; i < size; i += page {
		sum += guest[i] // read only
	}
	for i := 0; i < size/2; i += page {
		guest[i] = 1
	}
	for i := 0; i < size; i += page {
		own[i] = sum + 1
	}
	gm := &Memory{regions: []memRegion{{host: guest}}}
	var vec []byte
	require.Equal(t, uint64(size), gm.residentInto(&vec), "mincore counts pages only read as resident")

	// One smaps text parsed twice, so that the rest of this process
	// (the runtime, other tests) cannot move the figures in between.
	smaps, err := os.ReadFile("/proc/self/smaps")
	require.NoError(t, err)
	parse := func(ranges [][2]uintptr) (uint64, uint64) {
		o, g, ok := parseSmapsString(string(smaps), ranges, smapsLineMax)
		require.True(t, ok)
		return o, g
	}
	own1, g1 := parse(ranges)
	ownStart := uintptr(unsafe.Pointer(&own[0]))
	own2, g2 := parse(append(ranges, [2]uintptr{ownStart, ownStart + size}))
	require.Equal(t, uint64(size), own1-own2, "every page written outside guest RAM is vmm's")
	require.Equal(t, uint64(size), g2-g1)
	// Pages only read map the kernel's zero page, which smaps does not count
	// as anonymous, unlike mincore; kernels built without a zero page (this
	// sandbox's pvm_no_zero_page) give each read page its own.
	require.Contains(t, []uint64{size / 2, size}, g1, "smaps counts the written half, or all where reads allocate")
}

// isolatedMapping maps size bytes of anonymous memory between two
// inaccessible pages, so that the kernel cannot merge it with a neighbour:
// its smaps entry is exactly the slice returned.
func isolatedMapping(t *testing.T, size int) []byte {
	t.Helper()
	page := os.Getpagesize()
	b, err := unix.Mmap(-1, 0, size+2*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Munmap(b) })
	require.NoError(t, unix.Mprotect(b[:page], unix.PROT_NONE))
	require.NoError(t, unix.Mprotect(b[page+size:], unix.PROT_NONE))
	return b[page : page+size : page+size]
}

// Guest RAM counts as resident once touched, never before (no
// pre-touching), and the peak stays when pages are given back; vmm's own
// memory is sampled alongside.
func TestResidentPeak(t *testing.T) {
	m, err := NewMemory(64 << 20)
	require.NoError(t, err)
	defer m.Close()
	p := openRSSProbe()
	defer p.Close()
	r := residentPeak{mem: m, rss: p}
	now, peak := r.sample()
	require.Zero(t, now, "untouched guest RAM is not resident")
	require.Zero(t, peak)
	own := r.ownPeak()
	require.Positive(t, own.Anon)
	b, err := m.Slice(16<<20, 4<<20)
	require.NoError(t, err)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	now, peak = r.sample()
	require.GreaterOrEqual(t, now, uint64(4<<20))
	require.Less(t, now, uint64(8<<20), "only what was touched (and its huge page) is resident")
	require.Equal(t, now, peak)
	require.Less(t, r.ownPeak().Anon, own.Anon+(4<<20), "guest RAM is not counted as vmm's")
	require.NoError(t, unix.Madvise(b, unix.MADV_DONTNEED))
	now2, peak2 := r.sample()
	require.Less(t, now2, now)
	require.Equal(t, peak, peak2)
}
