package blk

import (
	"errors"
	"log/slog"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// QueueSize is the size of the device's one request queue.
const QueueSize = 256

// Device presents a Disk as a virtio block device. Requests are served on
// one goroutine per activation, never on the vCPU thread that notifies.
type Device struct {
	disk *Disk
	log  *slog.Logger
	w    virtio.Worker
}

// NewDevice wraps disk; the device does not own it (close it after the VM stops).
func NewDevice(disk *Disk, log *slog.Logger) *Device {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Device{disk: disk, log: log}
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeBlock }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	return d.disk.Features() | virtio.FeatureEventIdx | virtio.FeatureIndirectDesc
}

// QueueSizes implements virtio.Device.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off uint64, data []byte) { d.disk.ReadConfig(off, data) }

// WriteConfig implements virtio.Device; nothing is writable (no CONFIG_WCE:
// the cache is always write-back and flushed on request).
func (d *Device) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device.
func (d *Device) Activate(a virtio.Activation) error {
	if len(a.Queues) != 1 || a.Queues[0] == nil {
		return errors.New("virtio-blk: the driver did not enable the request queue")
	}
	return d.w.Start("virtio-blk", a, nil, func(r *virtio.Run) error {
		r.Serve(0, a.Queues[0], func(c queue.Chain) (uint32, error) {
			return d.disk.Process(segments(c)), nil
		})
		return nil
	})
}

// Notify implements virtio.Device; it never blocks.
func (d *Device) Notify(i int) { d.w.Notify(i) }

// Reset implements virtio.Device: it waits for the request in progress.
func (d *Device) Reset() { d.w.Reset() }

// segments flattens a walked chain into the ordered form Process takes.
func segments(c queue.Chain) []Segment {
	s := make([]Segment, 0, len(c.Readable)+len(c.Writable))
	for _, b := range c.Readable {
		s = append(s, Segment{Buf: b})
	}
	for _, b := range c.Writable {
		s = append(s, Segment{Buf: b, Writable: true})
	}
	return s
}
