package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// pciAddress matches a PCI function's name in sysfs (0000:00:05.0).
var pciAddress = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// ahciBlocks lists the block devices (sdX, srX) behind PCI functions bound
// to the ahci driver: libata puts them at
// <function>/ataN/hostM/targetM:0:0/M:0:0:0/block/<name>.
func (e *env) ahciBlocks() (map[string]string, error) {
	const drv = "sys/bus/pci/drivers/ahci"
	fns, err := fs.ReadDir(e.root, drv)
	if err != nil {
		return nil, fmt.Errorf("no ahci driver: %w", err)
	}
	out := map[string]string{} // block device -> PCI address
	for _, fn := range fns {
		if !pciAddress.MatchString(fn.Name()) {
			continue
		}
		dir := path.Join(drv, fn.Name())
		for _, ata := range e.subdirs(dir, "ata") {
			for _, host := range e.subdirs(path.Join(dir, ata), "host") {
				for _, target := range e.subdirs(path.Join(dir, ata, host), "target") {
					for _, lun := range e.subdirs(path.Join(dir, ata, host, target), "") {
						if !strings.Contains(lun, ":") {
							continue
						}
						for _, b := range e.subdirs(path.Join(dir, ata, host, target, lun, "block"), "") {
							out[b] = fn.Name()
						}
					}
				}
			}
		}
	}
	return out, nil
}

// subdirs lists the entries of dir whose names start with prefix.
func (e *env) subdirs(dir, prefix string) []string {
	ents, err := fs.ReadDir(e.root, dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), prefix) {
			out = append(out, ent.Name())
		}
	}
	return out
}

// ataSerial is a SATA disk's serial number: SCSI VPD page 0x80, which
// libata fills from IDENTIFY DEVICE.
func (e *env) ataSerial(name string) string {
	b, err := fs.ReadFile(e.root, path.Join("sys/block", name, "device/vpd_pg80"))
	if err != nil || len(b) < 4 {
		return ""
	}
	return strings.TrimSpace(string(b[4:]))
}

func (e *env) blockSize(name string) (int64, error) {
	s, err := e.readTrimmed(path.Join("sys/block", name, "size"))
	if err != nil {
		return 0, fmt.Errorf("size: %w", err)
	}
	sectors, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sectors <= 0 || sectors > 1<<40 {
		return 0, fmt.Errorf("size %q", s)
	}
	return sectors * 512, nil
}

// checkDiskAHCI finds each vmm.disk_ahci=SERIAL:SEED:NEWSEED disk through
// the ahci driver (matched by its serial), reads SEED's pattern from it,
// writes NEWSEED's and syncs (a FLUSH CACHE EXT); a SERIAL:SEED disk is
// read-only: it must hold SEED's pattern and refuse a write. The host
// checks the images afterwards.
func checkDiskAHCI(e *env) (bool, string) {
	specs := e.opts.params["vmm.disk_ahci"]
	if specs == "" {
		return false, "no vmm.disk_ahci=SERIAL:SEED[:NEWSEED] on the command line"
	}
	blocks, err := e.ahciBlocks()
	if err != nil {
		return false, err.Error()
	}
	var details []string
	for _, s := range strings.Split(specs, ",") {
		d, readOnly, err := parseRWOrRODiskSpec(s)
		if err != nil {
			return false, err.Error()
		}
		name, addr := "", ""
		for b, a := range blocks {
			if strings.HasPrefix(b, "sd") && e.ataSerial(b) == d.serial {
				name, addr = b, a
			}
		}
		if name == "" {
			return false, fmt.Sprintf("no SATA disk with serial %q behind the ahci driver (have %v)", d.serial, blocks)
		}
		size, err := e.blockSize(name)
		if err != nil {
			return false, fmt.Sprintf("/dev/%s: %v", name, err)
		}
		if readOnly {
			// ATA has no write-protect flag for a disk: the guest
			// learns it from the failed write, which libata's error
			// handling must fail at once rather than retry.
			before, err := e.ataFailedCommands()
			if err != nil {
				return false, fmt.Sprintf("dmesg: %v", err)
			}
			detail, err := e.refuseWrite(name, size, d.seed, false)
			if err != nil {
				return false, fmt.Sprintf("/dev/%s: %v", name, err)
			}
			after, err := e.ataFailedCommands()
			if err != nil {
				return false, fmt.Sprintf("dmesg: %v", err)
			}
			detail += fmt.Sprintf(", libata failed commands=%d", after-before)
			if after-before != 1 {
				return false, fmt.Sprintf("/dev/%s %s, want 1: the device's error must reach libata once, with no retries", name, detail)
			}
			if bad, err := e.ataLogReadFailures(); err != nil || len(bad) > 0 {
				return false, fmt.Sprintf("/dev/%s %s; libata could not read a log the device offers: %q (%v)", name, detail, bad, err)
			}
			details = append(details, fmt.Sprintf("/dev/%s serial=%s pci=%s %s", name, d.serial, addr, detail))
			continue
		}
		f, err := e.io.openBlock("/dev/"+name, true)
		if err != nil {
			return false, fmt.Sprintf("open /dev/%s: %v", name, err)
		}
		err = verifyDisk(f, size, d.seed)
		if err == nil {
			err = writeDisk(f, size, d.newSeed)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, fmt.Sprintf("/dev/%s: %v", name, err)
		}
		details = append(details, fmt.Sprintf("/dev/%s serial=%s pci=%s driver=ahci %dB", name, d.serial, addr, size))
	}
	return true, strings.Join(details, "; ")
}

// ataFailedCommands counts libata error handling's "failed command:"
// reports in dmesg: one per command that ended in a device error, each
// retry of it included.
func (e *env) ataFailedCommands() (int, error) {
	lines, err := e.dmesgMatches(": failed command: ")
	return len(lines), err
}

// ataLogReadFailures are libata's reports of a READ LOG (DMA) EXT that
// failed: at probe (the log directory, pages IDENTIFY's words lead it to)
// or in error handling (log 10h, the NCQ Command Error log).
func (e *env) ataLogReadFailures() ([]string, error) {
	var bad []string
	for _, s := range []string{"Read log ", "failed to read log page"} {
		lines, err := e.dmesgMatches(s)
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			if strings.Contains(l, "failed") {
				bad = append(bad, l)
			}
		}
	}
	return bad, nil
}

// cdromMount is where checkCDROM mounts the CD-ROM.
const cdromMount = "/mnt/cdrom"

// checkCDROM mounts the ISO 9660 CD-ROM behind the ahci driver (sr_mod,
// isofs) and checks the SHA-256 of its file named in vmm.cdrom=FILE:SHA256,
// which the host computed when it wrote the image.
func checkCDROM(e *env) (bool, string) {
	p := e.opts.params["vmm.cdrom"]
	name, want, ok := strings.Cut(p, ":")
	if !ok || name == "" || strings.ContainsAny(name, "/\x00") || len(want) != 2*sha256.Size {
		return false, fmt.Sprintf("vmm.cdrom=%q: want FILE:SHA256 (hex)", p)
	}
	blocks, err := e.ahciBlocks()
	if err != nil {
		return false, err.Error()
	}
	dev, addr := "", ""
	for b, a := range blocks {
		if strings.HasPrefix(b, "sr") {
			dev, addr = b, a
		}
	}
	if dev == "" {
		return false, fmt.Sprintf("no CD-ROM behind the ahci driver (have %v)", blocks)
	}
	unmount, err := e.io.mountReadOnly("/dev/"+dev, cdromMount, "iso9660")
	if err != nil {
		return false, err.Error()
	}
	data, err := fs.ReadFile(e.root, path.Join(strings.TrimPrefix(cdromMount, "/"), name))
	if uerr := unmount(); err == nil && uerr != nil {
		err = fmt.Errorf("unmount %s: %w", cdromMount, uerr)
	}
	if err != nil {
		return false, fmt.Sprintf("/dev/%s: %v", dev, err)
	}
	sum := sha256.Sum256(data)
	got := hex.EncodeToString(sum[:])
	detail := fmt.Sprintf("/dev/%s pci=%s driver=ahci iso9660 %s %dB sha256=%s", dev, addr, name, len(data), got)
	if got != strings.ToLower(want) {
		return false, detail + ", want " + want
	}
	return true, detail
}
