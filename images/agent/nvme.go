package main

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// nvmeNamespace matches the block device of an NVMe namespace (nvme0n1).
var nvmeNamespace = regexp.MustCompile(`^nvme([0-9]+)n[0-9]+$`)

// nvmeDisks maps controller serials to namespace block devices from sysfs:
// /sys/block/nvmeXnY/device is the controller, whose serial attribute is
// what Identify Controller reported.
func (e *env) nvmeDisks() (map[string]string, error) {
	ents, err := fs.ReadDir(e.root, "sys/block")
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	out := map[string]string{}
	for _, ent := range ents {
		name := ent.Name()
		if !nvmeNamespace.MatchString(name) {
			continue
		}
		serial, err := e.readTrimmed(path.Join("sys/block", name, "device/serial"))
		if err != nil || serial == "" {
			continue
		}
		out[serial] = name
	}
	return out, nil
}

// checkDiskNVMe finds each vmm.disk_nvme=SERIAL:SEED:NEWSEED disk through
// the nvme driver, checks that it has one I/O queue per online CPU, and on
// every CPU in turn reads its share of the disk (it must hold SEED's
// pattern) and writes NEWSEED's pattern there and syncs: blk-mq submits
// from the CPU the caller runs on, so each CPU's queue carries I/O, and
// each queue's interrupt (nvme0qN in /proc/interrupts) must have fired.
// A SERIAL:SEED disk is read-only: the guest must mark it so (the
// namespace's write-protect attribute), and it must hold SEED's pattern
// and refuse a write. The host checks the images afterwards.
func checkDiskNVMe(e *env) (bool, string) {
	specs := e.opts.params["vmm.disk_nvme"]
	if specs == "" {
		return false, "no vmm.disk_nvme=SERIAL:SEED[:NEWSEED] on the command line"
	}
	cpus, err := e.onlineCPUs()
	if err != nil {
		return false, err.Error()
	}
	disks, err := e.nvmeDisks()
	if err != nil {
		return false, err.Error()
	}
	var details []string
	for _, s := range strings.Split(specs, ",") {
		d, readOnly, err := parseRWOrRODiskSpec(s)
		if err != nil {
			return false, err.Error()
		}
		name, ok := disks[d.serial]
		if !ok {
			return false, fmt.Sprintf("no NVMe namespace with controller serial %q (have %v)", d.serial, disks)
		}
		if readOnly {
			size, err := e.blockSize(name)
			if err == nil {
				var detail string
				if detail, err = e.refuseWrite(name, size, d.seed, true); err == nil {
					details = append(details, fmt.Sprintf("/dev/%s serial=%s %s", name, d.serial, detail))
					continue
				}
			}
			return false, fmt.Sprintf("/dev/%s: %v", name, err)
		}
		detail, err := e.exerciseNVMe(name, d, cpus)
		if err != nil {
			return false, fmt.Sprintf("/dev/%s: %v", name, err)
		}
		details = append(details, detail)
	}
	return true, strings.Join(details, "; ")
}

func (e *env) exerciseNVMe(name string, d diskSpec, cpus int) (string, error) {
	ctrl := "nvme" + nvmeNamespace.FindStringSubmatch(name)[1]
	addr, err := e.readTrimmed(path.Join("sys/block", name, "device/address"))
	if err != nil {
		return "", fmt.Errorf("controller PCI address: %w", err)
	}
	if _, err := fs.Stat(e.root, path.Join("sys/bus/pci/drivers/nvme", addr)); err != nil {
		return "", fmt.Errorf("PCI function %s is not bound to the nvme driver: %w", addr, err)
	}
	hw, err := fs.ReadDir(e.root, path.Join("sys/block", name, "mq"))
	if err != nil {
		return "", fmt.Errorf("blk-mq queues: %w", err)
	}
	if len(hw) != cpus {
		return "", fmt.Errorf("%d I/O queues for %d CPUs", len(hw), cpus)
	}
	s, err := e.readTrimmed(path.Join("sys/block", name, "size"))
	if err != nil {
		return "", fmt.Errorf("size: %w", err)
	}
	sectors, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sectors <= 0 || sectors > 1<<40 {
		return "", fmt.Errorf("size %q", s)
	}
	size := sectors * 512
	share := (size / int64(cpus)) &^ (ioChunk - 1)
	if share == 0 {
		return "", fmt.Errorf("%d bytes are too few to share among %d CPUs", size, cpus)
	}
	for cpu := range cpus {
		lo, hi := int64(cpu)*share, int64(cpu+1)*share
		if cpu == cpus-1 {
			hi = size
		}
		err := e.io.onCPU(cpu, func() error {
			f, err := e.io.openBlock("/dev/"+name, true)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := verifyRange(f, lo, hi, d.seed); err != nil {
				return err
			}
			return writeRange(f, lo, hi, d.newSeed)
		})
		if err != nil {
			return "", fmt.Errorf("CPU %d: %w", cpu, err)
		}
	}
	irqs, err := e.queueInterrupts(ctrl)
	if err != nil {
		return "", err
	}
	for q := 1; q <= cpus; q++ {
		if irqs[q] == 0 {
			return "", fmt.Errorf("queue %d raised no interrupt (per queue: %v)", q, irqs)
		}
	}
	return fmt.Sprintf("/dev/%s serial=%s pci=%s driver=nvme %dB queues=%d interrupts=%v",
		name, d.serial, addr, size, len(hw), irqs), nil
}

// queueInterrupts sums, per queue of controller ctrl, the interrupts
// /proc/interrupts counts for its "ctrlqN" vectors.
func (e *env) queueInterrupts(ctrl string) (map[int]uint64, error) {
	b, err := fs.ReadFile(e.root, "proc/interrupts")
	if err != nil {
		return nil, fmt.Errorf("interrupts: %w", err)
	}
	out := map[int]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[len(f)-1], ctrl+"q") {
			continue
		}
		q, err := strconv.Atoi(strings.TrimPrefix(f[len(f)-1], ctrl+"q"))
		if err != nil {
			continue
		}
		for _, c := range f[1:] {
			n, err := strconv.ParseUint(c, 10, 64)
			if err != nil {
				break
			}
			out[q] += n
		}
	}
	return out, nil
}

// onlineCPUs counts /sys/devices/system/cpu/online (at least one).
func (e *env) onlineCPUs() (int, error) {
	list, err := e.readTrimmed("sys/devices/system/cpu/online")
	if err != nil {
		return 0, fmt.Errorf("online CPUs: %w", err)
	}
	n, err := countCPUList(list)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("online CPUs %q: %v", list, err)
	}
	return n, nil
}
