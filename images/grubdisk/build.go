package grubdisk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Tools are the external programs and GRUB files Build uses.
type Tools struct {
	// Mkimage is grub-mkimage (Debian's grub-common); ModDir its i386-pc
	// module directory with boot.img (Debian's grub-pc-bin,
	// /usr/lib/grub/i386-pc), EFIModDir its x86_64-efi one (Debian's
	// grub-efi-amd64-bin, /usr/lib/grub/x86_64-efi).
	Mkimage, ModDir, EFIModDir string
	// SignedGrub is Debian's grubx64.efi signed by Debian
	// (grub-efi-amd64-signed), Shim Debian's shimx64.efi signed by
	// Microsoft (shim-signed): the Secure Boot chain BuildEFI lays out.
	SignedGrub, Shim string
	// Mke2fs is mke2fs from e2fsprogs (1.43+ for -d).
	Mke2fs string
}

// Spec is what the disk boots.
type Spec struct {
	// Kernel and Initrd are host paths copied to /boot/vmlinuz and
	// /boot/initrd.img.
	Kernel, Initrd string
	// Cmdline is the kernel command line grub.cfg passes.
	Cmdline string
}

// signature is the MBR disk signature: fixed, so equal inputs give equal disks.
const signature = 0x216d6d76 // "vmm!" on disk

// coreImage builds GRUB's core image of format (grub-mkimage -O) from the
// modules in modDir into work, with the early configuration, prefix and
// modules given; it returns the image's path. The BIOS disk, the ISO and
// the EFI disk differ only in these.
func coreImage(ctx context.Context, t Tools, modDir, work, format, prefix string, modules []string) (string, error) {
	early := filepath.Join(work, "early.cfg")
	if err := os.WriteFile(early, EarlyConfig(), 0o644); err != nil {
		return "", fmt.Errorf("grubdisk: %w", err)
	}
	core := filepath.Join(work, format+".img")
	args := append([]string{"-O", format, "-d", modDir, "-o", core, "-c", early, "-p", prefix}, modules...)
	if err := run(ctx, t.Mkimage, nil, args...); err != nil {
		return "", err
	}
	return core, nil
}

// Build writes the bootable raw disk image to out.
func Build(ctx context.Context, t Tools, s Spec, out string) error {
	grubCfg, err := GrubConfig(s.Cmdline)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(out), ".grubdisk-")
	if err != nil {
		return fmt.Errorf("grubdisk: %w", err)
	}
	defer os.RemoveAll(work)

	coreFile, err := coreImage(ctx, t, t.ModDir, work, "i386-pc", Prefix, Modules())
	if err != nil {
		return err
	}
	core, err := os.ReadFile(coreFile)
	if err != nil {
		return fmt.Errorf("grubdisk: %w", err)
	}
	core, err = PatchCore(core, 1, PartitionStart)
	if err != nil {
		return err
	}

	root := filepath.Join(work, "root")
	for dst, src := range map[string]string{"boot/vmlinuz": s.Kernel, "boot/initrd.img": s.Initrd} {
		if err := copyFile(src, filepath.Join(root, dst)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "boot", "grub"), 0o755); err != nil {
		return fmt.Errorf("grubdisk: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "boot", "grub", "grub.cfg"), grubCfg, 0o644); err != nil {
		return fmt.Errorf("grubdisk: %w", err)
	}
	if err := fixTimes(root); err != nil {
		return err
	}
	size, err := FSSize(root)
	if err != nil {
		return err
	}
	fsFile := filepath.Join(work, "fs.img")
	// 4 KiB blocks, no reserved blocks, fixed UUID and hash seed so equal
	// inputs give equal filesystems apart from timestamps.
	const uuid = "766d6d00-6772-7562-6469-736b00000001"
	if err := run(ctx, t.Mke2fs, []string{"E2FSPROGS_FAKE_TIME=" + strconv.Itoa(epochUnix)}, "-q", "-F", "-t", "ext2", "-b", "4096", "-m", "0", "-L", "vmmboot",
		"-U", uuid, "-E", "hash_seed="+uuid+",root_owner=0:0", "-d", root, fsFile, strconv.FormatUint(size>>10, 10)+"k"); err != nil {
		return err
	}

	bootImg, err := os.ReadFile(filepath.Join(t.ModDir, "boot.img"))
	if err != nil {
		return fmt.Errorf("grubdisk: %w", err)
	}
	mbr, err := MBR(bootImg, 1, signature,
		Partition{Bootable: true, Type: 0x83, StartLBA: PartitionStart, Sectors: uint32(size / SectorSize)})
	if err != nil {
		return err
	}
	return assemble(out, mbr, core, fsFile)
}

// epochUnix is the time the filesystem and its files' mtimes and atimes
// carry, so equal inputs give disks that differ only in inode ctimes
// (mke2fs -d copies the host's, which no unprivileged call can set).
const epochUnix = 1700000000

// fixTimes sets the times of every file under root to epochUnix.
func fixTimes(root string) error {
	epoch := time.Unix(epochUnix, 0)
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if err := os.Chtimes(p, epoch, epoch); err != nil {
			return fmt.Errorf("grubdisk: %w", err)
		}
		return nil
	})
}

// FSSize sizes the filesystem for the files under root: their blocks plus
// a quarter and 4 MiB for metadata, in whole MiB.
func FSSize(root string) (uint64, error) {
	var total uint64
	err := filepath.Walk(root, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		total += (uint64(fi.Size()) + 4095) &^ 4095
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("grubdisk: size %s: %w", root, err)
	}
	const mib = 1 << 20
	return (total + total/4 + 4*mib + mib - 1) / mib * mib, nil
}

// assemble writes MBR, core.img from LBA 1, zeros up to the partition and
// the filesystem image.
func assemble(out string, mbr, core []byte, fsFile string) error {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("grubdisk: %w", err)
	}
	head := make([]byte, PartitionStart*SectorSize)
	copy(head, mbr)
	copy(head[SectorSize:], core)
	if _, err := f.Write(head); err != nil {
		f.Close()
		return fmt.Errorf("grubdisk: write %s: %w", out, err)
	}
	fs, err := os.Open(fsFile)
	if err != nil {
		f.Close()
		return fmt.Errorf("grubdisk: %w", err)
	}
	defer fs.Close()
	if _, err := io.Copy(f, fs); err != nil {
		f.Close()
		return fmt.Errorf("grubdisk: write %s: %w", out, err)
	}
	return f.Close()
}

// run runs a tool with env added to the environment.
func run(ctx context.Context, name string, env []string, args ...string) error {
	var outBuf bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("grubdisk: %s: %w: %s", filepath.Base(name), err, bytes.TrimSpace(outBuf.Bytes()))
	}
	return nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("grubdisk: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("grubdisk: %w", err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return fmt.Errorf("grubdisk: %w", err)
	}
	return nil
}
