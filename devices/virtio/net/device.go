// Package net is the virtio-net device over a host tap interface: one
// receive and one transmit queue, mergeable receive buffers, and checksum
// and TSO offloads passed straight through to the tap when it supports them.
// Receive and transmit each run on their own goroutine; when the guest has
// no receive buffers the device stops reading the tap (the kernel queues or
// drops), and waits for the guest's notification rather than polling.
package net

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	gonet "net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// Feature bits (virtio 1.2, 5.1.3).
const (
	FeatureCSUM      = 1 << 0
	FeatureGuestCSUM = 1 << 1
	FeatureMAC       = 1 << 5
	FeatureGuestTSO4 = 1 << 7
	FeatureGuestTSO6 = 1 << 8
	FeatureGuestECN  = 1 << 9
	FeatureHostTSO4  = 1 << 11
	FeatureHostTSO6  = 1 << 12
	FeatureHostECN   = 1 << 13
	FeatureMrgRxbuf  = 1 << 15
	FeatureStatus    = 1 << 16
)

const (
	rxQueue   = 0
	txQueue   = 1
	queueSize = 256
	// maxFrame bounds one frame with its header: a 64 KiB GSO frame plus
	// its Ethernet and VLAN headers.
	maxFrame = HeaderSize + 65535 + 14 + 4
	// statusLinkUp is VIRTIO_NET_S_LINK_UP.
	statusLinkUp = 1
	configSize   = 8 // mac[6], status
)

// Device is a virtio-net device on one tap.
type Device struct {
	tap *Tap
	mac gonet.HardwareAddr
	log *slog.Logger

	w     virtio.Worker
	drops dropLog

	// linkDown is the host side's link state (SetLink), shown in the
	// status field; irq is the active driver's, for the change interrupt.
	linkDown atomic.Bool
	mu       sync.Mutex
	irq      virtio.Interrupt
}

// dropLog counts dropped frames; the first is logged at warn level and the
// rest at debug, so that a guest cannot flood the log.
type dropLog struct {
	log *slog.Logger
	n   atomic.Uint64
}

func (d *dropLog) drop(msg string, args ...any) {
	if d.n.Add(1) == 1 {
		d.log.Warn(msg+" (further drops at debug level)", args...)
		return
	}
	d.log.Debug(msg, args...)
}

// Drops is the number of frames dropped in either direction.
func (d *Device) Drops() uint64 { return d.drops.n.Load() }

// New returns a device on tap with the given MAC; a nil MAC gets a random,
// locally administered unicast address.
func New(tap *Tap, mac gonet.HardwareAddr, log *slog.Logger) (*Device, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if mac == nil {
		mac = RandomMAC()
	}
	if len(mac) != 6 || mac[0]&1 != 0 {
		return nil, fmt.Errorf("MAC %v: need a 6-byte unicast address", mac)
	}
	return &Device{tap: tap, mac: mac, log: log, drops: dropLog{log: log}}, nil
}

// RandomMAC is a random locally administered unicast address, for a NIC
// given no MAC (virtio-net here, netvsc in vmm).
func RandomMAC() gonet.HardwareAddr {
	mac := make(gonet.HardwareAddr, 6)
	_, _ = rand.Read(mac) // crypto/rand.Read never fails
	mac[0] = mac[0]&^1 | 2
	return mac
}

// MAC is the device's Ethernet address.
func (d *Device) MAC() gonet.HardwareAddr { return d.mac }

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeNet }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	f := uint64(FeatureMAC | FeatureMrgRxbuf | FeatureStatus | virtio.FeatureEventIdx | virtio.FeatureIndirectDesc)
	if d.tap.Offloads() {
		f |= FeatureCSUM | FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN |
			FeatureGuestCSUM | FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN
	}
	return f
}

// QueueSizes implements virtio.Device: receive then transmit.
func (d *Device) QueueSizes() []uint16 { return []uint16{queueSize, queueSize} }

// ReadConfig implements virtio.Device (struct virtio_net_config: mac, status).
func (d *Device) ReadConfig(off uint64, data []byte) {
	clear(data)
	var c [configSize]byte
	copy(c[:], d.mac)
	if !d.linkDown.Load() {
		binary.LittleEndian.PutUint16(c[6:], statusLinkUp)
	}
	if off < configSize {
		copy(data, c[off:])
	}
}

// SetLink sets the link state the driver sees in the status field and
// signals a configuration change to an active driver. Frames still flow
// while the link is down: the tap drops what it cannot carry.
func (d *Device) SetLink(up bool) {
	if d.linkDown.Swap(!up) == !up {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.irq != nil {
		d.irq.Config()
	}
}

// WriteConfig implements virtio.Device: the MAC is not writable in virtio 1.x.
func (d *Device) WriteConfig(uint64, []byte) {}

// tapOffloads maps the negotiated guest-receive features to TUNSETOFFLOAD flags.
func tapOffloads(features uint64) int {
	if features&FeatureGuestCSUM == 0 {
		return 0
	}
	f := tunFCSUM
	if features&FeatureGuestTSO4 != 0 {
		f |= tunFTSO4
	}
	if features&FeatureGuestTSO6 != 0 {
		f |= tunFTSO6
	}
	if features&FeatureGuestECN != 0 {
		f |= tunFTSOECN
	}
	return f
}

// Activate implements virtio.Device.
func (d *Device) Activate(a virtio.Activation) error {
	if len(a.Queues) != 2 || a.Queues[rxQueue] == nil || a.Queues[txQueue] == nil {
		return errors.New("virtio-net: the driver must enable both queues")
	}
	// The receiver may be parked in a tap read when Reset comes.
	unblock := func() {
		if err := d.tap.Interrupt(); err != nil {
			d.log.Warn("virtio-net: interrupt tap read", "err", err)
		}
	}
	return d.w.Start("virtio-net", a, unblock, func(r *virtio.Run) error {
		if d.tap.Offloads() {
			if err := d.tap.SetOffload(tapOffloads(a.Features)); err != nil {
				return fmt.Errorf("virtio-net: set tap offloads: %w", err)
			}
		}
		if err := d.tap.Resume(); err != nil {
			return fmt.Errorf("virtio-net: %w", err)
		}
		d.mu.Lock()
		d.irq = a.IRQ
		d.mu.Unlock()
		rx := &receiver{q: a.Queues[rxQueue], irq: a.IRQ, run: r, tap: d.tap, log: d.log, drops: &d.drops,
			mergeable: a.Features&FeatureMrgRxbuf != 0, buf: make([]byte, maxFrame)}
		r.Go(rx.loop)
		r.Serve(txQueue, a.Queues[txQueue], func(c queue.Chain) (uint32, error) {
			d.send(c)
			return 0, nil
		})
		return nil
	})
}

// Notify implements virtio.Device; it never blocks.
func (d *Device) Notify(i int) { d.w.Notify(i) }

// Reset implements virtio.Device: it stops both goroutines and waits for them.
func (d *Device) Reset() {
	d.w.Reset()
	d.mu.Lock()
	d.irq = nil
	d.mu.Unlock()
}

// Close resets the device and closes its tap.
func (d *Device) Close() error {
	d.Reset()
	return d.tap.Close()
}

// send writes one chain's frame to the tap; malformed chains are dropped.
func (d *Device) send(c queue.Chain) {
	n := c.ReadableLen()
	switch {
	case len(c.Writable) > 0:
		d.drops.drop("virtio-net tx: device-writable buffer in a transmit chain; dropped")
		return
	case n <= HeaderSize || n > maxFrame:
		d.drops.drop("virtio-net tx: frame length out of range; dropped", "len", n)
		return
	}
	if _, err := d.tap.Writev(c.Readable); err != nil && !errors.Is(err, os.ErrClosed) {
		// The kernel rejects malformed GSO headers with EINVAL; the frame is lost, as on a wire.
		d.drops.drop("virtio-net tx: tap refused a frame; dropped", "err", err)
	}
}
