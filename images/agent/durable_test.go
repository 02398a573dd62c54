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

func TestCheckDurable(t *testing.T) {
	e, fio := diskEnv(t, "vmm.durable=vmm-rw:11,vmm-nv:12,vmm-sd:13")
	root := e.root.(fstest.MapFS)
	for _, n := range []string{"nvme0n1", "sdb"} {
		require.NoError(t, os.WriteFile(filepath.Join(fio.dir, n), make([]byte, 1<<20), 0o600))
		root["sys/block/"+n+"/size"] = &fstest.MapFile{Data: []byte("2048\n")}
	}
	root["sys/block/nvme0n1/device/serial"] = &fstest.MapFile{Data: []byte("vmm-nv\n")}

	var slept time.Duration
	ok, detail := durableCheck(e, time.Second, func(d time.Duration) { slept += d })
	assert.False(t, ok)
	assert.Contains(t, detail, `"vmm-sd"`, "the SATA disk is not behind ahci yet")
	assert.Equal(t, time.Second, slept, "waited for it")

	fn := "sys/bus/pci/drivers/ahci/0000:00:03.0/"
	root[fn+"ata1/host0/target0:0:0/0:0:0:0/block/sdb"] = &fstest.MapFile{Mode: os.ModeDir}
	root["sys/block/sdb/device/vpd_pg80"] = &fstest.MapFile{Data: append([]byte{0, 0x80, 0, 20}, "vmm-sd              "...)}
	ok, detail = checkDurable(e)
	require.True(t, ok, detail)
	for _, want := range []string{"/dev/vda serial=vmm-rw driver=virtio_blk", "/dev/nvme0n1 serial=vmm-nv driver=nvme", "/dev/sdb serial=vmm-sd driver=ahci"} {
		assert.Contains(t, detail, want)
	}
	for n, seed := range map[string]uint64{"vda": 11, "nvme0n1": 12, "sdb": 13} {
		got, err := os.ReadFile(filepath.Join(fio.dir, n))
		require.NoError(t, err)
		assert.Equal(t, int64(-1), pattern.Mismatch(got, seed, 0), n)
	}

	// A VMBus SCSI disk.
	const inst = "9a5a0e8e-5d3c-4b57-8f6e-766d6d000001"
	require.NoError(t, os.WriteFile(filepath.Join(fio.dir, "sdc"), make([]byte, 1<<20), 0o600))
	root["sys/block/sdc/size"] = &fstest.MapFile{Data: []byte("2048\n")}
	root["sys/block/sdc/device/vpd_pg80"] = &fstest.MapFile{Data: append([]byte{0, 0x80, 0, 6}, "vmm-vb"...)}
	root["sys/bus/vmbus/drivers/hv_storvsc/"+inst+"/host1/target1:0:0/1:0:0:0/block/sdc"] = &fstest.MapFile{Mode: os.ModeDir}
	e.opts.params["vmm.durable"] = "vmm-vb:14"
	ok, detail = checkDurable(e)
	require.True(t, ok, detail)
	assert.Contains(t, detail, "/dev/sdc serial=vmm-vb driver=hv_storvsc")

	e.opts.params["vmm.durable"] = "vmm-rw"
	ok, _ = checkDurable(e)
	assert.False(t, ok, "no seed")
}
