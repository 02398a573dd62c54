package vmbus

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vmmdev/vmm/devices/vmbus/gpadl"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// ErrClosed: the channel is no longer open (the guest closed it, the bus
// was reset, or the ring broke).
var ErrClosed = errors.New("vmbus channel closed")

// Offer describes a channel to the guest (OFFERCHANNEL).
type Offer struct {
	// Class (if_type) selects the guest driver; Instance (if_instance)
	// names the device (/sys/bus/vmbus/devices/<instance>).
	Class, Instance GUID
	Flags           uint16
	MMIOMegabytes   uint16
	UserDefined     [userDataSize]byte
}

// Device is a VMBus device (a VSP): the bus offers its channel and calls
// it as the guest opens, signals and closes it. The bus calls Open and
// Close with its own lock held: they must not call the Bus.
type Device interface {
	// Offer is read once, when the device is added.
	Offer() Offer
	// Open: the guest opened the channel on c's rings. An error refuses
	// the open (the guest gets a failure status). The device must not
	// write to the guest yet.
	Open(c *Channel) error
	// Opened: the guest has the OPENCHANNEL_RESULT; the device may now
	// write to c (host-driven protocols send their first message here).
	Opened(c *Channel)
	// Interrupt: the guest signalled c. Called on a vCPU thread: it must
	// not block, and a device with slow work hands it to its own goroutine.
	Interrupt(c *Channel)
	// Close: c is closed; the device stops using it before returning.
	Close(c *Channel)
}

// Channel is one open channel as its device sees it: the ring pair, the
// open's user data and the guest interrupt. Its methods are safe for
// concurrent use.
type Channel struct {
	relid    uint32
	subIndex uint16
	host     Host
	sint     int
	log      Logger
	// intPage: the guest's interrupt page when the version signals
	// through it (before 2.4); nil: event flag relid of the SIEF slot.
	intPage  []byte
	UserData [userDataSize]byte
	// gpadl looks a complete GPADL up in the bus's table.
	gpadl func(id uint32) (gpadl.GPADL, bool)

	mu     sync.Mutex
	vp     int
	in     *ring.Reader
	out    *ring.Writer
	closed bool
	// ready: the guest has OPENCHANNEL_RESULT. Until then signals are
	// held back (Linux drops an interrupt for a channel it has not seen
	// opened, and the ring then sticks), and owed records one.
	ready, owed bool
	stats       ChannelStats
}

// ChannelStats counts a channel's traffic.
type ChannelStats struct {
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	SignalsIn  uint64 `json:"signals_in"`
	SignalsOut uint64 `json:"signals_out"`
}

// Logger is the part of slog.Logger the bus uses.
type Logger interface {
	Warn(msg string, args ...any)
	Debug(msg string, args ...any)
}

// Relid is the channel's relative id.
func (c *Channel) Relid() uint32 { return c.relid }

// ErrNoGPADL: the guest named no complete GPADL of this channel.
var ErrNoGPADL = errors.New("no such GPADL on this channel")

// GPADL returns a copy of the guest's complete GPADL id, which must belong
// to this channel (device buffers such as netvsc's are shared that way).
// It takes the bus's lock: never call it from Open or Close.
func (c *Channel) GPADL(id uint32) (gpadl.GPADL, error) {
	g, ok := c.gpadl(id)
	if !ok || g.Relid != c.relid {
		return gpadl.GPADL{}, fmt.Errorf("%w: %#x", ErrNoGPADL, id)
	}
	return g, nil
}

// SubChannelIndex is 0 for a primary channel, else the sub-channel's index.
func (c *Channel) SubChannelIndex() uint16 { return c.subIndex }

// Recv copies the next guest packet out of the ring (ok false: empty).
// buf is used for the packet when large enough. A broken ring closes the
// channel's rings for good and returns ErrClosed.
func (c *Channel) Recv(buf []byte) (p ring.Packet, ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ring.Packet{}, false, ErrClosed
	}
	p, ok, err = c.in.Next(buf)
	if err != nil {
		c.breakLocked(err)
		return ring.Packet{}, false, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	if ok {
		c.stats.PacketsIn++
		c.stats.BytesIn += uint64(ring.DescriptorSize + len(p.Header) + len(p.Payload))
	}
	return p, ok, nil
}

// RecvPending reports whether Recv would find a packet (or an error): a
// look at the guest's write index that consumes nothing.
func (c *Channel) RecvPending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed || c.in.Pending()
}

// MaskSignals sets the host's interrupt mask in the guest's ring: while it
// is set the guest writes packets without signalling (Linux's
// hv_signal_on_write). A device that drains until empty sets it while it
// drains and, once empty, clears it and looks again before it sleeps: a
// packet written before the clear came without a signal.
func (c *Channel) MaskSignals(masked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.in.SetInterruptMask(masked)
	}
}

// RecvDone ends a batch of Recv calls: it signals the guest if it waits
// for room in its ring that the batch freed.
func (c *Channel) RecvDone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed && c.in.Done() {
		c.signalLocked()
	}
}

// Send writes one packet to the guest and signals it when the ring
// protocol asks for that. ring.ErrFull: no room now; the guest signals
// the channel once there is.
func (c *Channel) Send(typ, flags uint16, transID uint64, hdr []byte, payload ...[]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	signal, err := c.out.Write(typ, flags, transID, hdr, payload...)
	if errors.Is(err, ring.ErrBroken) {
		c.breakLocked(err)
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	if err != nil {
		return err
	}
	c.stats.PacketsOut++
	for _, p := range payload {
		c.stats.BytesOut += uint64(len(p))
	}
	if signal {
		c.signalLocked()
	}
	return nil
}

// Complete sends a completion packet for the guest's transaction id.
func (c *Channel) Complete(transID uint64, payload ...[]byte) error {
	return c.Send(ring.TypeCompletion, 0, transID, nil, payload...)
}

// Stats returns the channel's counters.
func (c *Channel) Stats() ChannelStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (c *Channel) signalLocked() {
	if !c.ready {
		c.owed = true
		return
	}
	c.stats.SignalsOut++
	if c.intPage != nil {
		setSignal(c.intPage, c.relid)
		c.host.SignalEvent(c.vp, c.sint, 0)
		return
	}
	c.host.SignalEvent(c.vp, c.sint, c.relid)
}

func (c *Channel) breakLocked(err error) {
	c.log.Warn("vmbus: guest broke a channel's ring; channel stopped", "relid", c.relid, "err", err)
	c.closed = true
}

// setReady marks OPENCHANNEL_RESULT delivered and sends a held-back
// interrupt.
func (c *Channel) setReady() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ready = true
	if c.owed && !c.closed {
		c.owed = false
		c.signalLocked()
	}
}

func (c *Channel) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
}

func (c *Channel) setVP(vp int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vp = vp
}
