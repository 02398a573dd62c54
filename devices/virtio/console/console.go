// Package console is virtio-console (virtio 1.2 §5.3) with a single port and
// no multiport: the guest's hvc0. What the guest transmits goes to an
// io.Writer (the VMM's console output, with its panic watcher); host input
// is delivered into the guest's receive buffers.
package console

import (
	"errors"
	"io"
	"sync"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// Queue indices and size.
const (
	RXQueue   = 0
	TXQueue   = 1
	QueueSize = 128
)

// maxTX bounds the bytes taken from one transmit chain.
const maxTX = 64 << 10

// Device is a virtio-console device.
type Device struct {
	out io.Writer

	w       virtio.Worker
	input   chan []byte // host input for the running worker
	mu      sync.Mutex
	written uint64
}

// New returns a console whose guest output goes to out (nil discards it).
func New(out io.Writer) *Device {
	if out == nil {
		out = io.Discard
	}
	return &Device{out: out, input: make(chan []byte)}
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeConsole }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return virtio.FeatureEventIdx | virtio.FeatureIndirectDesc }

// QueueSizes implements virtio.Device.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize, QueueSize} }

// ReadConfig implements virtio.Device: without F_SIZE and F_MULTIPORT the
// fields carry no information and read as zero.
func (d *Device) ReadConfig(off uint64, data []byte) { clear(data) }

// WriteConfig implements virtio.Device; emerg_wr is not offered.
func (d *Device) WriteConfig(off uint64, data []byte) {}

// Written is the number of bytes the guest transmitted.
func (d *Device) Written() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.written
}

// Input delivers p to the guest, blocking until the guest has taken it into
// its receive buffers or done is closed; it reports whether p was delivered.
// Input waits while no driver is active (before the guest loads
// virtio_console, or across a reset).
func (d *Device) Input(p []byte, done <-chan struct{}) bool {
	if len(p) == 0 {
		return true
	}
	buf := append([]byte(nil), p...)
	select {
	case d.input <- buf:
		return true
	case <-done:
		return false
	}
}

// Activate implements virtio.Device.
func (d *Device) Activate(a virtio.Activation) error {
	if len(a.Queues) != 2 || a.Queues[RXQueue] == nil || a.Queues[TXQueue] == nil {
		return errors.New("virtio-console: receive and transmit queues must both be enabled")
	}
	return d.w.Start("virtio-console", a, nil, func(r *virtio.Run) error {
		w := &worker{d: d, rx: a.Queues[RXQueue], tx: a.Queues[TXQueue], irq: a.IRQ}
		r.Go(func() { w.run(r) })
		return nil
	})
}

// Notify implements virtio.Device; it never blocks.
func (d *Device) Notify(i int) { d.w.Notify(i) }

// Reset implements virtio.Device: it stops the worker and waits for it.
func (d *Device) Reset() { d.w.Reset() }

// worker serves both queues of one activation on one goroutine.
type worker struct {
	d       *Device
	rx, tx  *queue.Queue
	irq     virtio.Interrupt
	pending []byte // host input waiting for receive buffers
}

func (w *worker) run(r *virtio.Run) {
	for {
		err := virtio.ServeQueue(w.tx, w.irq, TXQueue, w.transmit)
		if err == nil {
			err = w.receive()
		}
		if err != nil {
			r.Fail(err)
			return
		}
		// Take new input only when the last is delivered, so Input
		// blocks (back-pressure) while the guest is not reading.
		var input chan []byte
		if len(w.pending) == 0 {
			input = w.d.input
		}
		select {
		case <-r.Kick(TXQueue):
		case <-r.Kick(RXQueue):
		case p := <-input:
			w.pending = p
		case <-r.Stop():
			return
		}
	}
}

// transmit writes one transmit chain's bytes (at most maxTX) to out.
func (w *worker) transmit(c queue.Chain) (uint32, error) {
	n := 0
	for _, b := range c.Readable {
		b = b[:min(len(b), maxTX-n)]
		if len(b) == 0 {
			break
		}
		// Copy first: the guest may change the buffer while we write.
		chunk := append([]byte(nil), b...)
		_, _ = w.d.out.Write(chunk)
		n += len(chunk)
	}
	w.d.mu.Lock()
	w.d.written += uint64(n)
	w.d.mu.Unlock()
	return 0, nil
}

// receive moves pending host input into receive buffers.
func (w *worker) receive() error {
	for len(w.pending) > 0 {
		c, ok, err := w.rx.Next()
		if err != nil {
			return err
		}
		if !ok {
			if w.rx.EnableNotify() {
				continue
			}
			return nil
		}
		n := queue.Scatter(c.Writable, w.pending)
		w.pending = w.pending[n:]
		if err := w.rx.Push(c.Head, uint32(n)); err != nil {
			return err
		}
		if w.rx.NeedInterrupt() {
			w.irq.Queue(RXQueue)
		}
	}
	return nil
}
