package acpi

import "github.com/vmmdev/vmm/firmware/acpi/aml"

// VMBusIRQ is the ISA IRQ the VMBus device's _CRS names, as QEMU's: x86
// Linux ignores it (VMBus interrupts come through the SynIC), but it walks
// _CRS and refuses the device without one (vmbus_drv.c vmbus_acpi_add).
const VMBusIRQ = 7

// VMBusDevice is the ACPI device through which Linux finds VMBus
// (hv_vmbus binds _HID "VMBUS"; ACPICA upper-cases Hyper-V's "VMBus" to that too). It belongs directly under \_SB: Linux
// also walks the ancestors' _CRS for an MMIO pool, and \_SB has none.
func VMBusDevice() aml.Term {
	return aml.Device("VMBS",
		aml.Name("_HID", aml.String("VMBUS")),
		aml.Name("_UID", aml.Zero),
		aml.Name("_CRS", aml.ResourceTemplate(aml.IRQNoFlags(VMBusIRQ))),
		aml.Method("_STA", 0, false, aml.Return(aml.Int(0x0f))),
	)
}
