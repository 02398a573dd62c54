package vmm

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// maxMSIRoutes bounds the GSIs given to MSI-X vectors (KVM allows 4096
// routes on x86). Each vector keeps its GSI for the VM's life, so the bound
// is only reached by a machine with that many vectors, never by a guest
// reprogramming them.
const maxMSIRoutes = 1024

// errNoGSI is returned when every GSI for MSI routes is taken.
var errNoGSI = errors.New("no free GSI for an MSI route")

// routingVM is what the routing table needs of a VM (a *kvm.VM, or a fake
// in unit tests).
type routingVM interface {
	SetGSIRouting(routes []kvm.IRQRoute) error
	IRQFD(fd int, gsi uint32, flags uint32) error
	SignalMSI(addrLo, addrHi, data uint32) (int, error)
}

// gsiRoutes owns the VM's GSI routing table. KVM_SET_GSI_ROUTING replaces
// the whole table, so the PC's fixed routes and every MSI route live here
// and each change installs the merged table.
type gsiRoutes struct {
	vm    routingVM
	irqfd bool // irqfds and MSI routes work; else every vector uses KVM_SIGNAL_MSI
	log   *slog.Logger

	mu                sync.Mutex
	fixed             []kvm.IRQRoute
	msi               map[uint32]kvm.IRQRoute // by GSI
	firstMSI, nextGSI uint32
	tables            []*msiVectors
}

// newGSIRoutes installs the PC routes. irqfd says whether MSI-X vectors may
// be routed through irqfds (KVM_CAP_IRQFD and KVM_CAP_IRQ_ROUTING).
func newGSIRoutes(vm routingVM, irqfd bool, log *slog.Logger) (*gsiRoutes, error) {
	r := &gsiRoutes{vm: vm, irqfd: irqfd, log: log, fixed: pcIRQRouting(), msi: map[uint32]kvm.IRQRoute{}}
	for _, f := range r.fixed {
		r.nextGSI = max(r.nextGSI, f.GSI+1)
	}
	r.firstMSI = r.nextGSI
	if err := vm.SetGSIRouting(r.fixed); err != nil {
		return nil, fmt.Errorf("set PC interrupt routing: %w", err)
	}
	return r, nil
}

// table is the merged routing table, MSI routes in GSI order.
func (r *gsiRoutes) tableLocked() []kvm.IRQRoute {
	t := slices.Clone(r.fixed)
	gsis := make([]uint32, 0, len(r.msi))
	for g := range r.msi {
		gsis = append(gsis, g)
	}
	slices.Sort(gsis)
	for _, g := range gsis {
		t = append(t, r.msi[g])
	}
	return t
}

// allocGSI reserves a GSI for an MSI route.
func (r *gsiRoutes) allocGSI() (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nextGSI-r.firstMSI >= maxMSIRoutes {
		return 0, errNoGSI
	}
	g := r.nextGSI
	r.nextGSI++
	return g, nil
}

// setMSI points gsi at the message (lo, hi, data); on failure the table the
// kernel has is left as it was.
func (r *gsiRoutes) setMSI(gsi, lo, hi, data uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, had := r.msi[gsi]
	r.msi[gsi] = kvm.IRQRoute{GSI: gsi, Type: kvm.IRQRoutingMSI, AddressLo: lo, AddressHi: hi, Data: data}
	if err := r.vm.SetGSIRouting(r.tableLocked()); err != nil {
		if had {
			r.msi[gsi] = old
		} else {
			delete(r.msi, gsi)
		}
		return err
	}
	return nil
}

// newTable returns the sender for one MSI-X table.
func (r *gsiRoutes) newTable(name string) *msiVectors {
	t := &msiVectors{r: r, name: name, vecs: map[int]*msiVector{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tables = append(r.tables, t)
	return t
}

// close unbinds and closes every irqfd; call it once the devices stopped.
func (r *gsiRoutes) close() {
	r.mu.Lock()
	tables := r.tables
	r.tables = nil
	r.mu.Unlock()
	for _, t := range tables {
		t.close()
	}
}

// msiVectors delivers one MSI-X table's vectors. A vector is bound to a GSI
// and an irqfd the first time it fires; its route is reprogrammed only when
// the guest changed the message since the last delivery, so masking,
// rewriting and unmasking an entry costs nothing until it fires. Where an
// irqfd is not possible the message goes out with KVM_SIGNAL_MSI.
type msiVectors struct {
	r    *gsiRoutes
	name string

	mu     sync.Mutex
	vecs   map[int]*msiVector // at most the table's size: MSIX checks v
	closed bool
}

type msiVector struct {
	gsi    uint32
	fd     int  // eventfd bound to gsi; -1 when the vector uses KVM_SIGNAL_MSI
	routed bool // the route holds msg
	warned bool // a failed route update was logged (once per vector: the guest picks the messages)
	msg    [3]uint32
}

// SendMSI implements pci.MSISender.
func (t *msiVectors) SendMSI(v int, lo, hi, data uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	vec := t.vecs[v]
	if vec == nil {
		vec = t.bind(v)
		t.vecs[v] = vec
	}
	if vec.fd < 0 {
		return t.signal(lo, hi, data)
	}
	msg := [3]uint32{lo, hi, data}
	if !vec.routed || vec.msg != msg {
		if err := t.r.setMSI(vec.gsi, lo, hi, data); err != nil {
			// The old route may still be in place: deliver this one
			// directly and try the route again next time.
			vec.routed = false
			if !vec.warned {
				vec.warned = true
				t.r.log.Warn("MSI route", "device", t.name, "vector", v, "err", err)
			}
			return t.signal(lo, hi, data)
		}
		vec.routed, vec.msg = true, msg
	}
	if _, err := unix.Write(vec.fd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		return fmt.Errorf("irqfd write (GSI %d): %w", vec.gsi, err)
	}
	return nil
}

func (t *msiVectors) signal(lo, hi, data uint32) error {
	if _, err := t.r.vm.SignalMSI(lo, hi, data); err != nil {
		return fmt.Errorf("KVM_SIGNAL_MSI: %w", err)
	}
	return nil
}

// bind gives vector v a GSI and an irqfd, or marks it for KVM_SIGNAL_MSI
// when the host or the GSI space does not allow one.
func (t *msiVectors) bind(v int) *msiVector {
	vec := &msiVector{fd: -1}
	if !t.r.irqfd {
		return vec
	}
	gsi, err := t.r.allocGSI()
	if err != nil {
		t.r.log.Warn("MSI-X vector without irqfd", "device", t.name, "vector", v, "err", err)
		return vec
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.r.log.Warn("MSI-X vector without irqfd", "device", t.name, "vector", v, "err", fmt.Errorf("eventfd: %w", err))
		return vec
	}
	if err := t.r.vm.IRQFD(fd, gsi, 0); err != nil {
		unix.Close(fd)
		t.r.log.Warn("MSI-X vector without irqfd", "device", t.name, "vector", v, "err", err)
		return vec
	}
	vec.gsi, vec.fd = gsi, fd
	return vec
}

// close unbinds and closes the table's irqfds; later sends are dropped.
func (t *msiVectors) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for v, vec := range t.vecs {
		if vec.fd < 0 {
			continue
		}
		if err := t.r.vm.IRQFD(vec.fd, vec.gsi, kvm.IRQFDDeassign); err != nil {
			t.r.log.Warn("remove irqfd", "device", t.name, "vector", v, "err", err)
		}
		unix.Close(vec.fd)
		vec.fd = -1
	}
}

// irqfdCapable reports whether the host KVM can route MSI-X through irqfds.
func irqfdCapable(sys *kvm.System) bool {
	for _, c := range []kvm.Cap{kvm.CapIRQFD, kvm.CapIRQRouting} {
		if n, err := sys.CheckExtension(c); err != nil || n == 0 {
			return false
		}
	}
	return true
}
