package images

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/images/debdisk"
	"github.com/vmmdev/vmm/images/grubdisk"
)

// A full Debian system on a disk, as distributions ship cloud images: made
// with debootstrap (which needs root: it chroots and runs the packages'
// maintainer scripts) and laid out by images/debdisk.

// Errors a caller may branch on.
var (
	// ErrDebianNeedsRoot: debootstrap cannot install a system without root.
	ErrDebianNeedsRoot = errors.New("building the Debian image needs root (debootstrap chroots)")
	// ErrNoQEMUImg: qemu-img (Debian's qemu-utils) is missing.
	ErrNoQEMUImg = errors.New("qemu-img not found (install qemu-utils)")
)

// debianBuilderVersion is part of the image's cache key: change it when
// anything DebianDisk does changes the image (configuration, cleanup,
// layout), or to pick up the mirror's newer packages.
const debianBuilderVersion = "debian-disk-v2"

// Where the system comes from.
const (
	DebianSuite  = "bookworm"
	DebianMirror = "http://deb.debian.org/debian"
)

// debianDiskSize is the disk's virtual size; the root filesystem takes all
// but the first 66 MiB. It is sparse: the qcow2 holds only what is written.
const debianDiskSize = 4 << 30

// debootstrapTimeout bounds the install: a few minutes on an idle machine
// with a near mirror, far more on a loaded CI machine.
const debootstrapTimeout = 60 * time.Minute

// DebianPackages are what the image has besides debootstrap's minbase
// variant: systemd as init, the kernel (its postinst makes the initrd
// with initramfs-tools), cloud-init, Hyper-V's daemons (KVP, VSS, file
// copy) and GRUB's BIOS and EFI images, which also build the disk's boot
// loaders. debootstrap's resolver follows no virtual packages:
// python3-cffi-backend provides the python3-cffi-backend-api-* that
// cloud-init's python3-cryptography depends on. A new slice each call.
func DebianPackages() []string {
	return []string{
		"systemd", "systemd-sysv", "udev", "linux-image-amd64", "cloud-init", "python3-cffi-backend",
		"hyperv-daemons", "grub-pc-bin", "grub-efi-amd64-bin",
	}
}

// DebianImage is a built image.
type DebianImage struct {
	// QCOW2 is the disk (qcow2, version 3). Never write to it: boot it in
	// snapshot mode or from an overlay.
	QCOW2 string
	// Manifest lists the installed packages, "name version" a line.
	Manifest string
	// Kernel is the installed kernel's release ("6.1.0-28-amd64").
	Kernel string
	// Vmlinuz and Initrd are that kernel and its initrd, copied out of the
	// image (ExtractDebianBoot) to boot it directly.
	Vmlinuz, Initrd string
	// Rebuilt is set when this call built it; Took is how long that took.
	Rebuilt bool
	Took    time.Duration
}

// Names inside the cached image directory.
const (
	debianQCOW2    = "disk.qcow2"
	debianManifest = "packages.txt"
	debianKernel   = "kernel-release"
)

// DebianDisk returns the Debian 12 image in <Cache>/debian-12, building it
// when missing or when its inputs change (the package list, suite, mirror,
// debootstrap's version and debianBuilderVersion): debootstrap installs
// the system into a directory, which is configured for a cloud image
// (fstab, an empty machine-id, cloud-init's NoCloud datasource) and
// trimmed (documentation, apt's caches), then laid out by debdisk and
// converted to qcow2; its kernel and initrd are copied out next to it
// (<Cache>/debian-12-boot, see ExtractDebianBoot). The mirror's package versions at build time are in
// the manifest; a newer mirror does not rebuild by itself. A lock keeps
// two builders apart.
func DebianDisk(ctx context.Context, cfg Config) (*DebianImage, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Cache == "" {
		return nil, errors.New("debian image: no cache directory (set Config.Cache or HOME)")
	}
	mke2fs, err := findMke2fs()
	if err != nil {
		return nil, err
	}
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		return nil, ErrNoQEMUImg
	}
	dsVersion, err := packageVersion(ctx, cfg, "debootstrap")
	if err != nil {
		return nil, err
	}
	key := KeyOf(append([]string{debianBuilderVersion, DebianSuite, DebianMirror, "debootstrap", dsVersion,
		fmt.Sprint(debianDiskSize)}, DebianPackages()...)...)
	dir := filepath.Join(cfg.Cache, debianDir)
	start := time.Now()
	rebuilt, err := Cached(dir, key, func(tmp string) error {
		if os.Geteuid() != 0 {
			return ErrDebianNeedsRoot
		}
		return buildDebian(ctx, cfg, dsVersion, mke2fs, qemuImg, tmp)
	})
	if err != nil {
		return nil, err
	}
	img := &DebianImage{
		QCOW2:    filepath.Join(dir, debianQCOW2),
		Manifest: filepath.Join(dir, debianManifest),
		Rebuilt:  rebuilt,
	}
	if rebuilt {
		img.Took = time.Since(start)
	}
	release, err := os.ReadFile(filepath.Join(dir, debianKernel))
	if err != nil {
		return nil, fmt.Errorf("debian image: %w", err)
	}
	img.Kernel = strings.TrimSpace(string(release))
	boot, err := debianBoot(ctx, cfg, dir, img.Kernel)
	if err != nil {
		return nil, err
	}
	img.Vmlinuz, img.Initrd = filepath.Join(boot, DebianVmlinuz), filepath.Join(boot, DebianInitrd)
	cfg.Log.Info("debian image ready", "path", img.QCOW2, "kernel", img.Kernel, "rebuilt", rebuilt, "took", img.Took)
	return img, nil
}

// packageVersion asks apt for the candidate version of pkg.
func packageVersion(ctx context.Context, cfg Config, pkg string) (string, error) {
	out, err := step{name: "apt-cache show " + pkg, timeout: cfg.StepTimeout}.
		run(ctx, "apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return "", err
	}
	v := field(out, "Version")
	if v == "" {
		return "", fmt.Errorf("apt-cache show %s: no Version", pkg)
	}
	return v, nil
}

// buildDebian builds the image directory at out.
func buildDebian(ctx context.Context, cfg Config, dsVersion, mke2fs, qemuImg, out string) error {
	work, err := os.MkdirTemp(filepath.Dir(out), ".debian-work-")
	if err != nil {
		return fmt.Errorf("debian image: %w", err)
	}
	defer removeUnmounted(cfg, work)
	root := filepath.Join(work, "root")

	// debootstrap is shell and data: unpacked, it runs from anywhere.
	deb, err := kernelDeb(ctx, cfg, "debootstrap", dsVersion)
	if err != nil {
		return err
	}
	ds := filepath.Join(work, "debootstrap")
	if _, err := (step{name: "dpkg -x debootstrap", timeout: cfg.StepTimeout}).run(ctx, "dpkg", "-x", deb, ds); err != nil {
		return err
	}
	debs := filepath.Join(cfg.Cache, "debian-debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return fmt.Errorf("debian image: %w", err)
	}
	if _, err := (step{name: "debootstrap", timeout: debootstrapTimeout, combined: true,
		env: []string{"DEBOOTSTRAP_DIR=" + filepath.Join(ds, "usr", "share", "debootstrap")}}).
		run(ctx, "nice", filepath.Join(ds, "usr", "sbin", "debootstrap"), "--variant=minbase", "--merged-usr",
			"--cache-dir="+debs, "--include="+strings.Join(DebianPackages(), ","),
			DebianSuite, root, DebianMirror); err != nil {
		return err
	}
	release, err := installedKernel(root)
	if err != nil {
		return err
	}
	manifest, err := (step{name: "dpkg-query", timeout: cfg.StepTimeout}).
		run(ctx, "chroot", root, "dpkg-query", "-W", "-f", "${Package} ${Version}\n")
	if err != nil {
		return err
	}
	if err := slimDebianBoot(ctx, cfg, root, release); err != nil {
		return err
	}
	if err := configureDebian(root); err != nil {
		return err
	}
	grub, err := debianGrub(ctx, cfg, root, work)
	if err != nil {
		return err
	}
	if err := trimDebian(root, release); err != nil {
		return err
	}
	if _, err := (step{name: "depmod", timeout: cfg.StepTimeout}).run(ctx, "chroot", root, "depmod", release); err != nil {
		return err
	}

	raw := filepath.Join(work, "disk.raw")
	if err := debdisk.Build(ctx, debdisk.Spec{
		Root: root, Kernel: "/boot/vmlinuz-" + release, Initrd: "/boot/initrd.img-" + release,
		BootImg: filepath.Join(root, "usr", "lib", "grub", "i386-pc", "boot.img"),
		CoreImg: grub.core, EFIImg: grub.efi, Size: debianDiskSize, Mke2fs: mke2fs,
	}, raw); err != nil {
		return err
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		return fmt.Errorf("debian image: %w", err)
	}
	if _, err := (step{name: "qemu-img convert", timeout: cfg.StepTimeout}).
		run(ctx, qemuImg, "convert", "-f", "raw", "-O", "qcow2", raw, filepath.Join(out, debianQCOW2)); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, debianManifest), manifest, 0o644); err != nil {
		return fmt.Errorf("debian image: %w", err)
	}
	return os.WriteFile(filepath.Join(out, debianKernel), []byte(release+"\n"), 0o644)
}

// installedKernel returns the release of the one kernel under root/boot.
func installedKernel(root string) (string, error) {
	got, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil || len(got) != 1 {
		return "", fmt.Errorf("debian image: expected one kernel in /boot, found %v", got)
	}
	release := strings.TrimPrefix(filepath.Base(got[0]), "vmlinuz-")
	if _, err := os.Stat(filepath.Join(root, "boot", "initrd.img-"+release)); err != nil {
		return "", fmt.Errorf("debian image: no initrd for %s: %w", release, err)
	}
	return release, nil
}

// configureDebian makes the tree a cloud image: the root filesystem in
// fstab, a machine-id made at first boot (each clone its own), a host
// name cloud-init replaces, and cloud-init looking only for a NoCloud seed
// (no minutes spent probing cloud metadata services that are not there)
// and skipping skippedCloudModules.
func configureDebian(root string) error {
	files := map[string]string{
		"etc/fstab":      debdisk.Fstab(),
		"etc/hostname":   "debian\n",
		"etc/hosts":      "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"etc/machine-id": "",
		// No SSH to make host keys for (an empty ssh_keys generates
		// none), and C.UTF-8, which needs no locales package.
		"etc/cloud/cloud.cfg.d/90_vmm.cfg": "# vmm's Debian test image: seeds come as NoCloud volumes (label cidata).\n" +
			"datasource_list: [ NoCloud, None ]\nssh_keys: {}\nlocale: C.UTF-8\n",
		// No documentation in the image, also for packages installed later.
		"etc/dpkg/dpkg.cfg.d/01_nodoc": "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n" +
			"path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\n",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("debian image: %w", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("debian image: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(root, "var", "lib", "dbus", "machine-id")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("debian image: %w", err)
	}
	return dropCloudModules(filepath.Join(root, "etc", "cloud", "cloud.cfg"), skippedCloudModules())
}

// skippedCloudModules are the cloud-init modules the image does not run:
// apt-configure (apt's sources, which the tests never use), grub-dpkg
// (debconf answers for a grub-pc package the image does not have) and
// locale (C.UTF-8 is there without the locales package). Together they took
// up to 30 to 40 s of a boot in the nested test host on a loaded machine.
func skippedCloudModules() []string { return []string{"apt-configure", "grub-dpkg", "locale"} }

// dropCloudModules removes the modules from cloud.cfg's module lists (one
// "- name" line each, as Debian's file has them); a module that is not
// there is an error, so that a new cloud-init's file is looked at again.
func dropCloudModules(path string, modules []string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("debian image: %w", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	for _, m := range modules {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == "- "+m })
		if i < 0 {
			return fmt.Errorf("debian image: %s has no module %s to drop", path, m)
		}
		lines = slices.Delete(lines, i, i+1)
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644)
}

// debianInitramfsModules are what the image's initramfs carries (with
// their dependencies and soft dependencies, ext4's crc32c): the buses and
// disk drivers of vmm's disk interfaces (virtio-blk, NVMe, AHCI, Hyper-V's
// storvsc and the SCSI disks behind it) and the root's filesystem. udev
// loads those a machine has, as with Debian's default MODULES=most, which
// made a 36 MB initrd that GRUB reads through the firmware and the kernel
// unpacks on every boot.
func debianInitramfsModules() []string {
	return []string{"virtio_pci", "virtio_blk", "nvme", "ahci", "sd_mod", "hv_vmbus", "hv_storvsc", "ext4"}
}

// debianBlacklist are modules udev loads on the nested test host's
// emulated AMD CPU and PC platform that no test uses, each seconds of boot
// time there: KVM itself, the K8 frequency driver and the PC speaker.
func debianBlacklist() []string { return []string{"kvm_amd", "powernow_k8", "pcspkr"} }

// slimDebianBoot remakes the kernel's initrd (the postinst made it with
// MODULES=most) with only debianInitramfsModules, added by a hook, and
// keeps debianBlacklist from being loaded (the blacklist is in the initrd
// too). It runs before configureDebian, so that the initrd is made from
// the tree as the postinst saw it (debootstrap's empty fstab: no fsck in
// the initrd; systemd checks the root after the switch, as before).
func slimDebianBoot(ctx context.Context, cfg Config, root, release string) error {
	var blacklist strings.Builder
	blacklist.WriteString("# vmm's Debian test image: not needed by any test, seconds of boot in the nested test host.\n")
	for _, m := range debianBlacklist() {
		blacklist.WriteString("blacklist " + m + "\n")
	}
	files := []struct {
		name, content string
		mode          os.FileMode
	}{
		{"etc/initramfs-tools/conf.d/90-vmm", "# vmm's Debian test image: modules from hooks/vmm-disks only.\nMODULES=list\n", 0o644},
		{"etc/initramfs-tools/hooks/vmm-disks", "#!/bin/sh\n# vmm's Debian test image: the disk drivers of vmm's interfaces and ext4, loaded by udev.\n" +
			"[ \"$1\" = prereqs ] && exit 0\n. /usr/share/initramfs-tools/hook-functions\n" +
			"manual_add_modules " + strings.Join(debianInitramfsModules(), " ") + "\n", 0o755},
		{"etc/modprobe.d/vmm-blacklist.conf", blacklist.String(), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(root, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("debian image: %w", err)
		}
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			return fmt.Errorf("debian image: %w", err)
		}
	}
	_, err := (step{name: "update-initramfs", timeout: cfg.StepTimeout, combined: true}).
		run(ctx, "chroot", root, "update-initramfs", "-u", "-k", release)
	return err
}

// trimModules are the kernel's module directories no test machine needs
// (displays, sound, radios, cameras, InfiniBand, staging), about 170 MB;
// the initrd, made before, keeps its own copies. depmod runs afterwards.
func trimModules() []string {
	return []string{
		"drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/infiniband", "drivers/bluetooth",
		"drivers/staging", "drivers/isdn", "drivers/iio", "sound", "net/bluetooth", "net/wireless", "net/mac80211",
	}
}

// trimDebian removes documentation (copyrights kept), manual pages,
// translations, apt's caches and lists (apt-get update restores them) and
// the kernel modules of trimModules.
func trimDebian(root, release string) error {
	for _, dir := range []string{"usr/share/man", "usr/share/info", "usr/share/locale"} {
		if err := emptyDir(filepath.Join(root, dir)); err != nil {
			return err
		}
	}
	// What apt-get clean removes, and the lists but their directory and lock.
	for _, glob := range []string{"var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*"} {
		got, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			return fmt.Errorf("debian image: %w", err)
		}
		for _, p := range got {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("debian image: %w", err)
			}
		}
	}
	for _, dir := range trimModules() {
		if err := os.RemoveAll(filepath.Join(root, "usr", "lib", "modules", release, "kernel", dir)); err != nil {
			return fmt.Errorf("debian image: %w", err)
		}
	}
	docs := filepath.Join(root, "usr", "share", "doc")
	return filepath.WalkDir(docs, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == docs {
			return err
		}
		if d.Name() == "copyright" || (d.IsDir() && filepath.Dir(p) == docs) {
			return nil
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("debian image: %w", err)
		}
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
}

// emptyDir removes what dir holds, keeping dir.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("debian image: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("debian image: %w", err)
		}
	}
	return nil
}

// debianGrubImages are the two core images built from the tree's GRUB.
type debianGrubImages struct{ core, efi string }

// debianGrub runs the tree's own grub-mkimage (in a chroot, so nothing of
// the host's GRUB matters) for the BIOS and EFI core images, with
// grubdisk's early configuration and debdisk's prefix.
func debianGrub(ctx context.Context, cfg Config, root, work string) (debianGrubImages, error) {
	const inTree = "/tmp/vmm-grub" // in root
	dir := filepath.Join(root, inTree)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return debianGrubImages{}, fmt.Errorf("debian image: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "early.cfg"), grubdisk.EarlyConfig(), 0o644); err != nil {
		return debianGrubImages{}, fmt.Errorf("debian image: %w", err)
	}
	imgs := debianGrubImages{core: filepath.Join(work, "core.img"), efi: filepath.Join(work, "bootx64.efi")}
	for _, b := range []struct {
		format, out string
		modules     []string
	}{
		{"i386-pc", imgs.core, debdisk.BIOSModules()},
		{"x86_64-efi", imgs.efi, debdisk.EFIModules()},
	} {
		args := append([]string{"chroot", root, "grub-mkimage", "-O", b.format, "-d", "/usr/lib/grub/" + b.format,
			"-o", inTree + "/" + b.format, "-c", inTree + "/early.cfg", "-p", debdisk.Prefix}, b.modules...)
		if _, err := (step{name: "grub-mkimage " + b.format, timeout: cfg.StepTimeout}).run(ctx, args...); err != nil {
			return debianGrubImages{}, err
		}
		if err := os.Rename(filepath.Join(dir, b.format), b.out); err != nil {
			return debianGrubImages{}, fmt.Errorf("debian image: %w", err)
		}
	}
	return imgs, nil
}

// removeUnmounted removes the work directory unless something is still
// mounted below it (debootstrap mounts /proc and /sys in the tree and
// unmounts them, but an interrupted run may not have): those are
// unmounted first, and if that fails the directory stays, since removing
// through a mount would delete what it shows.
func removeUnmounted(cfg Config, dir string) {
	mounts, err := mountsUnder(dir)
	if err != nil {
		cfg.Log.Warn("debian image: work directory kept", "dir", dir, "err", err)
		return
	}
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			cfg.Log.Warn("debian image: work directory kept", "dir", dir, "mount", m, "err", err)
			return
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		cfg.Log.Warn("debian image: removing work directory", "dir", dir, "err", err)
	}
}

// mountsUnder lists the mount points below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Field 5 is the mount point, octal-escaped.
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 {
			continue
		}
		p := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(fs[4])
		if strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, sc.Err()
}
