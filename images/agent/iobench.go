package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/pattern"
)

// ioBenchRandTime bounds the random-read phase.
const ioBenchRandTime = 3 * time.Second

// directFile is a block device opened with O_DIRECT, for measuring the
// device rather than the guest's page cache.
type directFile interface {
	blockFile
	// buffer returns an n-byte buffer aligned for O_DIRECT.
	buffer(n int) []byte
}

// checkIOBench measures what `make bench` compares with QEMU: sequential
// read and write MB/s and 4 KiB random-read IOPS on the disk with serial
// vmm.iobench=SERIAL:SEED behind virtio_blk, nvme, ahci or hv_storvsc (findAnyDisk;
// O_DIRECT, queue depth 1; the write puts the same pattern back, so the
// image stays verifiable), then TCP throughput each way over vmm.net when
// given (timedUpload, timedDownload: the network, not the pattern
// generators), on the interface with vmm.net_mac's address if given. The
// detail starts with dev= and driver=, then the figures as key=value.
func checkIOBench(e *env) (bool, string) { return ioBenchCheck(e, vmbusWait, time.Sleep) }

// ioBenchCheck waits up to wait for the disk (waitAnyDisk).
func ioBenchCheck(e *env, wait time.Duration, sleep func(time.Duration)) (bool, string) {
	spec, err := parseDiskSpec(e.opts.params["vmm.iobench"], false)
	if err != nil {
		return false, err.Error()
	}
	name, driver, size, err := e.waitAnyDisk(spec.serial, wait, sleep)
	if err != nil {
		return false, err.Error()
	}
	f, err := e.io.openDirect("/dev/" + name)
	if err != nil {
		return false, fmt.Sprintf("open /dev/%s O_DIRECT: %v", name, err)
	}
	defer f.Close()
	figures := []string{"dev=" + name, "driver=" + driver}

	buf := f.buffer(ioChunk)
	start := time.Now()
	for off := int64(0); off < size; off += ioChunk {
		b := buf[:min(ioChunk, size-off)]
		if _, err := f.ReadAt(b, off); err != nil {
			return false, fmt.Sprintf("sequential read at %d: %v", off, err)
		}
	}
	figures = append(figures, "seq_read="+mbps(size, time.Since(start)))

	// The pattern is computed outside the timed writes.
	image := f.buffer(int(size))
	pattern.Fill(image, spec.seed, 0)
	start = time.Now()
	for off := int64(0); off < size; off += ioChunk {
		if _, err := f.WriteAt(image[off:min(off+ioChunk, size)], off); err != nil {
			return false, fmt.Sprintf("sequential write at %d: %v", off, err)
		}
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Sprintf("sync: %v", err)
	}
	figures = append(figures, "seq_write="+mbps(size, time.Since(start)))

	small := f.buffer(4096)
	blocks := uint64(size / 4096)
	x := uint64(0x9e3779b97f4a7c15)
	ops := 0
	start = time.Now()
	for time.Since(start) < ioBenchRandTime {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		if _, err := f.ReadAt(small, int64(x%blocks)*4096); err != nil {
			return false, fmt.Sprintf("random read: %v", err)
		}
		ops++
	}
	figures = append(figures, fmt.Sprintf("randread_4k=%.0fiops", float64(ops)/time.Since(start).Seconds()))

	if s := e.opts.params["vmm.net"]; s != "" {
		ns, err := parseNetSpec(s)
		if err != nil {
			return false, err.Error()
		}
		var ifname string
		if mac := e.opts.params["vmm.net_mac"]; mac != "" {
			ifname, err = e.interfaceWithMAC(mac, macWait, sleep)
		} else {
			ifname, err = e.netInterface()
		}
		if err != nil {
			return false, err.Error()
		}
		if err := e.io.configureNet(ifname, ns.addr); err != nil {
			return false, fmt.Sprintf("configure %s: %v", ifname, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
		defer cancel()
		if _, err := e.io.ping(ctx, ns.peer.Addr()); err != nil {
			return false, fmt.Sprintf("ping %s: %v", ns.peer.Addr(), err)
		}
		d, err := timedUpload(ctx, e, ns)
		if err != nil {
			return false, fmt.Sprintf("upload: %v", err)
		}
		figures = append(figures, "tcp_tx="+mbps(ns.bytes, d))
		if d, err = timedDownload(ctx, e, ns); err != nil {
			return false, fmt.Sprintf("download: %v", err)
		}
		figures = append(figures, "tcp_rx="+mbps(ns.bytes, d), "tcp_retrans="+e.tcpStat("RetransSegs"))
	}
	return true, strings.Join(figures, " ")
}
