package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/vmmdev/vmm/images/debdisk"
)

// The Debian image's own kernel and initrd, for booting it directly
// (--kernel, --initrd) from a disk no firmware reads, such as a storvsc
// disk: copied out of the image's root filesystem into a cache entry of
// their own, keyed by the image's content, so a new image brings new boot
// files and the image's entry stays as it is.

// Names in the boot files' cache directory, DebianBootDir.
const (
	DebianVmlinuz = "vmlinuz"
	DebianInitrd  = "initrd.img"
)

// debianBootVersion is part of the boot files' cache key: change it when
// what ExtractDebianBoot writes changes.
const debianBootVersion = "debian-boot-v1"

// Cache directory names under Config.Cache: the image and its boot files.
const (
	debianDir     = "debian-12"
	debianBootDir = "debian-12-boot"
)

// debianBoot makes sure <Cache>/debian-12-boot holds the kernel and initrd
// of the image in dir (whose cache stamp names its content), copying them
// out when the image changed. It returns the directory.
func debianBoot(ctx context.Context, cfg Config, dir, release string) (string, error) {
	raw, err := os.ReadFile(StampPath(dir))
	if err != nil {
		return "", fmt.Errorf("debian boot files: %w", err)
	}
	var st Stamp
	if err := json.Unmarshal(raw, &st); err != nil || st.SHA256 == "" {
		return "", fmt.Errorf("debian boot files: bad stamp %s", StampPath(dir))
	}
	out := filepath.Join(cfg.Cache, debianBootDir)
	_, err = Cached(out, KeyOf(debianBootVersion, st.SHA256, release), func(tmp string) error {
		return ExtractDebianBoot(ctx, cfg, filepath.Join(dir, debianQCOW2), release, tmp)
	})
	if err != nil {
		return "", err
	}
	return out, nil
}

// ExtractDebianBoot copies /boot/vmlinuz-RELEASE and /boot/initrd.img-RELEASE
// from the root filesystem of a debdisk image (qcow2, the root partition at
// debdisk.RootStart) into the new directory out as DebianVmlinuz and
// DebianInitrd: qemu-img makes a raw copy of the disk next to out, and
// e2fsprogs' debugfs reads the ext4 filesystem at the partition's offset
// without mounting it.
func ExtractDebianBoot(ctx context.Context, cfg Config, qcow2, release, out string) error {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return err
	}
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		return ErrNoQEMUImg
	}
	debugfs, err := findDebugfs()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(out), ".debian-boot-")
	if err != nil {
		return fmt.Errorf("debian boot files: %w", err)
	}
	defer os.RemoveAll(work)
	raw := filepath.Join(work, "disk.raw")
	if _, err := (step{name: "qemu-img convert", timeout: cfg.StepTimeout}).
		run(ctx, qemuImg, "convert", "-f", "qcow2", "-O", "raw", qcow2, raw); err != nil {
		return err
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		return fmt.Errorf("debian boot files: %w", err)
	}
	fs := raw + "?offset=" + strconv.FormatInt(debdisk.RootStart*512, 10)
	// In a fixed order, so a missing release is always reported by its
	// kernel first.
	for _, f := range []struct{ name, src string }{
		{DebianVmlinuz, "/boot/vmlinuz-" + release},
		{DebianInitrd, "/boot/initrd.img-" + release},
	} {
		name, src := f.name, f.src
		dst := filepath.Join(out, name)
		// debugfs exits 0 when a command fails: the file it wrote tells,
		// and its output says why.
		dctx, cancel := context.WithTimeout(ctx, cfg.StepTimeout)
		msg, err := exec.CommandContext(dctx, debugfs, "-R", "dump "+src+" "+dst, fs).CombinedOutput()
		cancel()
		if fi, serr := os.Stat(dst); err != nil || serr != nil || fi.Size() == 0 {
			return fmt.Errorf("debian boot files: debugfs could not copy %s out of %s (%v): %s", src, qcow2, err, tail(string(msg), 500))
		}
	}
	return nil
}

// ErrNoDebugfs: e2fsprogs' debugfs is missing.
var ErrNoDebugfs = errors.New("debugfs not found (install e2fsprogs)")

// findDebugfs finds debugfs, in PATH or the sbin a non-root PATH lacks.
func findDebugfs() (string, error) {
	if p, err := exec.LookPath("debugfs"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/debugfs", "/sbin/debugfs"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNoDebugfs
}
