// Command mkimages builds the images the end-to-end tests boot: Debian's
// kernel and modules and the guest initramfs, under build/images by default.
// Each artifact is rebuilt only when its inputs change.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/vmmdev/vmm/images"
)

func main() {
	out := flag.String("out", "", "artifact directory (default <module root>/build/images)")
	timeout := flag.Duration("timeout", 30*time.Minute, "deadline for the whole build")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimages [-out DIR] [-timeout DUR]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, images.Config{Out: *out, Log: log}); err != nil {
		log.Error("mkimages failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg images.Config) error {
	k, err := images.Kernel(ctx, cfg)
	if err != nil {
		return err
	}
	guest, err := images.GuestInitramfs(ctx, cfg, k)
	if err != nil {
		return err
	}
	fmt.Printf("kernel=%s\nversion=%s\nmodules=%s\nguest=%s\n", k.Vmlinuz, k.Version, k.ModulesRoot, guest)
	return nil
}
