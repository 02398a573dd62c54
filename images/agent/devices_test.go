package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/pattern"
	"github.com/vmmdev/vmm/images/scenario"
)

// fakeIO backs /dev/vdX with files and the network with an in-process peer.
type fakeIO struct {
	dir      string
	readOnly map[string]bool
	links    map[string]string
	netAddr  netip.Prefix
	corrupt  bool // the peer flips a byte of the download
	mounted  string
	efiVars  map[string][]byte // nil: no efivarfs
	touched  int               // bytes touchAndFree was asked for
	settled  time.Duration     // how long settle was asked to wait
	slept    time.Duration     // what suspendToRAM reports
	sleepErr error
	wakes    []time.Duration    // the alarms suspendToRAM was asked for
	resumed  func()             // what suspendToRAM changes (the CPUs online)
	flap     func(holdMS int64) // the peer's answer to a link flap request
	// sysfs, if set, is the fake root that unbind removes a device's
	// driver links from.
	sysfs fstest.MapFS
}

type roFile struct{ *os.File }

func (roFile) WriteAt([]byte, int64) (int, error) { return 0, errors.New("EROFS") }

// mountReadOnly "mounts" only what the test put under the fake root's
// mnt/cdrom; it records the device.
func (f *fakeIO) mountReadOnly(dev, dir, fstype string) (func() error, error) {
	if fstype != "iso9660" || dir != cdromMount {
		return nil, fmt.Errorf("unexpected mount of %s (%s) on %s", dev, fstype, dir)
	}
	f.mounted = dev
	return func() error { f.mounted = ""; return nil }, nil
}

func (f *fakeIO) openBlock(path string, write bool) (blockFile, error) {
	name := strings.TrimPrefix(path, "/dev/")
	if write && f.readOnly[name] {
		return nil, errors.New("read-only file system")
	}
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	file, err := os.OpenFile(filepath.Join(f.dir, name), flag, 0)
	if err != nil {
		return nil, err
	}
	if !write {
		return roFile{file}, nil
	}
	return file, nil
}

type fakeDirect struct{ *os.File }

func (fakeDirect) buffer(n int) []byte { return make([]byte, n) }

func (f *fakeIO) openDirect(path string) (directFile, error) {
	file, err := f.openBlock(path, true)
	if err != nil {
		return nil, err
	}
	return fakeDirect{file.(*os.File)}, nil
}

func (f *fakeIO) symlink(target, link string) error {
	if f.links == nil {
		f.links = map[string]string{}
	}
	f.links[link] = target
	return nil
}

func (f *fakeIO) readlink(link string) (string, error) {
	t, ok := f.links[link]
	if !ok {
		return "", os.ErrNotExist
	}
	return t, nil
}

func (f *fakeIO) configureNet(_ string, addr netip.Prefix) error { f.netAddr = addr; return nil }

func (f *fakeIO) ping(context.Context, netip.Addr) (time.Duration, error) {
	return time.Millisecond, nil
}

// dial serves the outer peer's protocol on the other end of a pipe.
func (f *fakeIO) dial(context.Context, string) (net.Conn, error) {
	a, b := net.Pipe()
	go func() {
		defer b.Close()
		r := bufio.NewReader(b)
		var hdr [9]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := int64(binary.BigEndian.Uint64(hdr[1:]))
		if hdr[0] == 'L' {
			if f.flap != nil {
				f.flap(n)
			}
			io.WriteString(b, scenario.PeerOK)
			return
		}
		if hdr[0] == 'T' {
			_ = scenario.ReceiveTimed(r, b, n)
			return
		}
		if hdr[0] == 'R' {
			_ = scenario.SendTimed(r, b, n)
			return
		}
		if hdr[0] == 'U' {
			chk := pattern.NewChecker(scenario.UploadSeed)
			io.CopyN(chk, r, n)
			reply := scenario.PeerOK
			if _, bad := chk.Result(); bad >= 0 {
				reply = scenario.PeerBad
			}
			io.WriteString(b, reply)
			return
		}
		data, _ := io.ReadAll(pattern.NewReader(scenario.DownloadSeed, n))
		if f.corrupt {
			data[n/2] ^= 1
		}
		b.Write(data)
	}()
	return a, nil
}

func diskEnv(t *testing.T, cmdline string) (*env, *fakeIO) {
	t.Helper()
	dir := t.TempDir()
	img := func(name string, size int64, seed uint64) {
		b := make([]byte, size)
		pattern.Fill(b, seed, 0)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o600))
	}
	img("vda", 3<<20, 1)
	img("vdb", 1<<20, 3)
	root := fstest.MapFS{
		"sys/block/vda/serial":       {Data: []byte("vmm-rw\n")},
		"sys/block/vda/size":         {Data: []byte("6144\n")},
		"sys/block/vdb/serial":       {Data: []byte("vmm-ro\n")},
		"sys/block/vdb/size":         {Data: []byte("2048\n")},
		"sys/block/vdb/ro":           {Data: []byte("1\n")},
		"sys/block/sda/size":         {Data: []byte("1\n")},
		"sys/class/net/lo":           {Mode: os.ModeDir},
		"proc/net/snmp":              {Data: []byte("Ip: Forwarding\nIp: 1\nTcp: RtoAlgorithm RetransSegs InErrs\nTcp: 1 42 0\n")},
		"sys/class/net/eth0/address": {Data: []byte("52:54:00:00:00:01\n")},
	}
	opts, problems := parseCmdline(cmdline)
	require.Empty(t, problems)
	fio := &fakeIO{dir: dir, readOnly: map[string]bool{"vdb": true}}
	return &env{root: root, opts: opts, io: fio}, fio
}

func TestCheckDisk(t *testing.T) {
	e, fio := diskEnv(t, "vmm.disk=vmm-rw:1:2")
	ok, detail := checkDisk(e)
	require.True(t, ok, detail)
	assert.Contains(t, detail, "/dev/vda serial=vmm-rw 3145728B")
	b, err := os.ReadFile(filepath.Join(fio.dir, "vda"))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), pattern.Mismatch(b, 2, 0), "second pattern written")

	ok, detail = checkDisk(e) // now the image holds pattern 2, not 1
	assert.False(t, ok)
	assert.Contains(t, detail, "byte 0 differs")

	for _, bad := range []string{"", "vmm.disk=vmm-rw:1", "vmm.disk=nope:1:2", "vmm.disk=vmm-rw:x:2"} {
		e, _ := diskEnv(t, bad)
		ok, detail := checkDisk(e)
		assert.False(t, ok, bad)
		assert.NotEmpty(t, detail)
	}
}

func TestCheckDiskRO(t *testing.T) {
	e, _ := diskEnv(t, "vmm.disk_ro=vmm-ro:3")
	ok, detail := checkDiskRO(e)
	require.True(t, ok, detail)
	assert.Contains(t, detail, "write refused: read-only file system")

	e, fio := diskEnv(t, "vmm.disk_ro=vmm-ro:3")
	fio.readOnly = nil // a disk that takes writes fails the check
	ok, detail = checkDiskRO(e)
	assert.False(t, ok)
	assert.Contains(t, detail, "a write succeeded")

	e, _ = diskEnv(t, "vmm.disk_ro=vmm-ro:4")
	ok, _ = checkDiskRO(e)
	assert.False(t, ok, "wrong pattern")
}

func TestCheckDiskIDs(t *testing.T) {
	e, fio := diskEnv(t, "vmm.disk_ids=vmm-rw,vmm-ro")
	ok, detail := checkDiskIDs(e)
	require.True(t, ok, detail)
	assert.Equal(t, "virtio-vmm-ro->vdb virtio-vmm-rw->vda", detail)
	assert.Equal(t, "../../vda", fio.links["/dev/disk/by-id/virtio-vmm-rw"])

	e, _ = diskEnv(t, "vmm.disk_ids=vmm-rw,other")
	ok, detail = checkDiskIDs(e)
	assert.False(t, ok)
	assert.Contains(t, detail, "virtio-other")
}

func TestCheckNet(t *testing.T) {
	e, fio := diskEnv(t, "vmm.net=10.0.2.15/24,10.0.2.1:7777,3000000")
	ok, detail := checkNet(e)
	require.True(t, ok, detail)
	assert.Equal(t, "10.0.2.15/24", fio.netAddr.String())
	assert.Contains(t, detail, "eth0 mac=52:54:00:00:00:01")
	assert.Contains(t, detail, "tx=3000000B")
	assert.Contains(t, detail, "tcp_retrans=42")

	// vmm.net_mac: the interface with that address, waited for.
	em, _ := diskEnv(t, "vmm.net=10.0.2.15/24,10.0.2.1:7777,3000000 vmm.net_mac=52:54:00:00:00:01")
	ok, detail = checkNet(em)
	require.True(t, ok, detail)
	var slept time.Duration
	_, err := em.interfaceWithMAC("52:54:00:00:00:99", time.Second, func(d time.Duration) { slept += d })
	require.ErrorContains(t, err, "no interface with MAC 52:54:00:00:00:99")
	assert.Equal(t, time.Second, slept)

	fio.corrupt = true
	ok, detail = checkNet(e)
	assert.False(t, ok)
	assert.Contains(t, detail, "differs from the pattern")

	for _, bad := range []string{"", "vmm.net=10.0.2.15/24,10.0.3.1:7777,10", "vmm.net=10.0.2.15/24,10.0.2.1:7777,0", "vmm.net=x,y,z", "vmm.net=::1/64,[::2]:1,5"} {
		e, _ := diskEnv(t, bad)
		ok, _ := checkNet(e)
		assert.False(t, ok, bad)
	}
}

// TestCheckNetFlap: vmm.net_flap asks the peer for a link flap, passes once
// the kernel's counters show the carrier went down and came back, then
// moves the bytes again; a flap the interface never saw fails the check.
func TestCheckNetFlap(t *testing.T) {
	const cmd = "vmm.net=10.0.2.15/24,10.0.2.1:7777,3000 vmm.net_flap=1500"
	e, fio := diskEnv(t, cmd)
	root := e.root.(fstest.MapFS)
	set := func(down, up, carrier string) {
		root["sys/class/net/eth0/carrier_down_count"] = &fstest.MapFile{Data: []byte(down + "\n")}
		root["sys/class/net/eth0/carrier_up_count"] = &fstest.MapFile{Data: []byte(up + "\n")}
		root["sys/class/net/eth0/carrier"] = &fstest.MapFile{Data: []byte(carrier + "\n")}
	}
	set("0", "1", "1")
	var held int64
	fio.flap = func(ms int64) {
		held = ms
		set("1", "2", "1")
	}
	ok, detail := checkNet(e)
	require.True(t, ok, detail)
	assert.Equal(t, int64(1500), held)
	assert.Contains(t, detail, "flap=1500ms carrier_back<=0s then tx=3000B")

	// The carrier never went down: polled until the bound, then a failure.
	fio.flap = func(int64) {}
	var slept time.Duration
	_, err := linkFlap(e, netSpec{peer: netip.MustParseAddrPort("10.0.2.1:7777"), bytes: 10}, "eth0", "1500",
		func(d time.Duration) { slept += d })
	require.ErrorContains(t, err, "carrier down 0, up 0 times")
	assert.Equal(t, netTimeout, slept)

	// Down and up counted, carrier still off: not yet back.
	fio.flap = func(int64) { set("2", "3", "0") }
	_, err = linkFlap(e, netSpec{peer: netip.MustParseAddrPort("10.0.2.1:7777"), bytes: 10}, "eth0", "1500",
		func(time.Duration) {})
	require.ErrorContains(t, err, `carrier "0"`)

	for _, bad := range []string{"0", "x", "10001"} {
		_, err := linkFlap(e, netSpec{}, "eth0", bad, func(time.Duration) {})
		require.ErrorContains(t, err, "vmm.net_flap", bad)
	}
}

func TestEchoRequest(t *testing.T) {
	m := echoRequest(0x1234, 7)
	assert.Equal(t, uint16(0), icmpChecksum(m), "a message with its checksum sums to zero")
	reply := append([]byte(nil), m...)
	reply[0] = 0
	assert.True(t, isEchoReply(reply, 0x1234, 7))
	assert.False(t, isEchoReply(reply, 0x1234, 8))
	assert.False(t, isEchoReply(m, 0x1234, 7), "a request is not a reply")
	assert.False(t, isEchoReply(reply[:4], 0x1234, 7))
}

func TestParseCmdlineParams(t *testing.T) {
	o, problems := parseCmdline("vmm.disk=a:1:2 vmm.net=x other=1")
	assert.Empty(t, problems)
	assert.Equal(t, map[string]string{"vmm.disk": "a:1:2", "vmm.net": "x"}, o.params)
}

func TestCheckIOBench(t *testing.T) {
	e, fio := diskEnv(t, "vmm.iobench=vmm-rw:1 vmm.net=10.0.2.15/24,10.0.2.1:7777,100000")
	ok, detail := checkIOBench(e)
	require.True(t, ok, detail)
	assert.Regexp(t, `^dev=vda driver=virtio_blk seq_read=[0-9.]+MB/s seq_write=[0-9.]+MB/s randread_4k=[0-9]+iops tcp_tx=[0-9.]+MB/s tcp_rx=[0-9.]+MB/s tcp_retrans=42$`, detail)
	b, err := os.ReadFile(filepath.Join(fio.dir, "vda"))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), pattern.Mismatch(b, 1, 0), "the image keeps its pattern")

	// vmm.net_mac picks the interface by address (a NIC on VMBus).
	e, _ = diskEnv(t, "vmm.iobench=vmm-rw:1 vmm.net=10.0.2.15/24,10.0.2.1:7777,100000 vmm.net_mac=52:54:00:00:00:01")
	ok, detail = checkIOBench(e)
	require.True(t, ok, detail)
	assert.Contains(t, detail, "tcp_rx=")

	e, _ = diskEnv(t, "vmm.iobench=nope:1")
	var slept time.Duration
	ok, _ = ioBenchCheck(e, time.Second, func(d time.Duration) { slept += d })
	assert.False(t, ok)
	assert.Equal(t, time.Second, slept, "waited for a late disk")
}

// TestCheckIOBenchNVMeAHCI: iobench finds its disk by serial behind the
// nvme and ahci drivers too, and measures without vmm.net.
func TestCheckIOBenchNVMeAHCI(t *testing.T) {
	b := make([]byte, 1<<20)
	pattern.Fill(b, 4, 0)

	e, fio := diskEnv(t, "vmm.iobench=vmm-nv:4")
	require.NoError(t, os.WriteFile(filepath.Join(fio.dir, "nvme0n1"), b, 0o600))
	root := e.root.(fstest.MapFS)
	root["sys/block/nvme0n1/size"] = &fstest.MapFile{Data: []byte("2048\n")}
	root["sys/block/nvme0n1/device/serial"] = &fstest.MapFile{Data: []byte("vmm-nv              \n")}
	ok, detail := checkIOBench(e)
	require.True(t, ok, detail)
	assert.Regexp(t, `^dev=nvme0n1 driver=nvme seq_read=[0-9.]+MB/s seq_write=[0-9.]+MB/s randread_4k=[0-9]+iops$`, detail)
	got, err := os.ReadFile(filepath.Join(fio.dir, "nvme0n1"))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), pattern.Mismatch(got, 4, 0), "the image keeps its pattern")

	e, fio = diskEnv(t, "vmm.iobench=vmm-sd:4")
	require.NoError(t, os.WriteFile(filepath.Join(fio.dir, "sdb"), b, 0o600))
	root = e.root.(fstest.MapFS)
	root["sys/bus/pci/drivers/ahci/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sdb"] = &fstest.MapFile{Mode: os.ModeDir}
	root["sys/block/sdb/size"] = &fstest.MapFile{Data: []byte("2048\n")}
	root["sys/block/sdb/device/vpd_pg80"] = &fstest.MapFile{Data: append([]byte{0, 0x80, 0, 20}, "vmm-sd              "...)}
	ok, detail = checkIOBench(e)
	require.True(t, ok, detail)
	assert.Regexp(t, `^dev=sdb driver=ahci seq_read=[0-9.]+MB/s seq_write=[0-9.]+MB/s randread_4k=[0-9]+iops$`, detail)
}

func (f *fakeIO) onCPU(_ int, fn func() error) error { return fn() }

func (f *fakeIO) readEFIVar(name string) ([]byte, error) {
	if f.efiVars == nil {
		return nil, errors.New("mount efivarfs: no such device")
	}
	v, ok := f.efiVars[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return v, nil
}

func (f *fakeIO) writeEFIVar(name string, v []byte) error {
	if f.efiVars == nil {
		return errors.New("mount efivarfs: no such device")
	}
	f.efiVars[name] = bytes.Clone(v)
	return nil
}
func (f *fakeIO) touchAndFree(n int) error { f.touched += n; return nil }

func (f *fakeIO) unbind(driverDir, dev string) error {
	if _, ok := f.sysfs[driverDir+"/"+dev+"/uevent"]; !ok {
		return os.ErrNotExist
	}
	delete(f.sysfs, driverDir+"/"+dev+"/uevent")
	delete(f.sysfs, vmbusDevices+"/"+dev+"/driver/uevent")
	return nil
}

func (f *fakeIO) settle(d time.Duration) { f.settled += d }

func (f *fakeIO) suspendToRAM(wake time.Duration) (time.Duration, error) {
	f.wakes = append(f.wakes, wake)
	if f.resumed != nil {
		f.resumed()
	}
	return f.slept, f.sleepErr
}

func TestCheckDiskNVMe(t *testing.T) {
	e, fio := diskEnv(t, "vmm.disk_nvme=vmm-nv:4:5")
	b := make([]byte, 4<<20)
	pattern.Fill(b, 4, 0)
	require.NoError(t, os.WriteFile(filepath.Join(fio.dir, "nvme0n1"), b, 0o600))
	root := e.root.(fstest.MapFS)
	root["sys/block/nvme0n1/size"] = &fstest.MapFile{Data: []byte("8192\n")}
	root["sys/block/nvme0n1/device/serial"] = &fstest.MapFile{Data: []byte("vmm-nv   \n")}
	root["sys/block/nvme0n1/device/address"] = &fstest.MapFile{Data: []byte("0000:00:05.0\n")}
	root["sys/block/nvme0n1/mq/0"] = &fstest.MapFile{Mode: os.ModeDir}
	root["sys/block/nvme0n1/mq/1"] = &fstest.MapFile{Mode: os.ModeDir}
	root["sys/devices/system/cpu/online"] = &fstest.MapFile{Data: []byte("0-1\n")}
	root["proc/interrupts"] = &fstest.MapFile{Data: []byte("           CPU0       CPU1\n" +
		" 24:         10          0  PCI-MSIX-0000:00:05.0    0-edge      nvme0q0\n" +
		" 25:         30          0  PCI-MSIX-0000:00:05.0    1-edge      nvme0q1\n" +
		" 26:          0         12  PCI-MSIX-0000:00:05.0    2-edge      nvme0q2\n")}
	ok, detail := checkDiskNVMe(e)
	assert.False(t, ok, "not bound to the nvme driver")
	assert.Contains(t, detail, "nvme driver")

	root["sys/bus/pci/drivers/nvme/0000:00:05.0"] = &fstest.MapFile{Mode: os.ModeDir}
	ok, detail = checkDiskNVMe(e)
	require.True(t, ok, detail)
	assert.Contains(t, detail, "queues=2")
	got, err := os.ReadFile(filepath.Join(fio.dir, "nvme0n1"))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), pattern.Mismatch(got, 5, 0), "second pattern written")

	pattern.Fill(b, 4, 0)
	require.NoError(t, os.WriteFile(filepath.Join(fio.dir, "nvme0n1"), b, 0o600))
	root["sys/block/nvme0n1/mq/1"] = &fstest.MapFile{Data: nil}
	delete(root, "sys/block/nvme0n1/mq/1")
	ok, detail = checkDiskNVMe(e)
	assert.False(t, ok)
	assert.Contains(t, detail, "1 I/O queues for 2 CPUs")
}

func TestCheckDiskNVMeReadOnly(t *testing.T) {
	e, fio := diskEnv(t, "vmm.disk_nvme=vmm-nv-ro:3")
	b := make([]byte, 1<<20)
	pattern.Fill(b, 3, 0)
	require.NoError(t, os.WriteFile(filepath.Join(fio.dir, "nvme1n1"), b, 0o600))
	root := e.root.(fstest.MapFS)
	root["sys/block/nvme1n1/size"] = &fstest.MapFile{Data: []byte("2048\n")}
	root["sys/block/nvme1n1/device/serial"] = &fstest.MapFile{Data: []byte("vmm-nv-ro\n")}
	root["sys/block/nvme1n1/ro"] = &fstest.MapFile{Data: []byte("0\n")}
	root["sys/devices/system/cpu/online"] = &fstest.MapFile{Data: []byte("0\n")}
	fio.readOnly = map[string]bool{"nvme1n1": true}

	ok, detail := checkDiskNVMe(e)
	assert.False(t, ok, "the guest does not see it read-only")
	assert.Contains(t, detail, "not read-only in the guest (ro=0)")

	root["sys/block/nvme1n1/ro"] = &fstest.MapFile{Data: []byte("1\n")}
	ok, detail = checkDiskNVMe(e)
	require.True(t, ok, detail)
	assert.Contains(t, detail, "/dev/nvme1n1 serial=vmm-nv-ro ro=1 write refused")
	got, err := os.ReadFile(filepath.Join(fio.dir, "nvme1n1"))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), pattern.Mismatch(got, 3, 0), "unchanged")

	fio.readOnly = nil
	ok, detail = checkDiskNVMe(e)
	assert.False(t, ok)
	assert.Contains(t, detail, "a write succeeded on a read-only disk")
}
