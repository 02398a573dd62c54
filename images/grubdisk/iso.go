package grubdisk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// ISO paths: GRUB's El Torito image and the boot catalog live where
// grub-mkrescue puts them; the kernel, initrd and grub.cfg where the disk
// has them, so GrubConfig serves both.
const (
	ISOBootImage   = "/boot/grub/i386-pc/eltorito.img"
	ISOBootCatalog = "/boot/grub/boot.cat"
	isoBlockSize   = 2048
	// isoPadding is appended to every image, as mkisofs and xorriso pad by
	// default: GRUB's cdboot reads whole sectors from the one after its
	// own, so from a boot image that ends the image it reads one sector
	// past the end, and the drive rightly refuses.
	isoPadding = 300 << 10
)

// ISOModules are linked into the El Torito core image: CD access through
// the BIOS, the ISO 9660 filesystem, and what Modules has for the rest.
func ISOModules() []string {
	return []string{"biosdisk", "iso9660", "linux", "normal", "serial", "terminal", "configfile", "echo", "test"}
}

// BuildISO writes a BIOS-bootable ISO 9660 image to out, laid out as
// grub-mkrescue lays out its BIOS half, without xorriso: core.img made
// with grub-mkimage -O i386-pc-eltorito (cdboot.img in front) as a
// no-emulation El Torito entry with a boot information table (cdboot
// reads the rest of core.img from the table's location and length), 4
// sectors loaded by the firmware; prefix /boot/grub on the boot CD.
// Rock Ridge keeps the names lower case for GRUB and Linux alike.
func BuildISO(ctx context.Context, t Tools, s Spec, out string) error {
	grubCfg, err := GrubConfig(s.Cmdline)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(out), ".grubiso-")
	if err != nil {
		return fmt.Errorf("grubdisk: %w", err)
	}
	defer os.RemoveAll(work)

	coreFile, err := coreImage(ctx, t, t.ModDir, work, "i386-pc-eltorito", "/boot/grub", ISOModules())
	if err != nil {
		return err
	}
	entries, err := readFiles(map[string]string{
		ISOBootImage:       coreFile,
		"/boot/vmlinuz":    s.Kernel,
		"/boot/initrd.img": s.Initrd,
	})
	if err != nil {
		return err
	}
	entries["/boot/grub/grub.cfg"] = grubCfg
	boot := &iso9660.ElToritoEntry{Platform: iso9660.BIOS, Emulation: iso9660.NoEmulation,
		BootFile: ISOBootImage, BootTable: true}
	boot.SetLoadSize(4)
	return WriteISO(out, filepath.Join(work, "iso"), "VMMBOOT", entries,
		&iso9660.ElTorito{BootCatalog: ISOBootCatalog, HideBootCatalog: true, Entries: []*iso9660.ElToritoEntry{boot}})
}

// WriteISO writes an ISO 9660 image with Rock Ridge to out holding files
// (absolute paths to contents), staged under workspace; et, when not nil,
// makes it El Torito bootable.
func WriteISO(out, workspace, volume string, files map[string][]byte, et *iso9660.ElTorito) error {
	if err := os.MkdirAll(workspace, 0o755); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	fsys, err := iso9660.Create(file.New(f, false), 0, 0, isoBlockSize, workspace)
	if err != nil {
		f.Close()
		return fmt.Errorf("iso %s: %w", out, err)
	}
	if err := writeFiles(fsys, files); err != nil {
		f.Close()
		return fmt.Errorf("iso %s: %w", out, err)
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: volume, ElTorito: et}); err != nil {
		f.Close()
		return fmt.Errorf("iso %s: finalize: %w", out, err)
	}
	fi, err := f.Stat()
	if err == nil {
		err = f.Truncate(fi.Size() + isoPadding)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("iso %s: pad: %w", out, err)
	}
	return nil
}
