package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/storage/cloudinit"
)

// isoFile reads one file of an ISO 9660 image back with go-diskfs' reader.
func isoFile(t *testing.T, iso []byte, name string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "seed-*.iso")
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write(iso)
	require.NoError(t, err)
	fsys, err := iso9660.Read(file.New(f, true), int64(len(iso)), 0, 2048)
	require.NoError(t, err)
	require.Equal(t, cloudinit.Label, strings.TrimRight(fsys.Label(), " \x00"))
	r, err := fsys.OpenFile("/"+name, os.O_RDONLY)
	require.NoError(t, err)
	data, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(data)
}

func TestCloudInitScenarios(t *testing.T) {
	o, err := parseFlags([]string{"-boot=false", "-cloudinit", "-n", "5"}, io.Discard)
	require.NoError(t, err)
	list, err := o.scenarios()
	require.NoError(t, err)
	require.Len(t, list, 3)
	var order []string
	for _, r := range scenario.Schedule(list) {
		order = append(order, r.Scenario.Name)
	}
	require.Equal(t, []string{"ci-warmup", "ci-vmm", "ci-qemu", "ci-vmm", "ci-qemu", "ci-vmm", "ci-qemu"}, order,
		"one warm-up boot first, then bounded to ciRepeat, alternating")

	v, w, q := list[0], list[1], list[2]
	require.Equal(t, v.Args, w.Args, "the warm-up boot reads what the measured ones read")
	require.Equal(t, v.Files, w.Files)
	require.False(t, w.Bench)
	require.True(t, v.Report, "vmm's exit counts go in the summary")
	require.False(t, w.Report)
	for _, s := range []scenario.Scenario{v, q} {
		require.True(t, s.Bench)
		require.True(t, s.Stream, "the summary reads the final message's uptime from the console")
		require.Equal(t, ciFinalMark, s.Mark)
		require.Equal(t, 0, s.WantExit, "the user-data powers off")
	}
	args := strings.Join(v.Args, " ")
	require.Contains(t, args, "--firmware seabios --disk "+images.OuterDebianDisk+",snapshot --cloud-init "+ciSeedDir)
	require.Contains(t, args, "--memory 1024M")
	require.Equal(t, images.DebianUserData, v.Files[ciSeedDir+"/user-data"])
	require.Contains(t, v.Files[ciSeedDir+"/meta-data"], "instance-id: "+ciInstanceID+"\n")

	require.Equal(t, scenario.RunnerQEMU, q.RunnerName())
	qargs := strings.Join(q.Args, " ")
	require.Contains(t, qargs, "-M pc -enable-kvm")
	require.Contains(t, qargs, "-m 1024 ")
	require.Contains(t, qargs, "-bios "+images.OuterSeaBIOS)
	require.Contains(t, qargs, "-drive file="+images.OuterDebianDisk+",if=virtio,format=qcow2,snapshot=on")
	require.Contains(t, qargs, "-drive file="+ciSeedISO+",if=virtio,format=raw,readonly=on")
	// QEMU's seed holds what vmm's --cloud-init reads, byte for byte.
	iso := q.Blobs[ciSeedISO]
	require.NotEmpty(t, iso)
	require.Equal(t, v.Files[ciSeedDir+"/user-data"], isoFile(t, iso, "user-data"))
	require.Equal(t, v.Files[ciSeedDir+"/meta-data"], isoFile(t, iso, "meta-data"))

	o.runners = []string{"vmm", "bochs"}
	_, err = o.cloudInitScenarios()
	require.ErrorIs(t, err, scenario.ErrInvalid)
}

func TestSummarizeCloudInit(t *testing.T) {
	final := func(up string) string {
		return "[  " + up + "] cloud-init[380]: Cloud-init v. 22.4.2 finished at Mon, 07 Dec 2026 13:21:26 +0000. Datasource DataSourceNoCloud [seed=/dev/vdb][dsmode=net].  Up " + up + " seconds"
	}
	res := []scenario.Result{
		{Name: "ci-vmm", Pass: true, MarkS: 120},
		{Name: "ci-vmm", Pass: true, MarkS: 140},
		{Name: "ci-vmm", Pass: false, MarkS: 10},
		{Name: "ci-qemu", Pass: true, MarkS: 100},
		{Name: "ci-qemu", Pass: true, MarkS: scenario.NoFirstLine},
	}
	console := map[string][]string{
		"ci-vmm": {"Cloud-init v. 22.4.2 running 'modules:final' at Mon. Up 99.00 seconds.", final("110.00"),
			scenario.ReportPrefix + `{"exits":{"io":100,"hlt":7},"devices":{"uart":{"tx_bytes":5000}}}`,
			final("130.00"),
			scenario.ReportPrefix + `{"exits":{"io":300,"hlt":9},"devices":{"uart":{"tx_bytes":7000}}}`},
		"ci-qemu": {final("95.50")},
	}
	rep := summarizeCloudInit([]string{"vmm", "qemu"}, res, console)
	require.Equal(t, map[string]float64{"vmm": 130, "qemu": 100}, rep.FinalS)
	require.Equal(t, map[string]float64{"vmm": 120, "qemu": 95.5}, rep.UptimeS)
	require.Equal(t, map[string]int{"vmm": 2, "qemu": 1}, rep.N)
	require.InDelta(t, 1.3, rep.Ratio, 1e-9)
	require.False(t, rep.Met)
	require.Equal(t, map[string]float64{"io": 200, "hlt": 8}, rep.VMMExits)
	require.Equal(t, 6000.0, rep.VMMConsoleBytes)
	var b bytes.Buffer
	rep.write(&b)
	require.Contains(t, b.String(), "vmm   n=2  to cloud-init's final message 130.0s  (guest uptime then 120.0s, before the guest's kernel 10.0s)")
	require.Contains(t, b.String(), "ratio vmm/qemu 1.30 (goal <= 1.0: false)")
	require.Contains(t, b.String(), "vmm exits per run: hlt 8 io 200; console 6000 bytes")

	rep = summarizeCloudInit([]string{"vmm", "qemu"}, res[3:], console)
	require.Zero(t, rep.Ratio)
	b.Reset()
	rep.write(&b)
	require.Contains(t, b.String(), "vmm   n/a (no passing run)")
	require.Contains(t, b.String(), "ratio vmm/qemu: n/a")
}
