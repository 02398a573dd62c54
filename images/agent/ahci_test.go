package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/pattern"
)

func TestCheckDiskAHCIAndCDROM(t *testing.T) {
	data := make([]byte, 10000)
	pattern.Fill(data, 9, 0)
	sum := sha256.Sum256(data)
	e, fio := diskEnv(t, "vmm.disk_ahci=vmm-sd:6:7 vmm.cdrom=data.bin:"+hex.EncodeToString(sum[:]))
	b := make([]byte, 1<<20)
	pattern.Fill(b, 6, 0)
	require.NoError(t, os.WriteFile(filepath.Join(fio.dir, "sdb"), b, 0o600))
	root := e.root.(fstest.MapFS)
	root["mnt/cdrom/data.bin"] = &fstest.MapFile{Data: data}

	ok, detail := checkDiskAHCI(e)
	assert.False(t, ok)
	assert.Contains(t, detail, "ahci driver")

	fn := "sys/bus/pci/drivers/ahci/0000:00:03.0/"
	root[fn+"ata1/host0/target0:0:0/0:0:0:0/block/sdb"] = &fstest.MapFile{Mode: os.ModeDir}
	root[fn+"ata2/host1/target1:0:0/1:0:0:0/block/sr0"] = &fstest.MapFile{Mode: os.ModeDir}
	root["sys/block/sdb/size"] = &fstest.MapFile{Data: []byte("2048\n")}
	root["sys/block/sr0/size"] = &fstest.MapFile{Data: []byte("2048\n")}
	root["sys/block/sdb/device/vpd_pg80"] = &fstest.MapFile{Data: append([]byte{0, 0x80, 0, 20}, "vmm-sd              "...)}

	ok, detail = checkDiskAHCI(e)
	require.True(t, ok, detail)
	assert.Contains(t, detail, "/dev/sdb serial=vmm-sd pci=0000:00:03.0")
	got, err := os.ReadFile(filepath.Join(fio.dir, "sdb"))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), pattern.Mismatch(got, 7, 0), "rewritten with the new pattern")

	ok, detail = checkCDROM(e)
	require.True(t, ok, detail)
	assert.Contains(t, detail, "/dev/sr0")
	assert.Contains(t, detail, "sha256="+hex.EncodeToString(sum[:]))
	assert.Empty(t, fio.mounted, "unmounted after the check")

	root["mnt/cdrom/data.bin"] = &fstest.MapFile{Data: data[1:]}
	ok, _ = checkCDROM(e)
	assert.False(t, ok, "wrong content")
	e.opts.params["vmm.cdrom"] = "10"
	ok, _ = checkCDROM(e)
	assert.False(t, ok, "not FILE:SHA256")
}

func TestCheckDiskAHCIReadOnly(t *testing.T) {
	e, fio := diskEnv(t, "vmm.disk_ahci=vmm-sd-ro:3")
	// Each read of the kernel log finds `per` more failed commands: what
	// the refused write made libata report.
	var log []string
	per := 1
	e.kernelLog = func() ([]string, error) {
		out := slices.Clone(log)
		for range per {
			log = append(log, "ata3.00: failed command: WRITE FPDMA QUEUED")
		}
		return out, nil
	}
	b := make([]byte, 1<<20)
	pattern.Fill(b, 3, 0)
	require.NoError(t, os.WriteFile(filepath.Join(fio.dir, "sdc"), b, 0o600))
	root := e.root.(fstest.MapFS)
	root["sys/bus/pci/drivers/ahci/0000:00:03.0/ata3/host2/target2:0:0/2:0:0:0/block/sdc"] = &fstest.MapFile{Mode: os.ModeDir}
	root["sys/block/sdc/size"] = &fstest.MapFile{Data: []byte("2048\n")}
	root["sys/block/sdc/ro"] = &fstest.MapFile{Data: []byte("0\n")}
	root["sys/block/sdc/device/vpd_pg80"] = &fstest.MapFile{Data: append([]byte{0, 0x80, 0, 20}, "vmm-sd-ro           "...)}

	ok, detail := checkDiskAHCI(e)
	assert.False(t, ok, "the write went through")
	assert.Contains(t, detail, "a write succeeded on a read-only disk")

	fio.readOnly = map[string]bool{"sdc": true}
	ok, detail = checkDiskAHCI(e)
	require.True(t, ok, detail)
	assert.Contains(t, detail, "/dev/sdc serial=vmm-sd-ro pci=0000:00:03.0 ro=0 write refused: read-only file system, libata failed commands=1")

	per = 6
	ok, detail = checkDiskAHCI(e)
	assert.False(t, ok, "retried")
	assert.Contains(t, detail, "libata failed commands=6, want 1")
	per = 0
	ok, detail = checkDiskAHCI(e)
	assert.False(t, ok, "the error never reached libata")
	assert.Contains(t, detail, "libata failed commands=0, want 1")
	per = 1
	log = append(log, "ata3.00: Read log 0x10 page 0x00 failed, Emask 0x1")
	ok, detail = checkDiskAHCI(e)
	assert.False(t, ok, "a log read failed")
	assert.Contains(t, detail, `libata could not read a log the device offers: ["ata3.00: Read log 0x10 page 0x00 failed, Emask 0x1"]`)
	log = nil

	pattern.Fill(b, 4, 0)
	require.NoError(t, os.WriteFile(filepath.Join(fio.dir, "sdc"), b, 0o600))
	ok, detail = checkDiskAHCI(e)
	assert.False(t, ok, "wrong pattern")
	assert.Contains(t, detail, "differs from pattern")

	e.opts.params["vmm.disk_ahci"] = "vmm-sd-ro"
	ok, detail = checkDiskAHCI(e)
	assert.False(t, ok)
	assert.Contains(t, detail, "SERIAL:SEED:NEWSEED or, read-only, SERIAL:SEED")
}
