package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/vmmdev/vmm/images/grubdisk"
)

// Errors for a host that lacks what the GRUB disk is built with.
var (
	ErrNoMke2fs      = errors.New("mke2fs not found (install e2fsprogs)")
	ErrNoGrubPackage = errors.New("GRUB package not found in apt's lists")
)

// GrubPackages are the Debian packages the GRUB disk is built from:
// grub-pc-bin has the i386-pc images and modules, grub-common
// grub-mkimage. Neither is installed: both are unpacked with dpkg -x and
// grub-mkimage runs from there (it needs only libraries every Debian host
// has: liblzma, libdevmapper).
func GrubPackages() []string { return []string{"grub-pc-bin", "grub-common"} }

// GrubTools downloads and unpacks GrubPackages into <Out>/grub (kept:
// usr/bin/grub-mkimage and usr/lib/grub/i386-pc), rebuilt when a package
// version changes, and finds mke2fs.
func GrubTools(ctx context.Context, cfg Config) (grubdisk.Tools, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return grubdisk.Tools{}, err
	}
	mke2fs, err := findMke2fs()
	if err != nil {
		return grubdisk.Tools{}, err
	}
	versions := map[string]string{}
	keyParts := []string{"grub-tools-v1"}
	for _, pkg := range GrubPackages() {
		out, err := step{name: "apt-cache show " + pkg, timeout: cfg.StepTimeout}.
			run(ctx, "apt-cache", "show", "--no-all-versions", pkg)
		if err != nil {
			return grubdisk.Tools{}, fmt.Errorf("%w: %w", ErrNoGrubPackage, err)
		}
		v := field(out, "Version")
		if v == "" {
			return grubdisk.Tools{}, fmt.Errorf("apt-cache show %s: no Version: %w", pkg, ErrNoGrubPackage)
		}
		versions[pkg] = v
		keyParts = append(keyParts, pkg, v)
	}
	dir := filepath.Join(cfg.Out, "grub")
	rebuilt, err := Cached(dir, KeyOf(keyParts...), func(tmp string) error {
		scratch, err := os.MkdirTemp(cfg.Out, "unpack-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(scratch)
		for _, pkg := range GrubPackages() {
			deb, err := kernelDeb(ctx, cfg, pkg, versions[pkg])
			if err != nil {
				return err
			}
			if _, err := (step{name: "dpkg -x " + pkg, timeout: cfg.StepTimeout}).run(ctx, "dpkg", "-x", deb, scratch); err != nil {
				return err
			}
		}
		if err := copyFile(filepath.Join(scratch, "usr", "bin", "grub-mkimage"), filepath.Join(tmp, "usr", "bin", "grub-mkimage"), 0o755); err != nil {
			return err
		}
		modDir := filepath.Join(tmp, "usr", "lib", "grub", "i386-pc")
		if err := os.MkdirAll(filepath.Dir(modDir), 0o755); err != nil {
			return err
		}
		return os.Rename(filepath.Join(scratch, "usr", "lib", "grub", "i386-pc"), modDir)
	})
	if err != nil {
		return grubdisk.Tools{}, err
	}
	cfg.Log.Info("grub tools ready", "dir", dir, "versions", versions, "rebuilt", rebuilt)
	return grubdisk.Tools{
		Mkimage: filepath.Join(dir, "usr", "bin", "grub-mkimage"),
		ModDir:  filepath.Join(dir, "usr", "lib", "grub", "i386-pc"),
		Mke2fs:  mke2fs,
	}, nil
}

// findMke2fs looks in PATH and then in the sbin directories a non-root
// PATH often lacks.
func findMke2fs() (string, error) {
	if p, err := exec.LookPath("mke2fs"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mke2fs", "/sbin/mke2fs"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNoMke2fs
}

// GrubDisk builds <Out>/grub-disk.img: a raw disk that a legacy BIOS boots
// through GRUB into k's kernel with initrd and cmdline (see
// images/grubdisk). Rebuilt when the GRUB packages, the kernel, the initrd,
// the command line or the layout change; returns its path.
func GrubDisk(ctx context.Context, cfg Config, k *KernelArtifacts, initrd, cmdline string) (string, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return "", err
	}
	tools, err := GrubTools(ctx, cfg)
	if err != nil {
		return "", err
	}
	if _, err := grubdisk.GrubConfig(cmdline); err != nil {
		return "", err
	}
	modSum, err := HashPath(tools.ModDir)
	if err != nil {
		return "", err
	}
	mkimageSum, err := hashFile(tools.Mkimage)
	if err != nil {
		return "", err
	}
	kernelSum, err := hashFile(k.Vmlinuz)
	if err != nil {
		return "", err
	}
	initrdSum, err := hashFile(initrd)
	if err != nil {
		return "", err
	}
	key := KeyOf("grub-disk-v1", modSum, mkimageSum, kernelSum, initrdSum, cmdline)
	out := filepath.Join(cfg.Out, "grub-disk.img")
	rebuilt, err := Cached(out, key, func(tmp string) error {
		return grubdisk.Build(ctx, tools, grubdisk.Spec{Kernel: k.Vmlinuz, Initrd: initrd, Cmdline: cmdline}, tmp)
	})
	if err != nil {
		return "", err
	}
	cfg.Log.Info("grub disk ready", "path", out, "rebuilt", rebuilt)
	return out, nil
}

// GrubISO builds <Out>/grub.iso: an El Torito CD that a legacy BIOS boots
// through GRUB into k's kernel with initrd and cmdline (see
// grubdisk.BuildISO). Rebuilt when the GRUB packages, the kernel, the
// initrd, the command line or the layout change; returns its path.
func GrubISO(ctx context.Context, cfg Config, k *KernelArtifacts, initrd, cmdline string) (string, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return "", err
	}
	tools, err := GrubTools(ctx, cfg)
	if err != nil {
		return "", err
	}
	if _, err := grubdisk.GrubConfig(cmdline); err != nil {
		return "", err
	}
	var sums []string
	for _, p := range []string{tools.Mkimage, k.Vmlinuz, initrd} {
		s, err := hashFile(p)
		if err != nil {
			return "", err
		}
		sums = append(sums, s)
	}
	modSum, err := HashPath(tools.ModDir)
	if err != nil {
		return "", err
	}
	key := KeyOf(append([]string{"grub-iso-v2", modSum, cmdline}, sums...)...)
	out := filepath.Join(cfg.Out, "grub.iso")
	rebuilt, err := Cached(out, key, func(tmp string) error {
		return grubdisk.BuildISO(ctx, tools, grubdisk.Spec{Kernel: k.Vmlinuz, Initrd: initrd, Cmdline: cmdline}, tmp)
	})
	if err != nil {
		return "", err
	}
	cfg.Log.Info("grub iso ready", "path", out, "rebuilt", rebuilt)
	return out, nil
}
