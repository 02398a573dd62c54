package kvm

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GSI routing entry types (KVM_IRQ_ROUTING_*).
const (
	IRQRoutingIRQChip uint32 = 1
	IRQRoutingMSI     uint32 = 2
)

// In-kernel irqchips a GSI can be routed to (KVM_IRQCHIP_*).
const (
	IRQChipPICMaster uint32 = 0
	IRQChipPICSlave  uint32 = 1
	IRQChipIOAPIC    uint32 = 2
)

// IRQRouteValidDevID marks an MSI route whose DevID is meaningful (KVM_MSI_VALID_DEVID).
const IRQRouteValidDevID uint32 = 1 << 0

// IRQRoute is one GSI routing entry in Go form. IRQChip and Pin apply to
// IRQRoutingIRQChip routes; AddressLo/Hi, Data and DevID to IRQRoutingMSI ones.
type IRQRoute struct {
	GSI   uint32
	Type  uint32
	Flags uint32

	IRQChip, Pin uint32

	AddressLo, AddressHi, Data, DevID uint32
}

// ErrInvalidRoute is wrapped by SetGSIRouting for route types this package cannot encode.
var ErrInvalidRoute = errors.New("kvm: unsupported GSI route type")

// routingEntryWords is the size of one kvm_irq_routing_entry in uint64 words.
const routingEntryWords = int(unsafe.Sizeof(kvmIRQRoutingEntry{}) / 8)

// encodeGSIRouting builds struct kvm_irq_routing in a []uint64 (8-byte
// aligned, as the kernel's entry union is).
func encodeGSIRouting(routes []IRQRoute) ([]uint64, error) {
	buf := make([]uint64, 1+len(routes)*routingEntryWords)
	(*kvmIRQRoutingHeader)(unsafe.Pointer(&buf[0])).NR = uint32(len(routes))
	if len(routes) == 0 {
		return buf, nil
	}
	entries := unsafe.Slice((*kvmIRQRoutingEntry)(unsafe.Pointer(&buf[1])), len(routes))
	for i, r := range routes {
		e := &entries[i]
		e.GSI, e.Type, e.Flags = r.GSI, r.Type, r.Flags
		switch r.Type {
		case IRQRoutingIRQChip:
			e.U[0], e.U[1] = r.IRQChip, r.Pin
		case IRQRoutingMSI:
			e.U[0], e.U[1], e.U[2], e.U[3] = r.AddressLo, r.AddressHi, r.Data, r.DevID
		default:
			return nil, fmt.Errorf("route %d (GSI %d): type %d: %w", i, r.GSI, r.Type, ErrInvalidRoute)
		}
	}
	return buf, nil
}

// SetGSIRouting replaces the VM's whole GSI routing table (KVM_SET_GSI_ROUTING).
// The table replaces the default one KVM_CREATE_IRQCHIP installs, so callers
// that still use IRQLine must include the PIC and IOAPIC routes they need.
func (vm *VM) SetGSIRouting(routes []IRQRoute) error {
	buf, err := encodeGSIRouting(routes)
	if err != nil {
		return fmt.Errorf("KVM_SET_GSI_ROUTING: %w", err)
	}
	if _, err := ioctlPtr(vm.fd, kvmSetGSIRouting, unsafe.Pointer(&buf[0])); err != nil {
		return fmt.Errorf("KVM_SET_GSI_ROUTING (%d routes): %w", len(routes), err)
	}
	return nil
}

// vCPU device attribute groups and attributes (arch/x86/include/uapi/asm/kvm.h).
const (
	// VCPUTSCCtrl is KVM_VCPU_TSC_CTRL, the vCPU TSC control group.
	VCPUTSCCtrl uint32 = 0
	// VCPUTSCOffset is KVM_VCPU_TSC_OFFSET: guest TSC = host TSC + offset (u64, two's complement).
	VCPUTSCOffset uint64 = 0
)

// deviceAttr issues a device-attribute ioctl. val, when non-nil, is handed
// to the kernel as an integer address inside the struct, which the GC cannot
// see: pinning keeps it allocated and in place (and on the heap, not on a
// stack that could move) until the ioctl returns.
func deviceAttr(fd int, req uintptr, name string, group uint32, attr uint64, val *uint64) error {
	a := kvmDeviceAttr{Group: group, Attr: attr}
	var pin runtime.Pinner
	defer pin.Unpin()
	if val != nil {
		pin.Pin(val)
		a.Addr = uint64(uintptr(unsafe.Pointer(val)))
	}
	if _, err := ioctlPtr(fd, req, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("%s group %d attr %d: %w", name, group, attr, err)
	}
	return nil
}

// HasDeviceAttr reports whether the vCPU supports an attribute (KVM_HAS_DEVICE_ATTR).
func (v *VCPU) HasDeviceAttr(group uint32, attr uint64) (bool, error) {
	err := deviceAttr(v.fd, kvmHasDeviceAttr, "KVM_HAS_DEVICE_ATTR", group, attr, nil)
	if errors.Is(err, unix.ENXIO) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("vCPU %d: %w", v.id, err)
	}
	return true, nil
}

// GetDeviceAttr reads a 64-bit vCPU attribute (KVM_GET_DEVICE_ATTR), such as
// (VCPUTSCCtrl, VCPUTSCOffset).
func (v *VCPU) GetDeviceAttr(group uint32, attr uint64) (uint64, error) {
	val := new(uint64)
	if err := deviceAttr(v.fd, kvmGetDeviceAttr, "KVM_GET_DEVICE_ATTR", group, attr, val); err != nil {
		return 0, fmt.Errorf("vCPU %d: %w", v.id, err)
	}
	return *val, nil
}

// SetDeviceAttr writes a 64-bit vCPU attribute (KVM_SET_DEVICE_ATTR).
func (v *VCPU) SetDeviceAttr(group uint32, attr uint64, val uint64) error {
	if err := deviceAttr(v.fd, kvmSetDeviceAttr, "KVM_SET_DEVICE_ATTR", group, attr, &val); err != nil {
		return fmt.Errorf("vCPU %d: %w", v.id, err)
	}
	return nil
}
