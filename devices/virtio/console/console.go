// Package console is virtio-console (virtio 1.2 §5.3) with a single port and
// no multiport: the guest's hvc0. What the guest transmits goes to an
// io.Writer (the VMM's console output, with its panic watcher); host input
// is delivered into the guest's receive buffers.
package console

import (
	"errors"
	"fmt"
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

	mu      sync.Mutex
	kick    [2]chan struct{}
	stop    chan struct{}
	done    chan struct{}
	input   chan []byte // host input for the running worker
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
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop != nil {
		return errors.New("virtio-console: already active")
	}
	d.kick = [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)}
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	w := &worker{d: d, rx: a.Queues[RXQueue], tx: a.Queues[TXQueue], irq: a.IRQ}
	go w.run(d.kick, d.stop, d.done)
	return nil
}

// Notify implements virtio.Device.
func (d *Device) Notify(i int) {
	if i < 0 || i > 1 {
		return
	}
	d.mu.Lock()
	k := d.kick[i]
	d.mu.Unlock()
	if k == nil {
		return
	}
	select {
	case k <- struct{}{}:
	default:
	}
}

// Reset implements virtio.Device. Input not yet delivered is dropped.
func (d *Device) Reset() {
	d.mu.Lock()
	stop, done := d.stop, d.done
	d.stop, d.done, d.kick = nil, nil, [2]chan struct{}{}
	d.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

type worker struct {
	d       *Device
	rx, tx  *queue.Queue
	irq     virtio.Interrupt
	pending []byte // host input waiting for receive buffers
	failed  bool
}

func (w *worker) run(kick [2]chan struct{}, stop, done chan struct{}) {
	defer close(done)
	for {
		if !w.failed {
			if err := w.transmit(); err == nil {
				err = w.receive()
				if err != nil {
					w.fail(err)
				}
			} else {
				w.fail(err)
			}
		}
		// Take new input only when the last is delivered, so Input
		// blocks (back-pressure) while the guest is not reading.
		var input chan []byte
		if len(w.pending) == 0 && !w.failed {
			input = w.d.input
		}
		select {
		case <-kick[TXQueue]:
		case <-kick[RXQueue]:
		case p := <-input:
			w.pending = p
		case <-stop:
			return
		}
	}
}

func (w *worker) fail(err error) {
	w.failed = true
	w.irq.NeedsReset(err)
}

// transmit writes every available transmit chain to the output.
func (w *worker) transmit() error {
	for {
		c, ok, err := w.tx.Next()
		if err != nil {
			return err
		}
		if !ok {
			if w.tx.EnableNotify() {
				continue
			}
			return nil
		}
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
		if err := w.tx.Push(c.Head, 0); err != nil {
			return err
		}
		if w.tx.NeedInterrupt() {
			w.irq.Queue(TXQueue)
		}
	}
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
			return fmt.Errorf("virtio-console: %w", err)
		}
		if w.rx.NeedInterrupt() {
			w.irq.Queue(RXQueue)
		}
	}
	return nil
}
