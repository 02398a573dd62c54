// Package layout is the guest-physical memory map of the vmm platform: where the
// VMM puts boot structures, tables and devices. Every package that writes into
// guest memory takes its addresses from here so that nothing overlaps.
package layout

const (
	// RealModeIVTEnd is the end of the real-mode interrupt vector table and BIOS data area.
	RealModeIVTEnd = 0x500

	// BootGDT is the GDT the VMM builds for protected- and long-mode entries.
	BootGDT = 0x500
	// BootIDT is an empty IDT (limit 0) loaded before entry; one zeroed
	// 8-byte entry is written, up to BootIDTEnd.
	BootIDT    = 0x520
	BootIDTEnd = 0x528

	// BootInfo holds the boot protocol's info block: the PVH start_info or the
	// multiboot information structure, with its memory map and module list (one page).
	BootInfo = 0x6000
	// ZeroPage is the Linux boot_params ("zero page").
	ZeroPage = 0x7000

	// PML4 and the following pages are the identity-mapping page tables used for
	// 64-bit entry: PML4, one PDPT, four page directories of 2 MiB pages (4 GiB).
	PML4 = 0x9000
	PDPT = 0xa000
	PD   = 0xb000 // four consecutive pages: 0xb000..0xefff

	// Cmdline is where the kernel command line is copied.
	Cmdline = 0x20000
	// CmdlineMax bounds the command line area (including the NUL).
	CmdlineMax = 0x10000

	// EBDA is the start of the extended BIOS data area; usable conventional memory ends here.
	EBDA = 0x9fc00
	// LowRAMEnd is where usable conventional memory ends.
	LowRAMEnd = EBDA

	// VGAHole starts the legacy VGA / option ROM / BIOS area (reserved, 0xa0000-0xfffff).
	VGAHole = 0xa0000
	// ACPITables is where the RSDP and ACPI tables are placed (inside the BIOS
	// area that Linux scans for the RSDP, 0xe0000-0xfffff).
	ACPITables = 0xe0000
	// ACPITablesEnd bounds the ACPI area.
	ACPITablesEnd = 0xf0000
	// MPTable is where the Intel MultiProcessor floating pointer and
	// configuration table go: the BIOS area Linux scans, with room for many CPUs.
	MPTable    = 0xf0000
	MPTableEnd = ResetVector
	// ResetVector is where a CPU starts after reset (F000:FFF0). vmm puts a
	// stub there that resets the machine, as a BIOS would: Linux jumps to it
	// when its other reboot methods return (on a hardware-reduced ACPI
	// platform it prefers EFI, then the BIOS, over the keyboard controller).
	ResetVector = 0xffff0

	// HighMemory is the first byte above 1 MiB; protected-mode kernels load here.
	HighMemory = 0x100000

	// MMIOHoleStart and MMIOHoleEnd bound the 32-bit hole below 4 GiB reserved for
	// device MMIO, the IOAPIC, the LAPIC and firmware. RAM that does not fit below
	// it continues at 4 GiB.
	MMIOHoleStart = 0xc0000000
	MMIOHoleEnd   = 0x100000000

	// PCIMMIOBase and PCIMMIOEnd bound the window the VMM places 32-bit PCI
	// memory BARs in (and that the DSDT's root bridge offers the OS), the
	// first half of the hole.
	PCIMMIOBase = 0xc0000000
	PCIMMIOEnd  = 0xe0000000
	// PCIIOBase and PCIIOEnd bound the ports the VMM places I/O BARs in
	// (where SeaBIOS and OVMF put them on i440FX too).
	PCIIOBase = 0xc000
	PCIIOEnd  = 0x10000
	// PCIECAMBase is the PCI Express enhanced configuration window for bus 0
	// (MCFG); PCIECAMSize covers one bus (32 devices x 8 functions x 4 KiB).
	PCIECAMBase = 0xe0000000
	PCIECAMSize = 0x100000

	// IOAPICBase and LAPICBase are the architectural interrupt controller windows.
	IOAPICBase = 0xfec00000
	LAPICBase  = 0xfee00000

	// KVMTSSAddr is the three pages KVM needs for its real-mode TSS (Intel); the
	// identity map page follows it. Both sit in the hole, away from RAM.
	KVMTSSAddr      = 0xfeffd000
	KVMIdentityAddr = 0xfeffc000
)

// Ports of the platform's legacy devices.
const (
	PortDebugExit = 0xf4
	PortCOM1      = 0x3f8
	PortI8042     = 0x60 // and 0x64
	PortCMOS      = 0x70 // and 0x71
	// PortPCIConfig is PCI configuration mechanism #1: address at 0xCF8,
	// data at 0xCFC-0xCFF.
	PortPCIConfig = 0xcf8
	IRQCOM1       = 4
	IRQRTC        = 8
	// The ACPI hardware-reduced sleep control/status registers and the reset
	// register named by the FADT, one byte each.
	PortSleepControl = 0x3c0
	PortSleepStatus  = 0x3c1
	PortReset        = 0x3c2
	// ResetValue is what the guest writes to PortReset to reset (FADT RESET_VALUE).
	ResetValue = 0x01
	// SleepTypeS5 is the SLP_TYP value the DSDT's \_S5 package gives for soft-off.
	SleepTypeS5 = 5
	// SleepTypeS3 is the \_S3 package's SLP_TYP for suspend to RAM: 1, as
	// QEMU's PIIX4 DSDT gives it and its PM1 control takes it.
	SleepTypeS3 = 1
	// PortFWCfg is QEMU's fw_cfg, in every boot mode: selector 0x510, data
	// 0x511, DMA address 0x514-0x51b.
	PortFWCfg = 0x510
	// PortPVPanic is QEMU's ISA pvpanic port (ACPI device QEMU0001).
	PortPVPanic = 0x505
	// SCIIRQ is the ACPI system control interrupt.
	SCIIRQ = 9
	// QEMU's pc-testdev (--testdev): two windows onto one scratch register
	// (0xe0-0xe3, 0xe8-0xeb), the flush-page port (0xe4) and one port per
	// ISA IRQ line (0x2000-0x2017).
	PortTestdevScratch     = 0xe0
	PortTestdevFlush       = 0xe4
	PortTestdevByteScratch = 0xe8
	PortTestdevIRQ         = 0x2000
	// PortHyperVTestdev is QEMU's hyperv-testdev control port (--testdev
	// with --hyperv synic).
	PortHyperVTestdev = 0x3000
)

// TestdevMMIO is pc-testdev's 64 KiB RAM-like MMIO window, where QEMU puts it.
// It sits in the MMIO hole above the KVM TSS and identity pages; a firmware
// image reaches down to it only at layout.FirmwareMaxSize (16 MiB), which
// Config.Validate refuses with --testdev.
const TestdevMMIO = 0xff000000
