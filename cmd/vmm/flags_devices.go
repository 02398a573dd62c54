package main

import (
	"errors"
	"flag"
	"strings"

	"github.com/vmmdev/vmm/vmm"
)

// deviceFlags are the repeatable --disk and --net flags of `vmm run`.
type deviceFlags struct {
	disks     diskList
	nics      nicList
	cdroms    pathList
	testdev   bool
	snapshot  bool
	cloudInit string
}

func registerDeviceFlags(fs *flag.FlagSet) *deviceFlags {
	d := &deviceFlags{}
	fs.Var(&d.disks, "disk", "disk `PATH[,readonly][,snapshot][,format=raw|qcow2][,serial=ID][,if=virtio|nvme|ahci|vmbus]` "+
		"(raw or qcow2, read from the header unless format= is given; default virtio-blk; vmbus: a LUN of the Hyper-V "+
		"synthetic SCSI controller, needs --vmbus); snapshot sends writes to a "+
		"throw-away overlay and never changes the image; repeat for several")
	fs.BoolVar(&d.snapshot, "snapshot", false, "snapshot mode for every --disk: images are opened read-only (shared lock) and "+
		"the guest's writes go to private overlays deleted when vmm ends")
	fs.StringVar(&d.cloudInit, "cloud-init", "", "cloud-init NoCloud `DIR` (user-data, meta-data, optional network-config "+
		"and vendor-data): attached as a read-only virtio-blk seed labelled cidata; a meta-data without instance-id gets a new one per run")
	fs.Var(&d.cdroms, "cdrom", "ISO image `PATH` on a read-only ATAPI drive of the AHCI controller; repeat for several")
	fs.Var(&d.nics, "net", "NIC on a host tap, virtio-net or (if=vmbus, with --vmbus) Hyper-V's synthetic NIC: `tap=NAME[,mac=MAC][,if=virtio|vmbus]`; repeat for several")
	fs.BoolVar(&d.testdev, "testdev", false, "add QEMU's test devices for test suites written against QEMU: pc-testdev, pci-testdev, "+
		"and hyperv-testdev with --hyperv synic")
	return d
}

// apply copies the parsed devices into cfg.
func (d *deviceFlags) apply(cfg *vmm.Config) {
	cfg.Disks = append(cfg.Disks, d.disks...)
	if d.snapshot {
		for i := range cfg.Disks {
			cfg.Disks[i].Snapshot = true
		}
	}
	cfg.CloudInit = d.cloudInit
	cfg.NICs = append(cfg.NICs, d.nics...)
	cfg.CDROMs = append(cfg.CDROMs, d.cdroms...)
	cfg.Testdev = d.testdev
}

// pathList is a repeatable flag of file names.
type pathList []string

func (l *pathList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, " ")
}

func (l *pathList) Set(v string) error {
	if v == "" {
		return errors.New("empty path")
	}
	*l = append(*l, v)
	return nil
}

type diskList []vmm.Disk

func (l *diskList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, d := range *l {
		s[i] = d.Path
	}
	return strings.Join(s, " ")
}

func (l *diskList) Set(v string) error {
	d, err := vmm.ParseDisk(v)
	if err != nil {
		return err
	}
	*l = append(*l, d)
	return nil
}

type nicList []vmm.NIC

func (l *nicList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, n := range *l {
		s[i] = "tap=" + n.Tap
	}
	return strings.Join(s, " ")
}

func (l *nicList) Set(v string) error {
	n, err := vmm.ParseNIC(v)
	if err != nil {
		return err
	}
	*l = append(*l, n)
	return nil
}
