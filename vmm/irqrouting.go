package vmm

import "github.com/vmmdev/vmm/vmm/kvm"

// ioapicPins is the number of inputs of the in-kernel IOAPIC.
const ioapicPins = 24

// pcIRQRouting is the GSI routing of a PC: ISA IRQs 0-15 go to the two 8259s,
// and GSIs to the IOAPIC pins of the same number, except that the PIT's IRQ 0
// arrives on IOAPIC pin 2 (the cascade input, which has no GSI of its own).
// The MP table and the MADT's interrupt source override describe exactly
// this; KVM's default routing would put IRQ 0 on pin 0 instead.
func pcIRQRouting() []kvm.IRQRoute {
	var routes []kvm.IRQRoute
	chip := func(gsi, irqchip, pin uint32) {
		routes = append(routes, kvm.IRQRoute{GSI: gsi, Type: kvm.IRQRoutingIRQChip, IRQChip: irqchip, Pin: pin})
	}
	for i := uint32(0); i < 16; i++ {
		switch {
		case i == 2:
		case i < 8:
			chip(i, kvm.IRQChipPICMaster, i)
		default:
			chip(i, kvm.IRQChipPICSlave, i-8)
		}
	}
	for i := uint32(0); i < ioapicPins; i++ {
		switch i {
		case 0:
			chip(0, kvm.IRQChipIOAPIC, 2)
		case 2:
		default:
			chip(i, kvm.IRQChipIOAPIC, i)
		}
	}
	return routes
}
