package layout

// The PC platform firmware (--firmware) expects, on top of the direct-boot map.
const (
	// PortFirmwareDebug is the debug console SeaBIOS logs to.
	PortFirmwareDebug = 0x402
	// PortPMBase is where the firmware places the PIIX4 PM block (SeaBIOS
	// always moves it to 0x600, as QEMU's own ACPI tables assume).
	PortPMBase = 0x600
	// PortPMBaseOVMF is where OVMF places it on an i440FX (PlatformPei
	// writes PMBA itself, and its ResetSystem shuts down through
	// PortPMBaseOVMF+4 whatever the ACPI tables say).
	PortPMBaseOVMF = 0xb000
	// PortResetControl is the PIIX3's reset control register (in the
	// configuration ports' range): bit 2 resets, bit 1 makes it a hard
	// reset; OVMF's ResetSystem writes 0x06 there.
	PortResetControl = 0xcf9
	// PortSystemControlA is the PS/2 "port A": A20 gate and fast reset.
	PortSystemControlA = 0x92

	// LegacyVGA is the VGA frame buffer window, 0xa0000-0xbffff: answered
	// harmlessly (reads all ones, writes dropped) when there is no display.
	LegacyVGA    = 0xa0000
	LegacyVGAEnd = 0xc0000
	// ShadowStart and ShadowEnd bound the option ROM and BIOS area whose
	// 16 KiB / 64 KiB segments the i440FX PAM registers switch between
	// RAM and ROM.
	ShadowStart = 0xc0000
	ShadowEnd   = 0x100000
	// BIOSAlias is where the last 128 KiB of the firmware image also
	// appears below 1 MiB.
	BIOSAlias     = 0xe0000
	BIOSAliasSize = ShadowEnd - BIOSAlias

	// FirmwareTop is where the firmware image ends: it is mapped read-only
	// just below 4 GiB so the reset vector 0xfffffff0 lands in it.
	FirmwareTop = 0x100000000
	// FirmwareMaxSize keeps the image clear of the KVM TSS and identity pages.
	FirmwareMaxSize = 16 << 20
)
