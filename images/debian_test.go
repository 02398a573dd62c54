package images_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/debdisk"
	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/internal/testenv"
)

// TestDebianDisk builds the Debian image (or reuses the cached one) and
// checks it with readers independent of the builder: qemu-img check on the
// qcow2, then on a raw copy go-diskfs reads the GPT (three partitions of
// the right types), the MBR is GRUB's boot.img pointing at the BIOS boot
// partition, the ESP holds an EFI executable, and debugfs reads the ext4
// root: kernel, initrd (the slim one), grub.cfg naming them, cloud-init's
// configuration (without the skipped modules), the module blacklist and
// Hyper-V's daemons. Building takes many minutes and root (debootstrap
// chroots), so it runs with VMM_E2E=1 or under CI=true.
func TestDebianDisk(t *testing.T) {
	if os.Getenv("VMM_E2E") != "1" && os.Getenv("CI") != "true" {
		testenv.Skip(t, "set VMM_E2E=1 to build the Debian image with debootstrap (minutes; cached in ~/.cache/vmm)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
	defer cancel()
	img, err := images.DebianDisk(ctx, images.Config{})
	if errors.Is(err, images.ErrDebianNeedsRoot) || errors.Is(err, images.ErrNoQEMUImg) || errors.Is(err, images.ErrNoMke2fs) {
		testenv.Skip(t, "debian image: %v", err)
	}
	require.NoError(t, err)
	t.Logf("image %s kernel %s rebuilt=%v took %v", img.QCOW2, img.Kernel, img.Rebuilt, img.Took)

	out, err := exec.Command("qemu-img", "check", img.QCOW2).CombinedOutput()
	require.NoError(t, err, "qemu-img check: %s", out)
	require.Contains(t, string(out), "No errors were found")
	out, err = exec.Command("qemu-img", "info", "--output=json", img.QCOW2).Output()
	require.NoError(t, err)
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
		ActualSize  int64  `json:"actual-size"`
	}
	require.NoError(t, json.Unmarshal(out, &info))
	require.Equal(t, "qcow2", info.Format)
	require.Equal(t, int64(4<<30), info.VirtualSize)
	t.Logf("qcow2: virtual %d MiB, on disk %d MiB", info.VirtualSize>>20, info.ActualSize>>20)
	manifest, err := os.ReadFile(img.Manifest)
	require.NoError(t, err)
	for _, pkg := range images.DebianPackages() {
		require.Regexp(t, "(?m)^"+pkg+" ", string(manifest), "manifest lacks %s", pkg)
	}

	raw := filepath.Join(t.TempDir(), "disk.raw")
	out, err = exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", img.QCOW2, raw).CombinedOutput()
	require.NoError(t, err, "qemu-img convert: %s", out)

	checkDebianLayout(t, raw)
	debugfs := debugfsPath()
	rootFS := fmt.Sprintf("%s?offset=%d", raw, debdisk.RootStart*512)
	debug := func(cmd string) string {
		out, err := exec.Command(debugfs, "-R", cmd, rootFS).CombinedOutput()
		require.NoError(t, err, "debugfs %s: %s", cmd, out)
		return string(out)
	}
	boot := debug("ls -l /boot")
	require.Contains(t, boot, "vmlinuz-"+img.Kernel)
	require.Contains(t, boot, "initrd.img-"+img.Kernel)
	for file, boot := range map[string]string{"vmlinuz-" + img.Kernel: img.Vmlinuz, "initrd.img-" + img.Kernel: img.Initrd} {
		dumped := filepath.Join(t.TempDir(), file)
		debug("dump /boot/" + file + " " + dumped)
		want, err := os.ReadFile(dumped)
		require.NoError(t, err)
		got, err := os.ReadFile(boot)
		require.NoError(t, err)
		require.True(t, len(want) > 0 && string(want) == string(got), "%s is the image's /boot/%s", boot, file)
	}
	grubCfg := debug("cat /" + debdisk.GrubCfgPath)
	require.Contains(t, grubCfg, "linux /boot/vmlinuz-"+img.Kernel+" "+debdisk.Cmdline())
	require.Contains(t, grubCfg, "initrd /boot/initrd.img-"+img.Kernel)
	require.Contains(t, debug("ls -l /etc/cloud"), "cloud.cfg")
	require.Contains(t, debug("cat /etc/cloud/cloud.cfg.d/90_vmm.cfg"), "NoCloud")
	cloudCfg := debug("cat /etc/cloud/cloud.cfg")
	require.Contains(t, cloudCfg, "\n - scripts-user\n", "runcmd's scripts still run")
	require.Contains(t, cloudCfg, "\n - final-message\n")
	for _, m := range []string{"apt-configure", "grub-dpkg", "locale"} {
		require.NotContains(t, cloudCfg, "\n - "+m+"\n")
	}
	require.Contains(t, debug("cat /etc/modprobe.d/vmm-blacklist.conf"), "blacklist kvm_amd\n")
	require.Contains(t, debug("cat /etc/initramfs-tools/conf.d/90-vmm"), "MODULES=list\n")
	initrd, err := os.Stat(img.Initrd)
	require.NoError(t, err)
	t.Logf("initrd: %d KiB", initrd.Size()>>10)
	require.Less(t, initrd.Size(), int64(16<<20), "the initrd carries the disk drivers, not MODULES=most's 36 MB")
	require.Contains(t, debug("cat /etc/fstab"), "UUID="+debdisk.RootUUID)
	sbin := debug("ls -l /usr/sbin")
	for _, daemon := range []string{"hv_kvp_daemon", "hv_vss_daemon", "hv_fcopy_daemon"} {
		require.Contains(t, sbin, daemon)
	}
	require.Contains(t, debug("ls -l /usr/lib/systemd"), "systemd")
	require.Contains(t, debug("stat /etc/machine-id"), "Size: 0", "each clone makes its own machine-id")
	require.Contains(t, debug("stat /usr/bin/cloud-init"), "Type: regular")
}

// debugfsPath finds debugfs, in PATH or the sbin a non-root PATH lacks.
func debugfsPath() string {
	if p, err := exec.LookPath("debugfs"); err == nil {
		return p
	}
	return "/usr/sbin/debugfs"
}

// checkDebianLayout checks raw's boot sectors and partitions as firmware
// and GRUB read them: GRUB's boot.img as the protective MBR pointing at
// the BIOS boot partition, the three GPT partitions, an EFI executable on
// the ESP's removable-media path.
func checkDebianLayout(t *testing.T, raw string) {
	t.Helper()
	f, err := os.Open(raw)
	require.NoError(t, err)
	defer f.Close()
	mbr := make([]byte, 512)
	_, err = io.ReadFull(f, mbr)
	require.NoError(t, err)
	require.Equal(t, []byte{0x55, 0xAA}, mbr[510:], "boot signature")
	require.Equal(t, byte(0xEE), mbr[0x1BE+4], "protective MBR partition")
	require.Equal(t, uint64(debdisk.BIOSBootStart), binary.LittleEndian.Uint64(mbr[0x5C:]), "boot.img's core.img LBA")
	// core.img's first sector (diskboot) lists the rest of it, from the next sector.
	diskboot := make([]byte, 512)
	_, err = f.ReadAt(diskboot, debdisk.BIOSBootStart*512)
	require.NoError(t, err)
	require.Equal(t, uint64(debdisk.BIOSBootStart+1), binary.LittleEndian.Uint64(diskboot[500:]), "core.img blocklist")

	b, err := file.OpenFromPath(raw, true)
	require.NoError(t, err)
	defer b.Close()
	table, err := gpt.Read(b, 512, 512)
	require.NoError(t, err)
	var parts []string
	for _, p := range table.Partitions {
		if p.Type != gpt.Unused {
			parts = append(parts, fmt.Sprintf("%d:%s:%s", p.Index, p.Type, strings.ToUpper(p.GUID)))
		}
	}
	require.Equal(t, []string{
		"1:" + string(gpt.BIOSBoot) + ":" + debdisk.BIOSBootGUID,
		"2:" + string(gpt.EFISystemPartition) + ":" + debdisk.ESPGUID,
		"3:" + string(gpt.LinuxFilesystem) + ":" + debdisk.RootGUID,
	}, parts)
	require.Equal(t, uint64(debdisk.RootStart), table.Partitions[2].Start)

	espPart := table.Partitions[1]
	esp, err := fat32.Read(b, int64(espPart.End-espPart.Start+1)*512, int64(espPart.Start)*512, 512)
	require.NoError(t, err)
	bf, err := esp.OpenFile(debdisk.EFIBootPath, os.O_RDONLY)
	require.NoError(t, err)
	head := make([]byte, 2)
	_, err = io.ReadFull(bf, head)
	require.NoError(t, err)
	require.Equal(t, "MZ", string(head), "BOOTX64.EFI is a PE image")
}

// TestDebianDiskLayout lays out a small tree with debdisk.Build, with a
// real i386-pc core image (grub-mkimage and modules from images.GrubTools)
// and a stand-in EFI image, and reads it back as TestDebianDisk does: the
// layout without the minutes of debootstrap.
func TestDebianDiskLayout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tools, err := images.GrubTools(ctx, images.Config{})
	if errors.Is(err, images.ErrNoMke2fs) || errors.Is(err, images.ErrNoGrubPackage) {
		testenv.Skip(t, "debian disk layout: %v", err)
	}
	require.NoError(t, err)
	dir := t.TempDir()
	early := filepath.Join(dir, "early.cfg")
	require.NoError(t, os.WriteFile(early, grubdisk.EarlyConfig(), 0o644))
	core := filepath.Join(dir, "core.img")
	out, err := exec.Command(tools.Mkimage, append([]string{"-O", "i386-pc", "-d", tools.ModDir, "-o", core,
		"-c", early, "-p", debdisk.Prefix}, debdisk.BIOSModules()...)...).CombinedOutput()
	require.NoError(t, err, "grub-mkimage: %s", out)
	efi := filepath.Join(dir, "bootx64.efi")
	efiData := append([]byte("MZ"), pattern(300<<10)...)
	require.NoError(t, os.WriteFile(efi, efiData, 0o644))
	root := filepath.Join(dir, "root")
	for name, data := range map[string][]byte{
		"boot/vmlinuz-9.9-test": pattern(2 << 20), "boot/initrd.img-9.9-test": pattern(1 << 20), "etc/hostname": []byte("t\n"),
	} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, name), data, 0o644))
	}
	mke2fs := "/usr/sbin/mke2fs"
	if p, err := exec.LookPath("mke2fs"); err == nil {
		mke2fs = p
	}
	raw := filepath.Join(dir, "disk.raw")
	const size = 160 << 20
	require.NoError(t, debdisk.Build(ctx, debdisk.Spec{
		Root: root, Kernel: "/boot/vmlinuz-9.9-test", Initrd: "/boot/initrd.img-9.9-test",
		BootImg: filepath.Join(tools.ModDir, "boot.img"), CoreImg: core, EFIImg: efi, Size: size, Mke2fs: mke2fs,
	}, raw))
	fi, err := os.Stat(raw)
	require.NoError(t, err)
	require.Equal(t, int64(size), fi.Size())
	checkDebianLayout(t, raw)

	rootFS := fmt.Sprintf("%s?offset=%d", raw, debdisk.RootStart*512)
	out, err = exec.Command(debugfsPath(), "-R", "cat /"+debdisk.GrubCfgPath, rootFS).CombinedOutput()
	require.NoError(t, err, "debugfs: %s", out)
	require.Contains(t, string(out), "linux /boot/vmlinuz-9.9-test "+debdisk.Cmdline())
	got := filepath.Join(dir, "kernel.out")
	out, err = exec.Command(debugfsPath(), "-R", "dump /boot/vmlinuz-9.9-test "+got, rootFS).CombinedOutput()
	require.NoError(t, err, "debugfs: %s", out)
	data, err := os.ReadFile(got)
	require.NoError(t, err)
	require.Equal(t, pattern(2<<20), data, "kernel read back from the ext4 root")

	// The boot files come out of the image's qcow2 as DebianDisk copies them.
	qcow2 := filepath.Join(dir, "disk.qcow2")
	out, err = exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2).CombinedOutput()
	require.NoError(t, err, "qemu-img convert: %s", out)
	bootDir := filepath.Join(dir, "boot")
	require.NoError(t, images.ExtractDebianBoot(ctx, images.Config{}, qcow2, "9.9-test", bootDir))
	for name, want := range map[string][]byte{images.DebianVmlinuz: pattern(2 << 20), images.DebianInitrd: pattern(1 << 20)} {
		data, err := os.ReadFile(filepath.Join(bootDir, name))
		require.NoError(t, err)
		require.Equal(t, want, data, name)
	}
	err = images.ExtractDebianBoot(ctx, images.Config{}, qcow2, "9.9-other", filepath.Join(dir, "boot2"))
	require.ErrorContains(t, err, "/boot/vmlinuz-9.9-other")

	// An odd size is refused before anything is written.
	require.Error(t, debdisk.Build(ctx, debdisk.Spec{Root: root, Kernel: "/k", Initrd: "/i", Size: size + 512}, raw+"2"))
	_, err = os.Stat(raw + "2")
	require.ErrorIs(t, err, os.ErrNotExist)
}

// debianMarker is what the seed's user-data prints on the console (no
// ": ", which would make the runcmd line a YAML mapping).
const debianMarker = "VMM-CLOUD-INIT user-data ran"

// nocloudSeed writes a NoCloud seed (a FAT32 volume labelled cidata, as
// cloud-init's documentation makes with mkfs.vfat) whose user-data prints
// debianMarker on the serial console and powers off.
func nocloudSeed(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	// FAT32 with go-diskfs' one sector a cluster; see debdisk's ESP size.
	const size = 64<<20 - 31*512
	require.NoError(t, f.Truncate(size))
	fsys, err := fat32.Create(file.New(f, false), size, 0, 512, "cidata", true)
	require.NoError(t, err)
	for name, content := range map[string]string{
		"/meta-data": "instance-id: vmm-debian-test\nlocal-hostname: vmmguest\n",
		"/user-data": "#cloud-config\nruncmd:\n  - echo '" + debianMarker + "' > /dev/ttyS0\n" +
			"power_state:\n  mode: poweroff\n  delay: now\n",
	} {
		w, err := fsys.OpenFile(name, os.O_CREATE|os.O_RDWR)
		require.NoError(t, err)
		_, err = w.Write([]byte(content))
		require.NoError(t, err)
		require.NoError(t, w.Close())
	}
}

// TestDebianDiskBootTCG boots the Debian image as a CI job boots a
// distribution's image, under QEMU -M pc with Debian's SeaBIOS and
// software emulation (the reference vmm's own runs are compared with): the
// qcow2 in snapshot mode on virtio-blk and a NoCloud seed. SeaBIOS starts
// GRUB from the BIOS boot partition, GRUB boots the installed kernel from
// the ext4 root, systemd starts cloud-init, which finds the seed, runs its
// user-data (the marker on the console) and powers off: QEMU exits 0, and
// the base image is unchanged. It runs with VMM_E2E=1 or under CI=true.
func TestDebianDiskBootTCG(t *testing.T) {
	if os.Getenv("VMM_E2E") != "1" && os.Getenv("CI") != "true" {
		testenv.Skip(t, "set VMM_E2E=1 to boot the Debian image under QEMU (builds it once: minutes)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cfg := images.Config{}
	qemu, err := images.EnsureQEMU(ctx, cfg)
	if errors.Is(err, images.ErrNoQEMU) {
		testenv.Skip(t, "debian boot test: %v", err)
	}
	require.NoError(t, err)
	img, err := images.DebianDisk(ctx, cfg)
	if errors.Is(err, images.ErrDebianNeedsRoot) {
		testenv.Skip(t, "debian image: %v", err)
	}
	require.NoError(t, err)
	before, err := images.HashPath(img.QCOW2)
	require.NoError(t, err)
	seed := filepath.Join(t.TempDir(), "seed.img")
	nocloudSeed(t, seed)

	bootCtx, bootCancel := context.WithTimeout(ctx, 10*time.Minute)
	defer bootCancel()
	start := time.Now()
	cmd := exec.CommandContext(bootCtx, qemu,
		"-accel", "tcg", "-M", "pc", "-m", "1024", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-drive", "file="+img.QCOW2+",format=qcow2,if=virtio,snapshot=on",
		"-drive", "file="+seed+",format=raw,if=virtio,readonly=on")
	out, err := cmd.CombinedOutput()
	console := string(out)
	require.NoError(t, bootCtx.Err(), "guest did not power off in time; console:\n%s", console)
	require.NoError(t, err, "console:\n%s", console)
	t.Logf("booted, ran the user-data and powered off in %v", time.Since(start))
	last := -1
	for _, want := range []string{"SeaBIOS (version", grubdisk.MenuMarker, grubdisk.LinuxMarker,
		"Linux version " + img.Kernel, debianMarker, "DataSourceNoCloud", "reboot: Power down"} {
		i := strings.Index(console, want)
		require.Greater(t, i, last, "%q missing or out of order; console:\n%s", want, console)
		last = i
	}
	// systemd's getty on the kernel's console, while cloud-init goes on.
	require.Contains(t, console, "vmmguest login:")
	after, err := images.HashPath(img.QCOW2)
	require.NoError(t, err)
	require.Equal(t, before, after, "the base image changed")
}
