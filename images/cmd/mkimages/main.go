// Command mkimages builds the images the end-to-end tests boot, under
// build/images by default: Debian's kernel and modules, the guest initramfs
// (guest agent as /init), the GRUB disk that boots them through firmware
// (images/grubdisk) and, unless -outer=false, the nested test host's
// outer initramfs with vmm and the e2e suite's scenarios; with -debian
// also the full Debian system image (images.DebianDisk, in ~/.cache/vmm;
// needs root). Each artifact is rebuilt only when its inputs change.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/vmmdev/vmm/e2e"
	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/testhost"
)

type options struct {
	out     string
	outer   bool
	debian  bool
	timeout time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mkimages", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", "", "artifact directory (default <module root>/build/images)")
	fs.BoolVar(&o.outer, "outer", true, "also build the outer initramfs (builds ./cmd/vmm; needs qemu-system-x86_64, installed when missing and root)")
	fs.BoolVar(&o.debian, "debian", false, "also build the Debian system image (debootstrap; needs root; cached in ~/.cache/vmm)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "deadline for the whole build")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimages:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, o, images.Config{Out: o.out, Log: log}, os.Stdout); err != nil {
		log.Error("mkimages failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, cfg images.Config, stdout io.Writer) error {
	k, err := images.Kernel(ctx, cfg)
	if err != nil {
		return err
	}
	guest, err := images.GuestInitramfs(ctx, cfg, k)
	if err != nil {
		return err
	}
	vmlinux, err := images.Vmlinux(ctx, cfg, k)
	if err != nil {
		return err
	}
	disk, err := images.GrubDisk(ctx, cfg, k, guest, testhost.FirmwareGuest().Cmdline())
	if err != nil {
		return fmt.Errorf("grub disk: %w", err)
	}
	iso, err := images.GrubISO(ctx, cfg, k, guest, testhost.FirmwareGuest().Cmdline())
	if err != nil {
		return fmt.Errorf("grub iso: %w", err)
	}
	fmt.Fprintf(stdout, "kernel=%s\nvmlinux=%s\nversion=%s\nmodules=%s\nguest=%s\ngrubdisk=%s\ngrubiso=%s\n", k.Vmlinuz, vmlinux, k.Version, k.ModulesRoot, guest, disk, iso)
	if o.debian {
		img, err := images.DebianDisk(ctx, cfg)
		if err != nil {
			return fmt.Errorf("debian image: %w", err)
		}
		fmt.Fprintf(stdout, "debian=%s\n", img.QCOW2)
	}
	if !o.outer {
		return nil
	}
	scenarios, err := e2e.Scenarios()
	if err != nil {
		return fmt.Errorf("e2e scenarios: %w", err)
	}
	suite := testhost.Suite{Config: cfg, Scenarios: scenarios, InstallQEMU: os.Geteuid() == 0}
	m, err := suite.Prepare(ctx)
	if err != nil {
		return fmt.Errorf("outer initramfs: %w", err)
	}
	fmt.Fprintf(stdout, "outer=%s\n", m.Initrd)
	return nil
}
