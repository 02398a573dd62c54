package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmmdev/vmm/images/grubdisk"
)

// IPXEEFI is Debian's iPXE for UEFI (package ipxe): it carries iPXE's own
// Hyper-V, VMBus and netvsc drivers.
const IPXEEFI = "/usr/lib/ipxe/ipxe.efi"

// OuterIPXEDisk is where the outer initramfs carries IPXEDisk.
const OuterIPXEDisk = "/guest/ipxe-efi.img"

// IPXEDisk builds <Out>/ipxe-efi.img, a GPT disk whose EFI system
// partition boots IPXEEFI from the removable-media path; rebuilt when
// iPXE changes.
func IPXEDisk(ctx context.Context, cfg Config) (string, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(IPXEEFI); err != nil {
		return "", fmt.Errorf("iPXE disk (install ipxe): %w", err)
	}
	sum, err := HashPath(IPXEEFI)
	if err != nil {
		return "", fmt.Errorf("iPXE disk: %w", err)
	}
	out := filepath.Join(cfg.Out, "ipxe-efi.img")
	rebuilt, err := Cached(out, KeyOf("ipxe-efi-v1", sum), func(tmp string) error { return grubdisk.BuildEFIApp(IPXEEFI, tmp) })
	if err != nil {
		return "", err
	}
	cfg.Log.Info("iPXE disk ready", "path", out, "rebuilt", rebuilt)
	return out, nil
}
