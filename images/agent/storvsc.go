package main

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// Synthetic SCSI check (issue 14): disks of vmm's storvsc controller on
// VMBus, driven by Linux's hv_storvsc and sd_mod.

const storvscDriver = "sys/bus/vmbus/drivers/hv_storvsc"

// storvscDisks maps the block devices (sdX) behind VMBus devices bound to
// hv_storvsc to their device's instance: the SCSI host sits at
// <instance>/hostN/targetN:0:T/N:0:T:L/block/<name>.
func (e *env) storvscDisks() map[string]string {
	out := map[string]string{}
	for _, inst := range e.subdirs(storvscDriver, "") {
		if strings.Count(inst, "-") != 4 {
			continue // bind, unbind, uevent, module, ...
		}
		dir := path.Join(storvscDriver, inst)
		for _, host := range e.subdirs(dir, "host") {
			for _, target := range e.subdirs(path.Join(dir, host), "target") {
				for _, lun := range e.subdirs(path.Join(dir, host, target), "") {
					if !strings.Contains(lun, ":") {
						continue
					}
					for _, b := range e.subdirs(path.Join(dir, host, target, lun, "block"), "sd") {
						out[b] = inst
					}
				}
			}
		}
	}
	return out
}

// vmbusChannels lists the channels (relids) of VMBus device inst, primary
// and sub-channels.
func (e *env) vmbusChannels(inst string) []string {
	return e.subdirs(path.Join("sys/bus/vmbus/devices", inst, "channels"), "")
}

func checkDiskVMBus(e *env) (bool, string) { return diskVMBusCheck(e, vmbusWait, time.Sleep) }

// diskVMBusCheck finds each vmm.disk_vmbus=SERIAL:SEED:NEWSEED (or
// SERIAL:SEED for a read-only disk) disk behind hv_storvsc by its unit
// serial number (VPD page 0x80), waiting up to wait for the SCSI scan and
// for the controller to have one channel per online CPU (sub-channels).
// A read-write disk is read and rewritten from every CPU in turn, as the
// NVMe check does, and synced (SYNCHRONIZE CACHE); a read-only one must
// hold SEED's pattern and be read-only in the guest (the MODE SENSE WP
// bit). The host checks the images afterwards.
func diskVMBusCheck(e *env, wait time.Duration, sleep func(time.Duration)) (bool, string) {
	specs := e.opts.params["vmm.disk_vmbus"]
	if specs == "" {
		return false, "no vmm.disk_vmbus=SERIAL:SEED[:NEWSEED] on the command line"
	}
	cpus, err := e.onlineCPUs()
	if err != nil {
		return false, err.Error()
	}
	type found struct {
		spec     diskSpec
		readOnly bool
		name     string
		inst     string
	}
	var disks []found
	for _, s := range strings.Split(specs, ",") {
		d, err := parseDiskSpec(s, true)
		ro := false
		if err != nil {
			if d, err = parseDiskSpec(s, false); err != nil {
				return false, err.Error()
			}
			ro = true
		}
		disks = append(disks, found{spec: d, readOnly: ro})
	}
	// Discovery: the scan and the sub-channel opens run in kernel work
	// items after the module's init returns.
	const step = 200 * time.Millisecond
	var problem string
	for waited := time.Duration(0); ; waited += step {
		problem = ""
		blocks := e.storvscDisks()
		for i := range disks {
			disks[i].name, disks[i].inst = "", ""
			for b, inst := range blocks {
				if e.ataSerial(b) == disks[i].spec.serial {
					disks[i].name, disks[i].inst = b, inst
				}
			}
			if disks[i].name == "" {
				problem = fmt.Sprintf("no SCSI disk with serial %q behind hv_storvsc (have %v)", disks[i].spec.serial, blocks)
				break
			}
			if n := len(e.vmbusChannels(disks[i].inst)); n != cpus {
				problem = fmt.Sprintf("controller %s has %d channels for %d CPUs", disks[i].inst, n, cpus)
				break
			}
		}
		if problem == "" || waited >= wait {
			break
		}
		sleep(step)
	}
	if problem != "" {
		return false, problem
	}
	var details []string
	for _, d := range disks {
		size, err := e.blockSize(d.name)
		if err != nil {
			return false, fmt.Sprintf("/dev/%s: %v", d.name, err)
		}
		if d.readOnly {
			detail, err := e.checkReadOnlySCSI(d.name, size, d.spec.seed)
			if err != nil {
				return false, fmt.Sprintf("/dev/%s: %v", d.name, err)
			}
			details = append(details, detail)
			continue
		}
		share := (size / int64(cpus)) &^ (ioChunk - 1)
		if share == 0 {
			return false, fmt.Sprintf("/dev/%s: %d bytes are too few to share among %d CPUs", d.name, size, cpus)
		}
		for cpu := range cpus {
			lo, hi := int64(cpu)*share, int64(cpu+1)*share
			if cpu == cpus-1 {
				hi = size
			}
			err := e.io.onCPU(cpu, func() error {
				f, err := e.io.openBlock("/dev/"+d.name, true)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := verifyRange(f, lo, hi, d.spec.seed); err != nil {
					return err
				}
				return writeRange(f, lo, hi, d.spec.newSeed)
			})
			if err != nil {
				return false, fmt.Sprintf("/dev/%s: CPU %d: %v", d.name, cpu, err)
			}
		}
		chans := e.vmbusChannels(d.inst)
		sort.Strings(chans)
		details = append(details, fmt.Sprintf("/dev/%s serial=%s vmbus=%s driver=hv_storvsc %dB channels=%v",
			d.name, d.spec.serial, d.inst, size, chans))
	}
	return true, strings.Join(details, "; ")
}

// checkReadOnlySCSI verifies a read-only disk's pattern and that Linux
// took it as write protected.
func (e *env) checkReadOnlySCSI(name string, size int64, seed uint64) (string, error) {
	ro, err := e.readTrimmed(path.Join("sys/block", name, "ro"))
	if err != nil {
		return "", err
	}
	if ro != "1" {
		return "", fmt.Errorf("not read-only in the guest (ro=%s)", ro)
	}
	f, err := e.io.openBlock("/dev/"+name, false)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := verifyDisk(f, size, seed); err != nil {
		return "", err
	}
	return fmt.Sprintf("/dev/%s read-only %dB", name, size), nil
}
