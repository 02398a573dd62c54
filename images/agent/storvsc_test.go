package main

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/pattern"
)

func TestCheckDiskVMBus(t *testing.T) {
	e, fio := diskEnv(t, "vmm.disk_vmbus=vmm-sc:4:5,vmm-sc-ro:6")
	for name, seed := range map[string]uint64{"sdb": 4, "sdc": 6} {
		b := make([]byte, 4<<20)
		pattern.Fill(b, seed, 0)
		require.NoError(t, os.WriteFile(filepath.Join(fio.dir, name), b, 0o600))
	}
	root := e.root.(fstest.MapFS)
	const inst = "9a5a0e8e-5d3c-4b57-8f6e-766d6d000001"
	root["sys/devices/system/cpu/online"] = &fstest.MapFile{Data: []byte("0-1\n")}
	root["sys/block/sdb/size"] = &fstest.MapFile{Data: []byte("8192\n")}
	root["sys/block/sdc/size"] = &fstest.MapFile{Data: []byte("8192\n")}
	root["sys/block/sdc/ro"] = &fstest.MapFile{Data: []byte("1\n")}
	root["sys/block/sdb/device/vpd_pg80"] = &fstest.MapFile{Data: append([]byte{0, 0x80, 0, 6}, "vmm-sc"...)}
	root["sys/block/sdc/device/vpd_pg80"] = &fstest.MapFile{Data: append([]byte{0, 0x80, 0, 9}, "vmm-sc-ro"...)}
	fio.readOnly["sdc"] = true
	var slept time.Duration
	sleep := func(d time.Duration) { slept += d }

	ok, detail := diskVMBusCheck(e, time.Second, sleep)
	assert.False(t, ok)
	assert.Contains(t, detail, "behind hv_storvsc")
	assert.Equal(t, time.Second, slept, "waited for the scan")

	drv := "sys/bus/vmbus/drivers/hv_storvsc/"
	root[drv+"bind"] = &fstest.MapFile{}
	root[drv+inst+"/host0/target0:0:0/0:0:0:0/block/sdb"] = &fstest.MapFile{Mode: os.ModeDir}
	root[drv+inst+"/host0/target0:0:0/0:0:0:1/block/sdc"] = &fstest.MapFile{Mode: os.ModeDir}
	root["sys/bus/vmbus/devices/"+inst+"/channels/14"] = &fstest.MapFile{Mode: os.ModeDir}
	ok, detail = diskVMBusCheck(e, time.Second, sleep)
	assert.False(t, ok)
	assert.Contains(t, detail, "1 channels for 2 CPUs")

	root["sys/bus/vmbus/devices/"+inst+"/channels/15"] = &fstest.MapFile{Mode: os.ModeDir}
	ok, detail = diskVMBusCheck(e, time.Second, sleep)
	require.True(t, ok, detail)
	assert.Contains(t, detail, "/dev/sdb serial=vmm-sc vmbus="+inst)
	assert.Contains(t, detail, "channels=[14 15]")
	assert.Contains(t, detail, "/dev/sdc read-only")
	got, err := os.ReadFile(filepath.Join(fio.dir, "sdb"))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), pattern.Mismatch(got, 5, 0), "second pattern written")

	// A read-only disk that Linux can write is a failure.
	root["sys/block/sdc/ro"] = &fstest.MapFile{Data: []byte("0\n")}
	pattern.Fill(got, 4, 0)
	require.NoError(t, os.WriteFile(filepath.Join(fio.dir, "sdb"), got, 0o600))
	ok, detail = diskVMBusCheck(e, time.Second, sleep)
	assert.False(t, ok)
	assert.Contains(t, detail, "not read-only")
}
