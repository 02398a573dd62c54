package vmm

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestParseVmHWM(t *testing.T) {
	status := "Name:\tvmm\nVmPeak:\t  900000 kB\nVmHWM:\t    6868 kB\nVmRSS:\t    6000 kB\n"
	require.Equal(t, uint64(6868<<10), parseVmHWM([]byte(status)))
	for _, bad := range []string{"", "VmRSS:\t1 kB\n", "VmHWM:\t12\n", "VmHWM:\tx kB\n", "VmHWM:\t12 MB\n"} {
		require.Zero(t, parseVmHWM([]byte(bad)), "%q", bad)
	}
}

// The probe reads this process's own peak, which is at least its current RSS.
func TestRSSProbe(t *testing.T) {
	p := openRSSProbe()
	defer p.Close()
	peak := p.peak()
	require.Greater(t, peak, uint64(1<<20))
	require.GreaterOrEqual(t, p.peak(), peak, "a peak never shrinks")
}

// Guest RAM counts as resident once touched, never before (no
// pre-touching), and the peak stays when pages are given back.
func TestResidentPeak(t *testing.T) {
	m, err := NewMemory(64 << 20)
	require.NoError(t, err)
	defer m.Close()
	r := residentPeak{mem: m}
	now, peak := r.sample()
	require.Zero(t, now, "untouched guest RAM is not resident")
	require.Zero(t, peak)
	b, err := m.Slice(16<<20, 4<<20)
	require.NoError(t, err)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	now, peak = r.sample()
	require.GreaterOrEqual(t, now, uint64(4<<20))
	require.Less(t, now, uint64(8<<20), "only what was touched (and its huge page) is resident")
	require.Equal(t, now, peak)
	require.NoError(t, unix.Madvise(b, unix.MADV_DONTNEED))
	now2, peak2 := r.sample()
	require.Less(t, now2, now)
	require.Equal(t, peak, peak2)
}
