// Package images builds what the end-to-end tests boot: Debian's kernel and
// modules, the guest initramfs (the guest agent as /init) and the pieces the
// outer "nested test host" initramfs is assembled from. Artifacts live under
// build/images at the module root and are rebuilt only when their inputs
// change.
//
// API (everything takes a Config; its zero value means the defaults):
//
//	Kernel(ctx, cfg) (*KernelArtifacts, error)
//	    apt-get download + dpkg -x of the versioned Debian kernel (never
//	    installed). Result: Vmlinuz, ConfigFile, Version (uname -r),
//	    ModulesRoot (holds lib/modules/<Version>/ with cfg.Modules and their
//	    dependencies, uncompressed, and a modules.dep for them).
//	ModuleClosure(root, version, names...) ([]string, error)
//	    absolute .ko paths of names + dependencies, in load order.
//	ModuleEntries(k, names...) ([]Entry, error)
//	    initramfs entries for those modules at lib/modules/<Version>/ plus
//	    a modules.dep of exactly them: modload.LoadAll then loads them all.
//	WriteInitramfs(path, entries) error
//	    deterministic newc cpio, gzip'd if path ends in ".gz". Entries:
//	    File, HostFile, Dir, Symlink, CharDev, HostTree; parents are added.
//	BaseEntries() []Entry
//	    dev/console, dev/null and the usual mount points.
//	BuildGo(ctx, pkg, out) error          static (CGO_ENABLED=0) go build
//	GoBinary(ctx, cfg, pkg, name) (string, error)
//	    BuildGo into <Out>/bin/<name>, cached by SourceKey(pkg).
//	SourceKey(ctx, pkgs...) (string, error)
//	    hash of all module sources and dependency versions of pkgs.
//	Cached(artifact, key, build func(tmp string) error) (rebuilt bool, err error)
//	    the content cache: <artifact>.stamp holds {key, sha256}; reuse only
//	    if both match, else build into tmp (same suffix) and move in place.
//	KeyOf(parts...) string, HashPath(path) (string, error), EntriesKey(tag, entries)
//	GuestInitramfs(ctx, cfg, k) (string, error)   -> <Out>/guest.cpio.gz
//	Vmlinux(ctx, cfg, k) (string, error)          -> <Out>/vmlinux
//	    the ELF kernel unpacked from k's bzImage (its XZ payload, found by
//	    the setup header: BzImagePayload), cached by the bzImage's hash;
//	    vmm boots it by PVH, skipping the guest's own decompression.
//	GrubTools(ctx, cfg) (grubdisk.Tools, error)
//	    GrubPackages (grub-pc-bin, grub-common, grub-efi-amd64-bin,
//	    grub-efi-amd64-signed, shim-signed) unpacked into <Out>/grub.
//	GrubDisk(ctx, cfg, k, initrd, cmdline) (string, error)  -> <Out>/grub-disk.img
//	GrubISO(ctx, cfg, k, initrd, cmdline) (string, error)   -> <Out>/grub.iso
//	    what SeaBIOS boots: MBR disk and El Torito CD (images/grubdisk).
//	GrubEFIDisk(ctx, cfg, k, initrd, cmdline, boot) (string, error)
//	    -> <Out>/grub-efi-<boot>.img, what OVMF boots: GPT disk with a FAT32
//	    EFI system partition; boot is grubdisk.EFIGrub (plain GRUB),
//	    EFIShim (Debian's signed shim and GRUB, for Secure Boot) or
//	    EFIUnsigned (that layout with an unsigned BOOTX64.EFI).
//	EnsureQEMU(ctx, cfg) (string, error)
//	    path of qemu-system-x86_64, apt-get installing it when missing and root.
//	PatchedQEMU(ctx, cfg, install) (*PatchedQEMUBuild, error)
//	    the nested test host's QEMU: Debian's source of the installed
//	    qemu-system-x86 with qemu/cr8-bql.patch, built once per machine into
//	    <Cache>/outer-qemu-<key> (Cache: ~/.cache/vmm, outside the clone).
//	DebianDisk(ctx, cfg) (*DebianImage, error)
//	    a full Debian 12 system (debootstrap minbase + DebianPackages:
//	    systemd, linux-image-amd64, cloud-init, hyperv-daemons, GRUB for
//	    BIOS and EFI; needs root) on one GPT disk laid out by
//	    images/debdisk (BIOS boot, ESP, ext4 root), as a qcow2 in
//	    <Cache>/debian-12/disk.qcow2 with packages.txt (installed versions).
//
// In-guest helpers: package images/moddep (modules.dep parsing and load
// order) and images/modload (finit_module loader: modload.LoadAll(dir, nil)
// with dir = /lib/modules/<uname -r>; modload.Dir() returns it).
//
// Debian 12's kernel ships no modules.dep (depmod writes it when installed),
// so Kernel reads each module's .modinfo "depends=" like depmod does.
package images
