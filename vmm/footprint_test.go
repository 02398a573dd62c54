package vmm

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadOnlyFileMappings(t *testing.T) {
	maps := `00400000-008c0000 r-xp 00000000 fe:00 9978422                            /work/bin/vmm
008c0000-00dce000 r--p 004c0000 fe:00 9978422                            /work/bin/vmm
00dce000-00e52000 rw-p 009ce000 fe:00 9978422                            /work/bin/vmm
00e52000-02e94000 rw-p 00000000 00:00 0
7f10fdc00000-7f110dc00000 rw-p 00000000 00:00 0
7f1100000000-7f1100010000 r--s 00000000 fe:00 12                         /shared/file
7ffd1a3f1000-7ffd1a3f5000 r--p 00000000 00:00 0                          [vvar]
7ffd1a3f5000-7ffd1a3f7000 r-xp 00000000 00:00 0                          [vdso]
bad line
zz-00 r--p 0 fe:00 5 /x
`
	require.Equal(t, [][2]uintptr{{0x400000, 0x8c0000}, {0x8c0000, 0xdce000}}, readOnlyFileMappings([]byte(maps)))
}

// Dropping the read-only file pages shrinks the resident set and leaves the
// process working: the code that runs next faults back in.
func TestReleaseStartup(t *testing.T) {
	before := rssFileKiB(t)
	releaseStartup()
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
