package e2e

import "github.com/vmmdev/vmm/images/testhost"

// GrubGuest is the guest that the GRUB disk (images/grubdisk, built by
// mkimages as grub-disk.img) boots through firmware: its command line is
// baked into the disk's grub.cfg, so the firmware scenario's expected
// checks and the disk come from this one place. acpi: dmesg must hold no
// complaint about the tables firmware handed over.
func GrubGuest() testhost.Guest {
	return testhost.Guest{Quiet: true, Checks: []string{"boot", "cpus", "acpi"}}
}
