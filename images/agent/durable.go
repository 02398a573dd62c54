package main

import (
	"fmt"
	"strconv"
	"strings"
)

// findAnyDisk finds the disk with serial behind any of vmm's disk
// controllers: virtio-blk, NVMe or AHCI. It returns the block device, the
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
		return "", "", 0, fmt.Errorf("no disk with serial %q behind virtio_blk, nvme or ahci", serial)
	}
	size, err = e.blockSize(name)
	if err != nil {
		return "", "", 0, fmt.Errorf("/dev/%s: %w", name, err)
	}
	return name, driver, size, nil
}

// checkDurable writes, for each vmm.durable=SERIAL:SEED, SEED's pattern
// over the whole disk with that serial and syncs it (a flush the device
// must complete only once the data is durable). Its pass line is the
// point after which the host may kill vmm: the data must survive that.
func checkDurable(e *env) (bool, string) {
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
		name, driver, size, err := e.findAnyDisk(serial)
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
