// Package rng is virtio-rng (virtio 1.2 §5.4): one request queue whose
// device-writable buffers are filled with entropy from the host's getrandom.
package rng

import (
	"fmt"
	"io"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// QueueSize is the request queue's size.
const QueueSize = 64

// maxRequest bounds the bytes served per chain, so one guest request
// cannot make the host produce gigabytes of entropy.
const maxRequest = 64 << 10

// Source fills p with random bytes (unix.Getrandom by default).
type Source func(p []byte) (int, error)

func getrandom(p []byte) (int, error) { return unix.Getrandom(p, 0) }

// Device is a virtio-rng device.
type Device struct {
	src Source
	w   virtio.Worker

	mu     sync.Mutex
	served uint64
}

// New returns a virtio-rng device reading from src (nil: getrandom).
func New(src Source) *Device {
	if src == nil {
		src = getrandom
	}
	return &Device{src: src}
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeRNG }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return virtio.FeatureEventIdx | virtio.FeatureIndirectDesc }

// QueueSizes implements virtio.Device.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device: virtio-rng has no configuration.
func (d *Device) ReadConfig(off uint64, data []byte) { clear(data) }

// WriteConfig implements virtio.Device.
func (d *Device) WriteConfig(off uint64, data []byte) {}

// Served is the number of random bytes handed to the guest.
func (d *Device) Served() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.served
}

// Activate implements virtio.Device.
func (d *Device) Activate(a virtio.Activation) error {
	if len(a.Queues) != 1 || a.Queues[0] == nil {
		return fmt.Errorf("virtio-rng: request queue not enabled")
	}
	return d.w.Start("virtio-rng", a, nil, func(r *virtio.Run) error {
		buf := make([]byte, 4096)
		r.Serve(0, a.Queues[0], func(c queue.Chain) (uint32, error) {
			n, err := d.fill(c.Writable, buf)
			return uint32(n), err
		})
		return nil
	})
}

// Notify implements virtio.Device.
func (d *Device) Notify(i int) { d.w.Notify(i) }

// Reset implements virtio.Device.
func (d *Device) Reset() { d.w.Reset() }

// fill writes random bytes into the chain's writable buffers, at most
// maxRequest bytes, through a bounce buffer so the entropy source never
// writes guest memory directly.
func (d *Device) fill(bufs [][]byte, tmp []byte) (int, error) {
	total := 0
	for _, b := range bufs {
		for len(b) > 0 && total < maxRequest {
			chunk := tmp[:min(len(b), len(tmp), maxRequest-total)]
			n, err := d.src(chunk)
			if err == nil && n == 0 {
				err = io.ErrNoProgress
			}
			if err != nil {
				return total, fmt.Errorf("virtio-rng: getrandom: %w", err)
			}
			copy(b, chunk[:n])
			b = b[n:]
			total += n
		}
	}
	d.mu.Lock()
	d.served += uint64(total)
	d.mu.Unlock()
	return total, nil
}
