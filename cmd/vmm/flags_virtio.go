package main

import (
	"flag"
	"strings"

	"github.com/vmmdev/vmm/vmm"
)

// virtioFlags are --rng, --balloon and the virtio form of --console.
type virtioFlags struct {
	rng, balloon bool
}

func registerVirtioFlags(fs *flag.FlagSet) *virtioFlags {
	v := &virtioFlags{}
	fs.BoolVar(&v.rng, "rng", false, "add a virtio-rng device (entropy from the host's getrandom)")
	fs.BoolVar(&v.balloon, "balloon", false, "add a virtio-balloon device: memory the guest frees goes back to the host (free page reporting)")
	return v
}

// apply sets the virtio devices in cfg and returns the console destination:
// "--console virtio" makes the guest console a virtio-console (hvc0; boot
// with console=hvc0) on stdio, "--console virtio:DEST" sends it to DEST
// (file:PATH or none). Any other spec is the UART's destination, unchanged.
func (v *virtioFlags) apply(cfg *vmm.Config, console string) string {
	cfg.RNG = v.rng
	cfg.Balloon = v.balloon
	if console == "virtio" {
		cfg.VirtioConsole = true
		return "stdio"
	}
	if dest, ok := strings.CutPrefix(console, "virtio:"); ok {
		cfg.VirtioConsole = true
		return dest
	}
	return console
}
