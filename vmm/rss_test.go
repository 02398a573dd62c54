package vmm

import (
	"testing"

	"github.com/stretchr/testify/require"
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
