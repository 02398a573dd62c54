package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/pattern"
)

// blockFile is an open block device.
type blockFile interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
}

// diskSpec is one vmm.disk / vmm.disk_ro parameter: SERIAL:SEED[:NEWSEED].
type diskSpec struct {
	serial        string
	seed, newSeed uint64
}

func parseDiskSpec(s string, wantNew bool) (diskSpec, error) {
	f := strings.Split(s, ":")
	if len(f) != 2 && !wantNew || len(f) != 3 && wantNew || f[0] == "" {
		return diskSpec{}, fmt.Errorf("disk spec %q: want SERIAL:SEED%s", s, map[bool]string{true: ":NEWSEED"}[wantNew])
	}
	var d diskSpec
	d.serial = f[0]
	var err error
	if d.seed, err = strconv.ParseUint(f[1], 0, 64); err != nil {
		return diskSpec{}, fmt.Errorf("disk spec %q: seed: %w", s, err)
	}
	if wantNew {
		if d.newSeed, err = strconv.ParseUint(f[2], 0, 64); err != nil {
			return diskSpec{}, fmt.Errorf("disk spec %q: new seed: %w", s, err)
		}
	}
	return d, nil
}

// parseRWOrRODiskSpec reads SERIAL:SEED:NEWSEED, a disk to rewrite, or
// SERIAL:SEED, a read-only one (readOnly).
func parseRWOrRODiskSpec(s string) (d diskSpec, readOnly bool, err error) {
	if d, err = parseDiskSpec(s, true); err == nil {
		return d, false, nil
	}
	if d, err = parseDiskSpec(s, false); err != nil {
		return diskSpec{}, false, fmt.Errorf("disk spec %q: want SERIAL:SEED:NEWSEED or, read-only, SERIAL:SEED", s)
	}
	return d, true, nil
}

// refuseWrite checks a read-only disk: it holds SEED's pattern, a write
// and sync of its first sector fail, and, with wantRO, the guest marks it
// read-only (/sys/block/NAME/ro).
func (e *env) refuseWrite(name string, size int64, seed uint64, wantRO bool) (string, error) {
	ro, _ := e.readTrimmed(path.Join("sys/block", name, "ro"))
	if wantRO && ro != "1" {
		return "", fmt.Errorf("not read-only in the guest (ro=%s)", ro)
	}
	f, err := e.io.openBlock("/dev/"+name, false)
	if err != nil {
		return "", fmt.Errorf("open read-only: %w", err)
	}
	err = verifyDisk(f, size, seed)
	f.Close()
	if err != nil {
		return "", err
	}
	werr := tryWrite(e, "/dev/"+name)
	if werr == nil {
		return "", errors.New("a write succeeded on a read-only disk")
	}
	return fmt.Sprintf("ro=%s write refused: %v", ro, werr), nil
}

// virtioDisks maps serials to block device names (vda, ...) from sysfs.
func (e *env) virtioDisks() (map[string]string, error) {
	ents, err := fs.ReadDir(e.root, "sys/block")
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	out := map[string]string{}
	for _, ent := range ents {
		name := ent.Name()
		if !strings.HasPrefix(name, "vd") {
			continue
		}
		serial, err := e.readTrimmed(path.Join("sys/block", name, "serial"))
		if err != nil || serial == "" {
			continue
		}
		out[serial] = name
	}
	return out, nil
}

// findDisk returns the device name and size in bytes of the disk with serial.
func (e *env) findDisk(serial string) (string, int64, error) {
	disks, err := e.virtioDisks()
	if err != nil {
		return "", 0, err
	}
	name, ok := disks[serial]
	if !ok {
		return "", 0, fmt.Errorf("no virtio disk with serial %q (have %v)", serial, disks)
	}
	s, err := e.readTrimmed(path.Join("sys/block", name, "size"))
	if err != nil {
		return "", 0, fmt.Errorf("%s size: %w", name, err)
	}
	sectors, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sectors <= 0 || sectors > 1<<40 {
		return "", 0, fmt.Errorf("%s size %q", name, s)
	}
	return name, sectors * 512, nil
}

const ioChunk = 1 << 20

// verifyDisk reads size bytes of f and checks them against stream seed.
func verifyDisk(f io.ReaderAt, size int64, seed uint64) error { return verifyRange(f, 0, size, seed) }

// verifyRange reads [lo, hi) of f and checks it against stream seed.
func verifyRange(f io.ReaderAt, lo, hi int64, seed uint64) error {
	buf := make([]byte, ioChunk)
	for off := lo; off < hi; off += ioChunk {
		b := buf[:min(ioChunk, hi-off)]
		if _, err := f.ReadAt(b, off); err != nil {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		if bad := pattern.Mismatch(b, seed, off); bad >= 0 {
			return fmt.Errorf("byte %d differs from pattern %#x", bad, seed)
		}
	}
	return nil
}

// writeDisk writes size bytes of stream seed to f and syncs (a FLUSH).
func writeDisk(f blockFile, size int64, seed uint64) error { return writeRange(f, 0, size, seed) }

// writeRange writes stream seed over [lo, hi) of f and syncs (a FLUSH).
func writeRange(f blockFile, lo, hi int64, seed uint64) error {
	buf := make([]byte, ioChunk)
	for off := lo; off < hi; off += ioChunk {
		b := buf[:min(ioChunk, hi-off)]
		pattern.Fill(b, seed, off)
		if _, err := f.WriteAt(b, off); err != nil {
			return fmt.Errorf("write at %d: %w", off, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

func mbps(n int64, d time.Duration) string {
	return fmt.Sprintf("%.1fMB/s", float64(n)/1e6/max(d.Seconds(), 1e-9))
}

// checkDisk reads the pattern the test wrote through each vmm.disk, then
// writes the second pattern and syncs; the test checks the image afterwards.
func checkDisk(e *env) (bool, string) {
	specs := e.opts.params["vmm.disk"]
	if specs == "" {
		return false, "no vmm.disk=SERIAL:SEED:NEWSEED on the command line"
	}
	var details []string
	for _, s := range strings.Split(specs, ",") {
		d, err := parseDiskSpec(s, true)
		if err != nil {
			return false, err.Error()
		}
		name, size, err := e.findDisk(d.serial)
		if err != nil {
			return false, err.Error()
		}
		f, err := e.io.openBlock("/dev/"+name, true)
		if err != nil {
			return false, fmt.Sprintf("open /dev/%s: %v", name, err)
		}
		start := time.Now()
		if err := verifyDisk(f, size, d.seed); err != nil {
			f.Close()
			return false, fmt.Sprintf("/dev/%s: %v", name, err)
		}
		read := time.Since(start)
		start = time.Now()
		err = writeDisk(f, size, d.newSeed)
		written := time.Since(start)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, fmt.Sprintf("/dev/%s: %v", name, err)
		}
		details = append(details, fmt.Sprintf("/dev/%s serial=%s %dB read=%s write+sync=%s",
			name, d.serial, size, mbps(size, read), mbps(size, written)))
	}
	return true, strings.Join(details, "; ")
}

// checkDiskRO reads the pattern through each vmm.disk_ro and makes sure a
// write fails in the guest.
func checkDiskRO(e *env) (bool, string) {
	specs := e.opts.params["vmm.disk_ro"]
	if specs == "" {
		return false, "no vmm.disk_ro=SERIAL:SEED on the command line"
	}
	var details []string
	for _, s := range strings.Split(specs, ",") {
		d, err := parseDiskSpec(s, false)
		if err != nil {
			return false, err.Error()
		}
		name, size, err := e.findDisk(d.serial)
		if err != nil {
			return false, err.Error()
		}
		ro, _ := e.readTrimmed(path.Join("sys/block", name, "ro"))
		f, err := e.io.openBlock("/dev/"+name, false)
		if err != nil {
			return false, fmt.Sprintf("open /dev/%s read-only: %v", name, err)
		}
		err = verifyDisk(f, size, d.seed)
		f.Close()
		if err != nil {
			return false, fmt.Sprintf("/dev/%s: %v", name, err)
		}
		werr := tryWrite(e, "/dev/"+name)
		if werr == nil {
			return false, fmt.Sprintf("/dev/%s: a write succeeded on a read-only disk", name)
		}
		details = append(details, fmt.Sprintf("/dev/%s serial=%s ro=%s write refused: %v", name, d.serial, ro, werr))
	}
	return true, strings.Join(details, "; ")
}

// tryWrite attempts to overwrite the first sector (with its own content)
// and sync; it returns why that failed, or nil if it worked.
func tryWrite(e *env, dev string) error {
	f, err := e.io.openBlock(dev, true)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, 0); err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	return f.Sync()
}

// checkDiskIDs makes /dev/disk/by-id/virtio-SERIAL links from sysfs, as
// udev's persistent-storage rules would (the initramfs has no udev), and
// checks that every serial of vmm.disk_ids is there and names its disk.
func checkDiskIDs(e *env) (bool, string) {
	want := e.opts.params["vmm.disk_ids"]
	if want == "" {
		return false, "no vmm.disk_ids=SERIAL,... on the command line"
	}
	disks, err := e.virtioDisks()
	if err != nil {
		return false, err.Error()
	}
	for serial, name := range disks {
		if err := e.io.symlink("../../"+name, "/dev/disk/by-id/virtio-"+serial); err != nil {
			return false, fmt.Sprintf("link virtio-%s: %v", serial, err)
		}
	}
	var links []string
	for _, serial := range strings.Split(want, ",") {
		target, err := e.io.readlink("/dev/disk/by-id/virtio-" + serial)
		if err != nil {
			return false, fmt.Sprintf("/dev/disk/by-id/virtio-%s: %v (disks by serial: %v)", serial, err, disks)
		}
		if path.Base(target) != disks[serial] {
			return false, fmt.Sprintf("/dev/disk/by-id/virtio-%s -> %s, want %s", serial, target, disks[serial])
		}
		links = append(links, "virtio-"+serial+"->"+path.Base(target))
	}
	sort.Strings(links)
	if len(links) == 0 {
		return false, "no serials to check"
	}
	return true, strings.Join(links, " ")
}
