package main

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestIOScenarios(t *testing.T) {
	o, err := parseFlags([]string{"-n", "2", "-io"}, io.Discard)
	require.NoError(t, err)
	list, err := o.scenarios()
	require.NoError(t, err)
	var names []string
	for _, r := range scenario.Schedule(list) {
		names = append(names, r.Scenario.Name)
	}
	require.Equal(t, []string{"bench-vmm", "bench-qemu", "iobench-vmm", "iobench-qemu",
		"bench-vmm", "bench-qemu", "iobench-vmm", "iobench-qemu"}, names)
	vmmArgs, qemuArgs := strings.Join(list[2].Args, " "), strings.Join(list[3].Args, " ")
	require.Contains(t, vmmArgs, "--disk /tmp/vmm-bench.img,serial=vmm-bench --net tap=vmmtap0")
	require.Contains(t, qemuArgs, "virtio-blk-device,drive=d0,serial=vmm-bench")
	require.Contains(t, qemuArgs, "vhost=off")
	require.Contains(t, qemuArgs, "vmm.iobench=vmm-bench:7")
	require.True(t, list[3].Stream)
	require.Equal(t, "vmmtap0", list[3].Tap.Name)
}

func TestSummarizeIO(t *testing.T) {
	line := func(detail string) string {
		return `VMM-AGENT: check=iobench result=pass detail="` + detail + `"`
	}
	console := map[string][]string{
		"iobench-vmm": {
			"noise", line("seq_read=100.0MB/s seq_write=50.0MB/s randread_4k=1000iops tcp_tx=10.0MB/s"),
			line("seq_read=120.0MB/s seq_write=70.0MB/s randread_4k=3000iops tcp_tx=30.0MB/s"),
			`VMM-AGENT: check=iobench result=fail detail="seq_read=1MB/s"`,
		},
		"iobench-qemu": {line("seq_read=55.0MB/s seq_write=60.0MB/s randread_4k=4000iops bogus tcp_tx=x")},
	}
	rep := summarizeIO([]string{"vmm", "qemu"}, console)
	require.Len(t, rep.Runs["vmm"], 2)
	require.Equal(t, map[string]float64{"seq_read": 110, "seq_write": 60, "randread_4k": 2000, "tcp_tx": 20}, rep.Medians["vmm"])
	require.InDelta(t, 2.0, rep.Ratios["seq_read"], 1e-9)
	require.InDelta(t, 0.5, rep.Ratios["randread_4k"], 1e-9)
	_, ok := rep.Ratios["tcp_tx"]
	require.False(t, ok, "no QEMU figure")
	var b strings.Builder
	rep.write(&b)
	require.Contains(t, b.String(), "vmm/qemu")
	require.Contains(t, b.String(), "n/a")

	_, ok = agentDetail(`VMM-AGENT: check=iobench result=pass detail=not-json`, "iobench")
	require.False(t, ok)
	_, ok = agentDetail(line("x=1"), "disk")
	require.False(t, ok)
}
