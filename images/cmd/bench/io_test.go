package main

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
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
	round := []string{"bench-vmm", "bench-qemu", "iobench-virtio-vmm", "iobench-virtio-qemu",
		"iobench-nvme-vmm", "iobench-nvme-qemu", "iobench-ahci-vmm", "iobench-ahci-qemu",
		"iobench-qcow2-vmm", "iobench-qcow2-qemu", "iobench-vmbus-vmm", "iobench-netvsc-vmm"}
	require.Equal(t, append(append([]string(nil), round...), round...), names)
	byName := map[string]scenario.Scenario{}
	for _, s := range list {
		byName[s.Name] = s
	}
	args := func(name string) string { return strings.Join(byName[name].Args, " ") }

	// virtio-blk and virtio-net as before, QEMU on microvm's virtio-mmio.
	require.Contains(t, args("iobench-virtio-vmm"), "--disk /tmp/vmm-bench.img,serial=vmm-bench --net tap=vmmtap0")
	qv := args("iobench-virtio-qemu")
	require.Contains(t, qv, "-M microvm")
	require.Contains(t, qv, "virtio-blk-device,drive=d0,serial=vmm-bench")
	require.Contains(t, qv, "vhost=off")
	require.Contains(t, qv, "vmm.iobench=vmm-bench:7 vmm.net=")
	require.True(t, byName["iobench-virtio-qemu"].Stream)
	require.Equal(t, "vmmtap0", byName["iobench-virtio-qemu"].Tap.Name)

	// NVMe and AHCI: the same image and serial on each runner's controller,
	// QEMU on q35, no NIC.
	for _, iface := range []string{"nvme", "ahci"} {
		v, q := byName["iobench-"+iface+"-vmm"], byName["iobench-"+iface+"-qemu"]
		va, qa := args(v.Name), args(q.Name)
		require.Contains(t, va, "--disk /tmp/vmm-bench.img,serial=vmm-bench,if="+iface)
		require.NotContains(t, va, "--net")
		require.Contains(t, qa, "-M q35")
		require.Contains(t, qa, "-bios /usr/share/seabios/bios-256k.bin")
		require.NotContains(t, qa, "microvm")
		require.Contains(t, qa, "-drive id=d0,file=/tmp/vmm-bench.img,format=raw,if=none,cache=writeback,aio=threads")
		for _, s := range []scenario.Scenario{v, q} {
			a := args(s.Name)
			require.Contains(t, a, "vmm.iobench=vmm-bench:7")
			require.NotContains(t, a, "vmm.net=")
			require.Nil(t, s.Tap, s.Name)
			require.True(t, s.Stream && s.Bench, s.Name)
			require.Equal(t, 2, s.Repeat)
			require.Equal(t, []scenario.Disk{{Path: ioImage, Size: ioImageSize, Seed: ioSeed, WantSeed: ioSeed}}, s.Disks)
			require.Equal(t, scenario.Pass, s.WantChecks[ioCheck])
		}
	}
	require.Contains(t, args("iobench-nvme-qemu"), "-device nvme,drive=d0,serial=vmm-bench")
	require.Contains(t, args("iobench-ahci-qemu"), "-device ide-hd,drive=d0,bus=ide.0,serial=vmm-bench")

	// qcow2: virtio-blk on a qcow2 image of the same data for both runners.
	qc := byName["iobench-qcow2-vmm"]
	require.Contains(t, args(qc.Name), "--disk /tmp/vmm-bench.img,serial=vmm-bench")
	require.NotContains(t, args(qc.Name), "if=")
	require.Contains(t, args("iobench-qcow2-qemu"), "-drive id=d0,file=/tmp/vmm-bench.img,format=qcow2,")
	require.Contains(t, args("iobench-qcow2-qemu"), "virtio-blk-device,drive=d0,serial=vmm-bench")
	for _, name := range []string{"iobench-qcow2-vmm", "iobench-qcow2-qemu"} {
		require.Equal(t, []scenario.Disk{{Path: ioImage, Size: ioImageSize, Seed: ioSeed, WantSeed: ioSeed, Format: "qcow2"}},
			byName[name].Disks)
	}
}

func TestIOScenarioVMBus(t *testing.T) {
	o, err := parseFlags([]string{"-n", "1", "-io"}, io.Discard)
	require.NoError(t, err)
	s, err := o.ioScenario(ifVMBus, scenario.RunnerVMM)
	require.NoError(t, err)
	a := strings.Join(s.Args, " ")
	require.Contains(t, a, "--hyperv "+testhost.KernelTimersHyperV+" --vmbus --disk /tmp/vmm-bench.img,serial=vmm-bench,if=vmbus")
	require.NotContains(t, a, "--net")
}

// TestIOScenarioNetVSC: the virtio-blk disk with the NIC on VMBus on the
// same tap, found by its MAC.
func TestIOScenarioNetVSC(t *testing.T) {
	o, err := parseFlags([]string{"-n", "1", "-io"}, io.Discard)
	require.NoError(t, err)
	s, err := o.ioScenario(ifNetVSC, scenario.RunnerVMM)
	require.NoError(t, err)
	a := strings.Join(s.Args, " ")
	require.Contains(t, a, "--hyperv "+testhost.KernelTimersHyperV+" --vmbus --disk /tmp/vmm-bench.img,serial=vmm-bench --net tap=vmmtap0,if=vmbus,mac="+ioNetVSCMAC)
	require.Contains(t, a, "vmm.net=10.0.2.15/24,10.0.2.1:7777,")
	require.Contains(t, a, "vmm.net_mac="+ioNetVSCMAC)
	require.Equal(t, "vmmtap0", s.Tap.Name)
}

func TestWithMachine(t *testing.T) {
	in := []string{"-M", "microvm", "-m", "256"}
	require.Equal(t, []string{"-M", "q35", "-m", "256"}, withMachine(in, "q35"))
	require.Equal(t, "microvm", in[1], "the input is left alone")
}

func TestSummarizeIO(t *testing.T) {
	line := func(detail string) string {
		return `VMM-AGENT: check=iobench result=pass detail="` + detail + `"`
	}
	console := map[string][]string{
		"iobench-virtio-vmm": {
			"noise", line("dev=vda driver=virtio_blk seq_read=100.0MB/s seq_write=50.0MB/s randread_4k=1000iops tcp_tx=10.0MB/s"),
			line("dev=vda driver=virtio_blk seq_read=120.0MB/s seq_write=70.0MB/s randread_4k=3000iops tcp_tx=30.0MB/s tcp_rx=40.0MB/s"),
			`VMM-AGENT: check=iobench result=fail detail="seq_read=1MB/s"`,
		},
		"iobench-virtio-qemu": {line("dev=vda driver=virtio_blk seq_read=55.0MB/s seq_write=60.0MB/s randread_4k=4000iops bogus tcp_tx=x")},
		"iobench-nvme-vmm":    {line("dev=nvme0n1 driver=nvme seq_read=300.0MB/s seq_write=200.0MB/s randread_4k=9000iops")},
		"iobench-nvme-qemu":   {line("dev=nvme0n1 driver=nvme seq_read=150.0MB/s seq_write=250.0MB/s randread_4k=10000iops")},
		// A miswired runner: the figures are not AHCI's.
		"iobench-ahci-qemu":  {line("dev=vda driver=virtio_blk seq_read=1.0MB/s seq_write=1.0MB/s randread_4k=1iops")},
		"iobench-ahci-vmm":   {line("dev=sda driver=ahci seq_read=80.0MB/s seq_write=40.0MB/s randread_4k=2000iops")},
		"iobench-qcow2-vmm":  {line("dev=vda driver=virtio_blk seq_read=99.0MB/s seq_write=30.0MB/s randread_4k=1600iops")},
		"iobench-qcow2-qemu": {line("dev=vda driver=virtio_blk seq_read=90.0MB/s seq_write=30.0MB/s randread_4k=1600iops")},
		"iobench-vmbus-vmm":  {line("dev=sda driver=hv_storvsc seq_read=88.0MB/s seq_write=60.0MB/s randread_4k=1800iops")},
		"iobench-netvsc-vmm": {line("dev=vda driver=virtio_blk seq_read=99.0MB/s seq_write=60.0MB/s randread_4k=1800iops tcp_tx=18.0MB/s tcp_rx=30.0MB/s")},
	}
	rep := summarizeIO([]string{"vmm", "qemu"}, console)
	require.Len(t, rep.Runs["virtio"]["vmm"], 2)
	require.Equal(t, map[string]float64{"seq_read": 110, "seq_write": 60, "randread_4k": 2000, "tcp_tx": 20, "tcp_rx": 40},
		rep.Medians["virtio"]["vmm"])
	require.InDelta(t, 2.0, rep.Ratios["virtio"]["seq_read"], 1e-9)
	require.InDelta(t, 0.5, rep.Ratios["virtio"]["randread_4k"], 1e-9)
	_, ok := rep.Ratios["virtio"]["tcp_tx"]
	require.False(t, ok, "no QEMU figure")
	require.InDelta(t, 2.0, rep.Ratios["nvme"]["seq_read"], 1e-9)
	require.InDelta(t, 0.8, rep.Ratios["nvme"]["seq_write"], 1e-9)
	require.InDelta(t, 0.9, rep.Ratios["nvme"]["randread_4k"], 1e-9)
	require.Len(t, rep.Ratios["nvme"], 3, "no TCP off virtio")
	require.Empty(t, rep.Runs["ahci"]["qemu"])
	require.Empty(t, rep.Ratios["ahci"])
	require.Equal(t, []string{`iobench-ahci-qemu: driver "virtio_blk", want "ahci"`}, rep.Problems)

	var b strings.Builder
	rep.write(&b)
	out := b.String()
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 7 && f[0] != "left" {
			rows[f[0]+" "+f[1]] = f[2:]
		}
	}
	require.Equal(t, []string{"2", "110.0", "1", "55.0", "2.00"}, rows["virtio seq_read"])
	require.Equal(t, []string{"2", "20.0", "1", "-", "n/a"}, rows["virtio tcp_tx"])
	require.Equal(t, []string{"1", "9000.0", "1", "10000.0", "0.90"}, rows["nvme randread_4k"])
	require.Equal(t, []string{"1", "80.0", "0", "-", "n/a"}, rows["ahci seq_read"])
	require.NotContains(t, rows, "nvme tcp_tx")
	require.NotContains(t, rows, "ahci tcp_tx")
	require.Equal(t, []string{"vmm_n", "vmm", "qemu_n", "qemu", "vmm/qemu"}, rows["iface figure"])
	require.Equal(t, []string{"1", "99.0", "1", "90.0", "1.10"}, rows["qcow2 seq_read"])
	require.Len(t, rows, 1+5+3+3+3+3+2, "header and one row per interface and figure")
	require.Equal(t, []string{"1", "18.0", "0", "-", "n/a"}, rows["netvsc tcp_tx"])
	require.NotContains(t, rows, "netvsc seq_read", "only its TCP figures")
	require.InDelta(t, 0.9, rep.NetVSCVirtio["tcp_tx"], 1e-9)
	require.InDelta(t, 0.75, rep.NetVSCVirtio["tcp_rx"], 1e-9)
	require.Contains(t, out, "vmm netvsc/virtio-net: tcp_tx=0.90 tcp_rx=0.75\n")
	require.Equal(t, []string{"1", "88.0", "0", "-", "n/a"}, rows["vmbus seq_read"])
	require.InDelta(t, 0.8, rep.VMBusVirtio["seq_read"], 1e-9)
	require.Contains(t, out, "vmm storvsc/virtio-blk: seq_read=0.80 seq_write=1.00 randread_4k=0.90\n")
	require.InDelta(t, 0.9, rep.Qcow2Raw["seq_read"], 1e-9)
	require.InDelta(t, 0.8, rep.Qcow2Raw["randread_4k"], 1e-9)
	require.Contains(t, out, "vmm qcow2/raw: seq_read=0.90 seq_write=0.50 randread_4k=0.80\n")
	require.Contains(t, out, `left out: iobench-ahci-qemu: driver "virtio_blk"`)

	_, ok = agentDetail(`VMM-AGENT: check=iobench result=pass detail=not-json`, "iobench")
	require.False(t, ok)
	_, ok = agentDetail(line("x=1"), "disk")
	require.False(t, ok)
	require.Equal(t, "nvme", detailWord("dev=nvme0n1 driver=nvme seq_read=1MB/s", "driver"))
	require.Equal(t, "", detailWord("seq_read=1MB/s", "driver"))
}

func TestIOInterfaceSubset(t *testing.T) {
	o, err := parseFlags([]string{"-n", "1", "-io", "-io-if", "nvme,ahci"}, io.Discard)
	require.NoError(t, err)
	list, err := o.scenarios()
	require.NoError(t, err)
	var names []string
	for _, r := range scenario.Schedule(list) {
		names = append(names, r.Scenario.Name)
	}
	require.Equal(t, []string{"bench-vmm", "bench-qemu", "iobench-nvme-vmm", "iobench-nvme-qemu",
		"iobench-ahci-vmm", "iobench-ahci-qemu"}, names)
	_, err = parseFlags([]string{"-io-if", "nvme,scsi"}, io.Discard)
	require.ErrorContains(t, err, `unknown interface "scsi"`)
}

func TestIOReportCounts(t *testing.T) {
	o, err := parseFlags([]string{"-n", "1", "-boot=false", "-io", "-io-if", "virtio,vmbus", "-runners", "vmm,qemu", "-io-report"}, io.Discard)
	require.NoError(t, err)
	list, err := o.scenarios()
	require.NoError(t, err)
	for _, s := range list {
		require.Equal(t, s.Runner == scenario.RunnerVMM, s.Report, s.Name)
		require.NoError(t, s.Validate(), s.Name)
	}
	report := func(wrmsr, eom, signals int) []string {
		return []string{scenario.ReportPrefix + fmt.Sprintf(`{"version":1,"exits":{"io":5,"wrmsr":%d},`+
			`"devices":{"uart":{"tx_bytes":9}},"hyperv":{"msrs":{"HV_X64_MSR_EOM":{"reads":0,"writes":%d}},`+
			`"hypercalls":{"HvSignalEvent":{"calls":7,"statuses":{"success":7}}},"vps":[{"vp":0,"sints_raised":3}],`+
			`"vmbus":{"bus":{"channels":[{"relid":1,"stats":{"signals_in":%d,"bytes_in":100}}]}}}}`, wrmsr, eom, signals)}
	}
	console := map[string][]string{
		"iobench-vmbus-vmm": append(append(report(10, 4, 1), report(20, 6, 3)...), report(30, 8, 5)...),
		// A counter missing from one run counts as zero there.
		"iobench-virtio-vmm": append([]string{scenario.ReportPrefix + `{"exits":{"io":1,"hlt":4}}`},
			scenario.ReportPrefix+`{"exits":{"io":3}}`),
	}
	rep := summarizeIO([]string{"vmm"}, console)
	require.Equal(t, map[string]float64{"exits.io": 5, "exits.wrmsr": 20, "hyperv.msrs.HV_X64_MSR_EOM.reads": 0,
		"hyperv.msrs.HV_X64_MSR_EOM.writes": 6, "hyperv.hypercalls.HvSignalEvent.calls": 7,
		"hyperv.vps.0.sints_raised": 3, "hyperv.vmbus.bus.channels.0.stats.signals_in": 3}, rep.VMMCounts["vmbus"])
	require.Equal(t, map[string]float64{"exits.io": 2, "exits.hlt": 2}, rep.VMMCounts["virtio"])
	var b strings.Builder
	rep.write(&b)
	require.Contains(t, b.String(), "vmm counts per run, vmbus (medians of its reports):\n")
	require.Regexp(t, `\n  hyperv\.msrs\.HV_X64_MSR_EOM\.writes +6\n`, b.String())
	require.NotContains(t, b.String(), "EOM.reads", "zero counts are left out")
	require.Nil(t, summarizeIO([]string{"vmm"}, map[string][]string{}).VMMCounts)
}
