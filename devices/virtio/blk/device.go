package blk

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

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

	mu      sync.Mutex // serialises Activate, Notify and Reset
	running *worker
}

type worker struct {
	q    *queue.Queue
	irq  virtio.Interrupt
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
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
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running != nil {
		return errors.New("virtio-blk: already active")
	}
	if len(a.Queues) != 1 || a.Queues[0] == nil {
		return errors.New("virtio-blk: the driver did not enable the request queue")
	}
	w := &worker{q: a.Queues[0], irq: a.IRQ, kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go d.serve(w)
	d.running = w
	return nil
}

// Notify implements virtio.Device; it never blocks.
func (d *Device) Notify(int) {
	d.mu.Lock()
	w := d.running
	d.mu.Unlock()
	if w == nil {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Reset implements virtio.Device: it waits for the request in progress.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running == nil {
		return
	}
	close(d.running.stop)
	<-d.running.done
	d.running = nil
}

// serve drains the queue, interrupts the driver once per batch, and parks
// until the next notification.
func (d *Device) serve(w *worker) {
	defer close(w.done)
	for {
		for {
			c, ok, err := w.q.Next()
			if err != nil {
				w.irq.NeedsReset(fmt.Errorf("virtio-blk: %w", err))
				<-w.stop
				return
			}
			if !ok {
				break
			}
			n := d.disk.Process(segments(c))
			if err := w.q.Push(c.Head, n); err != nil {
				w.irq.NeedsReset(fmt.Errorf("virtio-blk: %w", err))
				<-w.stop
				return
			}
		}
		if w.q.NeedInterrupt() {
			w.irq.Queue(0)
		}
		if w.q.EnableNotify() {
			continue
		}
		select {
		case <-w.kick:
		case <-w.stop:
			return
		}
	}
}

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
