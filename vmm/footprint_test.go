package vmm

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCleanFileMappings(t *testing.T) {
	smaps := `00400000-008c0000 r-xp 00000000 fe:00 9978422                            /work/bin/vmm
Size:               4864 kB
Rss:                4096 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
008c0000-00dce000 r--p 004c0000 fe:00 9978422                            /work/bin/vmm
Rss:                3576 kB
Anonymous:             0 kB
00dce000-00e52000 rw-p 009ce000 fe:00 9978422                            /work/bin/vmm
Anonymous:           120 kB
00e52000-02e94000 rw-p 00000000 00:00 0
Anonymous:            88 kB
7f0000000000-7f0000004000 r--p 001f0000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:            16 kB
7f10fdc00000-7f110dc00000 rw-p 00000000 00:00 0
Anonymous:         26624 kB
7f1100000000-7f1100010000 r--s 00000000 fe:00 12                         /shared/file
Anonymous:             0 kB
7ffd1a3f5000-7ffd1a3f7000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
zz-00 r--p 0 fe:00 5 /x
Anonymous:             0 kB
7f2000000000-7f2000001000 r--p 00000000 fe:00 77                         /no/anonymous/line
`
	require.Equal(t, [][2]uintptr{{0x400000, 0x8c0000}, {0x8c0000, 0xdce000}}, cleanFileMappings([]byte(smaps)))
}

// Dropping the read-only file pages shrinks the resident set and leaves the
// process working: the code that runs next faults back in.
func TestReleaseStartup(t *testing.T) {
	before := rssFileKiB(t)
	releaseStartup(fileMappings())
	after := rssFileKiB(t)
	require.Less(t, after, before)
	t.Logf("RssFile %d kB -> %d kB", before, after)
}

func rssFileKiB(t *testing.T) uint64 {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
