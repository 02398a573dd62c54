package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// findAnyDisk finds the disk with serial behind any of vmm's disk
// controllers: virtio-blk, NVMe, AHCI or the VMBus SCSI controller. It returns the block device, the
// driver and the size in bytes.
func (e *env) findAnyDisk(serial string) (name, driver string, size int64, err error) {
	if vd, err := e.virtioDisks(); err == nil {
		if n, ok := vd[serial]; ok {
			name, driver = n, "virtio_blk"
		}
	}
	if nv, err := e.nvmeDisks(); err == nil && name == "" {
		if n, ok := nv[serial]; ok {
			name, driver = n, "nvme"
		}
	}
	if ab, err := e.ahciBlocks(); err == nil && name == "" {
		for b := range ab {
			if strings.HasPrefix(b, "sd") && e.ataSerial(b) == serial {
				name, driver = b, "ahci"
			}
		}
	}
	if name == "" {
		for b := range e.storvscDisks() {
			if e.ataSerial(b) == serial {
				name, driver = b, "hv_storvsc"
			}
		}
	}
	if name == "" {
		return "", "", 0, fmt.Errorf("no disk with serial %q behind virtio_blk, nvme, ahci or hv_storvsc", serial)
	}
	size, err = e.blockSize(name)
	if err != nil {
		return "", "", 0, fmt.Errorf("/dev/%s: %w", name, err)
	}
	return name, driver, size, nil
}

// waitAnyDisk is findAnyDisk retried for up to wait: a VMBus SCSI disk
// is scanned in a kernel work item after its module's init.
func (e *env) waitAnyDisk(serial string, wait time.Duration, sleep func(time.Duration)) (name, driver string, size int64, err error) {
	const step = 200 * time.Millisecond
	name, driver, size, err = e.findAnyDisk(serial)
	for waited := time.Duration(0); err != nil && waited < wait; waited += step {
		sleep(step)
		name, driver, size, err = e.findAnyDisk(serial)
	}
	return name, driver, size, err
}

// checkDurable writes, for each vmm.durable=SERIAL:SEED, SEED's pattern
// over the whole disk with that serial and syncs it (a flush the device
// must complete only once the data is durable). Its pass line is the
// point after which the host may kill vmm: the data must survive that.
func checkDurable(e *env) (bool, string) { return durableCheck(e, vmbusWait, time.Sleep) }

// durableCheck waits up to wait for each disk to appear.
func durableCheck(e *env, wait time.Duration, sleep func(time.Duration)) (bool, string) {
	specs := e.opts.params["vmm.durable"]
	if specs == "" {
		return false, "no vmm.durable=SERIAL:SEED on the command line"
	}
	var details []string
	for _, s := range strings.Split(specs, ",") {
		serial, seedText, ok := strings.Cut(s, ":")
		seed, err := strconv.ParseUint(seedText, 0, 64)
		if !ok || serial == "" || err != nil {
			return false, fmt.Sprintf("vmm.durable entry %q: want SERIAL:SEED", s)
		}
		name, driver, size, err := e.waitAnyDisk(serial, wait, sleep)
		if err != nil {
			return false, err.Error()
		}
		f, err := e.io.openBlock("/dev/"+name, true)
		if err != nil {
			return false, fmt.Sprintf("open /dev/%s: %v", name, err)
		}
		err = writeDisk(f, size, seed)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, fmt.Sprintf("/dev/%s: %v", name, err)
		}
		details = append(details, fmt.Sprintf("/dev/%s serial=%s driver=%s %dB flushed", name, serial, driver, size))
	}
	return true, strings.Join(details, "; ")
}
