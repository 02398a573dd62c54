// Package virtio is the contract between a virtio device model (blk, net,
// console, rng, ...) and the transport that presents it to the guest
// (devices/virtio/pci). A device knows its own feature bits, configuration
// space and queues; the transport owns feature negotiation, the status state
// machine, queue setup, notifications and interrupts.
package virtio

import (
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// DeviceType is the virtio device ID (virtio 1.2 §5).
type DeviceType uint16

// Device IDs of the devices vmm implements.
const (
	TypeNet     DeviceType = 1
	TypeBlock   DeviceType = 2
	TypeConsole DeviceType = 3
	TypeRNG     DeviceType = 4
	TypeBalloon DeviceType = 5
)

// Transport-level feature bits (virtio 1.2 §6). The transport always offers
// VERSION_1; devices add the ring features their queues can honour.
const (
	FeatureIndirectDesc = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FeatureEventIdx     = 1 << 29 // VIRTIO_F_EVENT_IDX
	FeatureVersion1     = 1 << 32 // VIRTIO_F_VERSION_1
	FeatureAccessPlat   = 1 << 33 // VIRTIO_F_ACCESS_PLATFORM (not offered: no IOMMU)
)

// Memory is guest-physical memory as devices see it: a bounds-checked window
// onto RAM. vmm.Memory implements it. Slice fails for any range that is not
// entirely inside one RAM region.
type Memory = queue.Memory

// Interrupt is how an active device signals the driver. All methods are safe
// from any goroutine and never block on the guest.
type Interrupt interface {
	// Queue signals used buffers on queue i. Call it when q.NeedInterrupt()
	// says the driver wants to hear about them.
	Queue(i int)
	// Config signals a change of the device configuration space.
	Config()
	// NeedsReset records that the device hit an unrecoverable driver error
	// (a malformed chain, a bad queue); the transport sets
	// DEVICE_NEEDS_RESET in the status and signals a configuration change.
	// The device must stop using its queues until Reset.
	NeedsReset(err error)
}

// Activation is what a device receives when the driver sets DRIVER_OK.
type Activation struct {
	// Features are the negotiated feature bits (what the device offered and
	// the driver accepted).
	Features uint64
	// Queues has one entry per queue the device declared; an entry is nil
	// when the driver did not enable that queue.
	Queues []*queue.Queue
	// Mem is guest memory, for buffers that chains point at.
	Mem Memory
	// IRQ signals the driver.
	IRQ Interrupt
}

// Device is a virtio device model. The transport calls Activate once the
// driver is ready, Notify whenever the driver kicks a queue, and Reset when
// the driver resets the device (or the VM stops). ReadConfig/WriteConfig may
// be called at any time, from vCPU threads.
type Device interface {
	// Type is the virtio device ID.
	Type() DeviceType
	// Features are the feature bits the device offers, device-specific bits
	// and ring features (FeatureEventIdx, FeatureIndirectDesc) alike. The
	// transport adds FeatureVersion1.
	Features() uint64
	// QueueSizes gives the maximum size of each queue (powers of two,
	// at most queue.MaxSize); its length is the number of queues.
	QueueSizes() []uint16
	// ReadConfig and WriteConfig access the device-specific configuration
	// space at off. Out-of-range bytes read as zero and writes to them are
	// ignored: off and len(data) come from the guest.
	ReadConfig(off uint64, data []byte)
	WriteConfig(off uint64, data []byte)
	// Activate starts the device's work (typically one goroutine per queue
	// or per device). An error leaves the device inactive and makes the
	// transport set DEVICE_NEEDS_RESET.
	Activate(a Activation) error
	// Notify tells the device that the driver made buffers available on
	// queue i. It must not block: it is called from vCPU threads and from
	// the transport's ioeventfd goroutines. It is only called while the
	// device is active.
	Notify(i int)
	// Reset stops all device work and waits for it to finish; after it
	// returns the device touches neither guest memory nor its queues, and
	// returns to its initial state. Reset on an inactive device is a no-op.
	Reset()
}
