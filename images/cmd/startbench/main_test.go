package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestGuestImages(t *testing.T) {
	img := bzImage()
	pm := 2 * 512
	require.Equal(t, program32, img[pm:pm+len(program32)], "32-bit entry (gokvm)")
	require.Equal(t, program32, img[pm+0x200:pm+0x200+len(program32)], "64-bit entry (vmm)")
	require.Equal(t, "HdrS", string(img[0x202:0x206]))
	require.Equal(t, uint16(0xaa55), binary.LittleEndian.Uint16(img[0x1fe:]))

	fw := firmware()
	require.Len(t, fw, 64<<10)
	require.Equal(t, program16, fw[resetVectorOffset:resetVectorOffset+len(program16)])
	require.LessOrEqual(t, resetVectorOffset+len(program16), len(fw))
	// Both encodings write the same byte to COM1 and the same debug-exit value.
	for _, p := range [][]byte{program16, program32} {
		require.True(t, bytes.Contains(p, []byte{0xb0, firstByte, 0xee}))
		require.True(t, bytes.Contains(p, []byte{0xb0, 0x10, 0xe6, 0xf4}))
	}
}

func TestMedian(t *testing.T) {
	require.Equal(t, time.Duration(0), median([]time.Duration{}))
	require.Equal(t, uint64(3), median([]uint64{5, 1, 3}))
	require.Equal(t, int64(25), median([]int64{40, 10, 20, 30}))
}

func TestSummarizeTargets(t *testing.T) {
	runners := []*runner{{name: "noop"}, {name: "vmm"}, {name: "qemu"}, {name: "gokvm"}}
	samples := map[string][]sample{
		"vmm":   {{FirstByte: 4 * time.Millisecond, FirstExit: 3 * time.Millisecond, PeakRSS: 9000, OverheadKiB: 7000}},
		"qemu":  {{FirstByte: 40 * time.Millisecond, PeakRSS: 36000}},
		"gokvm": {{FirstByte: 8 * time.Millisecond, PeakRSS: 18000}},
	}
	res := summarize(runners, samples)
	require.InDelta(t, 0.1, res.Ratios["first_byte_vmm/qemu"], 1e-9)
	require.InDelta(t, 0.5, res.Ratios["peak_rss_vmm/gokvm"], 1e-9)
	require.Equal(t, map[string]bool{"startup_under_5ms": true, "overhead_under_10MiB": true, "startup_third_of_qemu": true}, res.Targets)

	samples["vmm"][0].FirstExit = 6 * time.Millisecond
	samples["vmm"][0].FirstByte = 20 * time.Millisecond
	samples["vmm"][0].OverheadKiB = 11 << 10
	res = summarize(runners, samples)
	require.Equal(t, map[string]bool{"startup_under_5ms": false, "overhead_under_10MiB": false, "startup_third_of_qemu": false}, res.Targets)
	var out bytes.Buffer
	res.print(&out)
	require.Regexp(t, `target startup_under_5ms +MISSED`, out.String())
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-n", "3", "-gokvm", "none"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 3, o.n)
	for _, bad := range [][]string{{"-n", "0"}, {"-timeout", "-1s"}, {"extra"}, {"-n", "x"}} {
		_, err := parseFlags(bad, io.Discard)
		require.Error(t, err, bad)
	}
}

func TestPTY(t *testing.T) {
	m, s, err := openPTY()
	require.NoError(t, err)
	defer m.Close()
	defer s.Close()
	_, err = m.Write([]byte("x\n"))
	require.NoError(t, err)
	buf := make([]byte, 8)
	n, err := s.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "x\n", string(buf[:n]))
}
