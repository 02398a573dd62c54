package main

import (
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/vmm"
)

func TestDeviceFlags(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	d := registerDeviceFlags(fs)
	require.NoError(t, fs.Parse([]string{"--disk", "a.img,serial=s1", "--disk", "b.img,readonly",
		"--net", "tap=vmmtap0,mac=52:54:00:00:00:01"}))
	var cfg vmm.Config
	d.apply(&cfg)
	require.Len(t, cfg.Disks, 2)
	require.Equal(t, vmm.Disk{Path: "a.img", Serial: "s1"}, cfg.Disks[0])
	require.True(t, cfg.Disks[1].ReadOnly)
	require.Len(t, cfg.NICs, 1)
	require.Equal(t, "vmmtap0", cfg.NICs[0].Tap)
	require.Equal(t, "a.img b.img", d.disks.String())
	require.Equal(t, "tap=vmmtap0", d.nics.String())
	require.False(t, cfg.Disks[0].Snapshot)
	require.Empty(t, cfg.CloudInit)

	// --snapshot puts every disk in snapshot mode; --cloud-init names the seed directory.
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	d = registerDeviceFlags(fs)
	require.NoError(t, fs.Parse([]string{"--disk", "a.qcow2,format=qcow2", "--snapshot", "--disk", "b.img,if=nvme",
		"--cloud-init", "seed"}))
	cfg = vmm.Config{}
	d.apply(&cfg)
	require.Equal(t, []vmm.Disk{{Path: "a.qcow2", Format: "qcow2", Snapshot: true},
		{Path: "b.img", Interface: vmm.DiskNVMe, Snapshot: true}}, cfg.Disks)
	require.Equal(t, "seed", cfg.CloudInit)

	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	registerDeviceFlags(fs)
	require.Error(t, fs.Parse([]string{"--disk", "a.img,bogus"}))
	require.Error(t, fs.Parse([]string{"--net", "tap="}))
}
