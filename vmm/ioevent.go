package vmm

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/testdev"
	"github.com/vmmdev/vmm/vmm/hyperv"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// ioEvents serves virtio queue notifications through KVM_IOEVENTFD: KVM
// completes the guest's write to a notify address in the kernel and signals
// an eventfd, and a goroutine (parked in Go's poller, not on a thread) turns
// that into a call of the device's notify function. The vCPU never exits.
type ioEvents struct {
	vm  *kvm.VM
	log *slog.Logger
}

// Add implements virtio/pci.IOEvents.
func (e ioEvents) Add(addr uint64, length int, fn func()) (func(), error) {
	undo, err := e.serve(kvm.IOEventFD{Addr: addr, Len: uint32(length)}, func(uint64) { fn() })
	if err != nil {
		return nil, err
	}
	return func() { undo(true) }, nil
}

// serve registers reg with a fresh eventfd and has a goroutine call fn with
// each non-zero count read from it. undo removes the registration and
// closes the eventfd; with wait it also waits for the goroutine to end.
func (e ioEvents) serve(reg kvm.IOEventFD, fn func(count uint64)) (undo func(wait bool), err error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	// A non-blocking descriptor makes os.File use the poller, so Close
	// wakes the reader below.
	f := os.NewFile(uintptr(fd), "ioeventfd")
	reg.FD = int32(fd)
	if err := e.vm.IOEventFD(reg); err != nil {
		f.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 8)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			if c := binary.LittleEndian.Uint64(buf); n == 8 && c > 0 {
				fn(c)
			}
		}
	}()
	return func(wait bool) {
		reg.Flags |= kvm.IOEventFDDeassign
		if err := e.vm.IOEventFD(reg); err != nil {
			e.log.Warn("remove ioeventfd", "addr", fmt.Sprintf("%#x", reg.Addr), "datamatch", reg.Datamatch, "err", err)
		}
		f.Close()
		if wait {
			<-done
		}
	}, nil
}

// eventCounter is an ioeventfd whose count is read on demand rather than
// served by a goroutine (testdev.Watch).
type eventCounter struct {
	e   ioEvents
	reg kvm.IOEventFD
	fd  int // non-blocking; a raw descriptor, as os.File.Fd would make it blocking
}

// Watch implements testdev.Notifiers: one-byte writes at addr (a port when
// pio), of value data only when match.
func (e ioEvents) Watch(addr uint64, pio, match bool, data uint64) (testdev.Watch, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	reg := kvm.IOEventFD{Addr: addr, Len: 1, FD: int32(fd)}
	if pio {
		reg.Flags |= kvm.IOEventFDPIO
	}
	if match {
		reg.Flags |= kvm.IOEventFDDatamatch
		reg.Datamatch = data
	}
	if err := e.vm.IOEventFD(reg); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &eventCounter{e: e, reg: reg, fd: fd}, nil
}

// Take reads (and so resets) the eventfd's counter without blocking.
func (c *eventCounter) Take() uint64 {
	var buf [8]byte
	if n, err := unix.Read(c.fd, buf[:]); err != nil || n != 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(buf[:])
}

func (c *eventCounter) Close() {
	c.reg.Flags |= kvm.IOEventFDDeassign
	if err := c.e.vm.IOEventFD(c.reg); err != nil {
		c.e.log.Warn("remove ioeventfd", "addr", fmt.Sprintf("%#x", c.reg.Addr), "err", err)
	}
	unix.Close(c.fd)
}

// signalRoutes serves the guest's fast HvSignalEvent on open VMBus
// channels (vmbus.SignalRoutes) through KVM_IOEVENTFD: the hypercall
// page's fast path writes the connection id to hyperv.SignalPort, and an
// ioeventfd matching that id takes the write in the kernel, as virtio's
// notifications are taken. A goroutine parked in Go's poller then hands
// the signal to the bus. The vCPU never exits for it.
type signalRoutes struct {
	hyperv.BusHost
	e    ioEvents
	part *hyperv.Partition
}

// RouteSignal implements vmbus.SignalRoutes. It returns nil, leaving the
// connection to the hypercall exit, when KVM refuses the ioeventfd.
func (r signalRoutes) RouteSignal(conn uint32, signal func()) func() {
	reg := kvm.IOEventFD{Addr: hyperv.SignalPort, Len: 4,
		Flags: kvm.IOEventFDPIO | kvm.IOEventFDDatamatch, Datamatch: uint64(conn)}
	undo, err := r.e.serve(reg, func(c uint64) {
		r.part.NoteFastSignals(c)
		signal()
	})
	if err != nil {
		r.e.log.Warn("vmbus: signal ioeventfd", "conn", conn, "err", err)
		return nil
	}
	// The undo runs under the bus's lock: it does not wait for the
	// goroutine, whose signal may be waiting for that lock.
	return func() { undo(false) }
}
