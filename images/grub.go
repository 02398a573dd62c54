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

// GrubPackages are the Debian packages the GRUB disks are built from:
// grub-pc-bin has the i386-pc images and modules, grub-efi-amd64-bin the
// x86_64-efi modules, grub-common grub-mkimage (for both), and
// grub-efi-amd64-signed and shim-signed the Secure Boot chain (GRUB signed
// by Debian, shim signed by Microsoft). None is installed: each is
// unpacked with dpkg -x and grub-mkimage runs from there (it needs only
// libraries every Debian host has: liblzma, libdevmapper).
func GrubPackages() []string {
	return []string{"grub-pc-bin", "grub-common", "grub-efi-amd64-bin", "grub-efi-amd64-signed", "shim-signed"}
}

// Where GrubTools keeps what it uses from GrubPackages, relative to
// <Out>/grub (as the packages install them).
const (
	grubMkimage   = "usr/bin/grub-mkimage"
	grubBIOSMods  = "usr/lib/grub/i386-pc"
	grubEFIMods   = "usr/lib/grub/x86_64-efi"
	grubSignedEFI = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
	shimSignedEFI = "usr/lib/shim/shimx64.efi.signed"
)

// grubKept are the paths copied from the unpacked packages.
var grubKept = []string{grubMkimage, grubBIOSMods, grubEFIMods, grubSignedEFI, shimSignedEFI}

// GrubTools downloads and unpacks GrubPackages into <Out>/grub (kept:
// grub-mkimage, the i386-pc and x86_64-efi module directories, signed GRUB
// and shim), rebuilt when a package version changes, and finds mke2fs.
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
	keyParts := []string{"grub-tools-v2"}
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
		for _, rel := range grubKept {
			dst := filepath.Join(tmp, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.Rename(filepath.Join(scratch, filepath.FromSlash(rel)), dst); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return grubdisk.Tools{}, err
	}
	cfg.Log.Info("grub tools ready", "dir", dir, "versions", versions, "rebuilt", rebuilt)
	at := func(rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }
	return grubdisk.Tools{
		Mkimage:    at(grubMkimage),
		ModDir:     at(grubBIOSMods),
		EFIModDir:  at(grubEFIMods),
		SignedGrub: at(grubSignedEFI),
		Shim:       at(shimSignedEFI),
		Mke2fs:     mke2fs,
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
// images/grubdisk). Returns its path.
func GrubDisk(ctx context.Context, cfg Config, k *KernelArtifacts, initrd, cmdline string) (string, error) {
	return grubImage(ctx, cfg, "grub-disk.img", "grub-disk-v2", grubdisk.Spec{Kernel: k.Vmlinuz, Initrd: initrd, Cmdline: cmdline},
		grubdisk.Build)
}

// GrubISO builds <Out>/grub.iso: an El Torito CD that a legacy BIOS boots
// through GRUB into k's kernel with initrd and cmdline (see
// grubdisk.BuildISO). Returns its path.
func GrubISO(ctx context.Context, cfg Config, k *KernelArtifacts, initrd, cmdline string) (string, error) {
	return grubImage(ctx, cfg, "grub.iso", "grub-iso-v3", grubdisk.Spec{Kernel: k.Vmlinuz, Initrd: initrd, Cmdline: cmdline},
		grubdisk.BuildISO)
}

// GrubEFIDisk builds <Out>/grub-efi-<boot>.img: a raw GPT disk with an EFI
// system partition that UEFI firmware (Debian's OVMF) boots from
// \EFI\BOOT\BOOTX64.EFI through GRUB into k's kernel with initrd and
// cmdline; boot picks plain GRUB, Debian's signed shim and GRUB for Secure
// Boot, or that layout with an unsigned BOOTX64.EFI that Secure Boot
// refuses (see grubdisk.BuildEFI). k must be Debian's signed kernel
// (linux-image-*-amd64, not -unsigned) for the shim chain to boot it.
// Returns its path.
func GrubEFIDisk(ctx context.Context, cfg Config, k *KernelArtifacts, initrd, cmdline string, boot grubdisk.EFIBoot) (string, error) {
	return grubImage(ctx, cfg, "grub-efi-"+boot.String()+".img", "grub-efi-v1", grubdisk.Spec{Kernel: k.Vmlinuz, Initrd: initrd, Cmdline: cmdline},
		func(ctx context.Context, t grubdisk.Tools, s grubdisk.Spec, out string) error {
			return grubdisk.BuildEFI(ctx, t, s, boot, out)
		})
}

// grubImage builds <Out>/name with build from GrubTools and s, rebuilt when
// version (the layout), the GRUB packages, the kernel, the initrd or the
// command line change.
func grubImage(ctx context.Context, cfg Config, name, version string, s grubdisk.Spec,
	build func(context.Context, grubdisk.Tools, grubdisk.Spec, string) error) (string, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return "", err
	}
	tools, err := GrubTools(ctx, cfg)
	if err != nil {
		return "", err
	}
	if _, err := grubdisk.GrubConfig(s.Cmdline); err != nil {
		return "", err
	}
	keyParts := []string{version, name, s.Cmdline}
	for _, p := range []string{tools.Mkimage, tools.ModDir, tools.EFIModDir, tools.SignedGrub, tools.Shim, s.Kernel, s.Initrd} {
		sum, err := HashPath(p)
		if err != nil {
			return "", err
		}
		keyParts = append(keyParts, sum)
	}
	out := filepath.Join(cfg.Out, name)
	rebuilt, err := Cached(out, KeyOf(keyParts...), func(tmp string) error { return build(ctx, tools, s, tmp) })
	if err != nil {
		return "", err
	}
	cfg.Log.Info("grub image ready", "path", out, "rebuilt", rebuilt)
	return out, nil
}
