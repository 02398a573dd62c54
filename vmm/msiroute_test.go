package vmm

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/pci"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// fakeRoutingVM is KVM's routing side: the installed table, the irqfd
// bindings and the messages sent with KVM_SIGNAL_MSI.
type fakeRoutingVM struct {
	table    []kvm.IRQRoute
	sets     int
	failSets bool
	irqfds   map[int]uint32 // fd -> GSI
	signals  [][3]uint32
}

func newFakeRoutingVM() *fakeRoutingVM { return &fakeRoutingVM{irqfds: map[int]uint32{}} }

func (f *fakeRoutingVM) SetGSIRouting(routes []kvm.IRQRoute) error {
	if f.failSets {
		return unix.ENOMEM
	}
	f.sets++
	f.table = append([]kvm.IRQRoute(nil), routes...)
	return nil
}

func (f *fakeRoutingVM) IRQFD(fd int, gsi uint32, flags uint32) error {
	if flags&kvm.IRQFDDeassign != 0 {
		if f.irqfds[fd] != gsi {
			return unix.ENOENT
		}
		delete(f.irqfds, fd)
		return nil
	}
	f.irqfds[fd] = gsi
	return nil
}

func (f *fakeRoutingVM) SignalMSI(lo, hi, data uint32) (int, error) {
	f.signals = append(f.signals, [3]uint32{lo, hi, data})
	return 1, nil
}

// msiRoute is the table's MSI route for gsi (nil if none).
func (f *fakeRoutingVM) msiRoute(gsi uint32) *kvm.IRQRoute {
	for i, r := range f.table {
		if r.GSI == gsi && r.Type == kvm.IRQRoutingMSI {
			return &f.table[i]
		}
	}
	return nil
}

// fired drains the eventfd bound to gsi and returns its count.
func (f *fakeRoutingVM) fired(t *testing.T, gsi uint32) uint64 {
	t.Helper()
	for fd, g := range f.irqfds {
		if g != gsi {
			continue
		}
		b := make([]byte, 8)
		n, err := unix.Read(fd, b)
		if errors.Is(err, unix.EAGAIN) {
			return 0
		}
		require.NoError(t, err)
		require.Equal(t, 8, n)
		return binary.LittleEndian.Uint64(b)
	}
	t.Fatalf("no irqfd for GSI %d", gsi)
	return 0
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

func TestMSIRoutesThroughIRQFD(t *testing.T) {
	vm := newFakeRoutingVM()
	r, err := newGSIRoutes(vm, true, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, pcIRQRouting(), vm.table, "PC routes installed first")
	pcRoutes := len(vm.table)

	tab := r.newTable("blk")
	require.NoError(t, tab.SendMSI(1, 0xfee00000, 0, 0x41))
	require.Len(t, vm.irqfds, 1)
	gsi := uint32(ioapicPins)
	require.Equal(t, gsi, vm.irqfds[firstFD(vm)], "first MSI GSI follows the IOAPIC pins")
	require.Len(t, vm.table, pcRoutes+1, "PC routes stay")
	require.Equal(t, pcIRQRouting(), vm.table[:pcRoutes])
	require.Equal(t, kvm.IRQRoute{GSI: gsi, Type: kvm.IRQRoutingMSI, AddressLo: 0xfee00000, Data: 0x41}, *vm.msiRoute(gsi))
	require.Equal(t, uint64(1), vm.fired(t, gsi))
	require.Empty(t, vm.signals)

	// The same message again: no routing update, one more eventfd write.
	sets := vm.sets
	require.NoError(t, tab.SendMSI(1, 0xfee00000, 0, 0x41))
	require.NoError(t, tab.SendMSI(1, 0xfee00000, 0, 0x41))
	require.Equal(t, sets, vm.sets)
	require.Equal(t, uint64(2), vm.fired(t, gsi))

	// The guest moved the vector to another CPU: the route follows.
	require.NoError(t, tab.SendMSI(1, 0xfee01000, 0, 0x42))
	require.Equal(t, sets+1, vm.sets)
	require.Equal(t, uint32(0x42), vm.msiRoute(gsi).Data)
	require.Equal(t, uint32(0xfee01000), vm.msiRoute(gsi).AddressLo)
	require.Equal(t, uint64(1), vm.fired(t, gsi))

	// A second table gets its own GSI; both routes are in the one table.
	tab2 := r.newTable("net")
	require.NoError(t, tab2.SendMSI(0, 0xfee00000, 0, 0x50))
	require.Len(t, vm.table, pcRoutes+2)
	require.NotNil(t, vm.msiRoute(gsi))
	require.NotNil(t, vm.msiRoute(gsi+1))
	require.Equal(t, uint64(1), vm.fired(t, gsi+1))

	r.close()
	require.Empty(t, vm.irqfds, "every irqfd unbound")
	require.NoError(t, tab.SendMSI(1, 0xfee00000, 0, 0x41), "a late interrupt is dropped")
	require.Empty(t, vm.signals)
}

func firstFD(vm *fakeRoutingVM) int {
	for fd := range vm.irqfds {
		return fd
	}
	return -1
}

// A hostile guest reprograms its vectors thousands of times: GSIs, eventfds
// and the routing table stay bounded by the number of vectors.
func TestMSIRoutesBoundedUnderReprogramming(t *testing.T) {
	vm := newFakeRoutingVM()
	r, err := newGSIRoutes(vm, true, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	m, err := pci.NewMSIX(3, r.newTable("hostile"))
	require.NoError(t, err)
	fds := openFDs(t)
	cap := m.Capability(0, 0, 0x1000)
	cap.Written([]byte{0, 0x80}, 0, 2) // MSI-X enable
	entry := func(v int, lo, hi, data, ctrl uint32) {
		b := binary.LittleEndian.AppendUint32(nil, lo)
		b = binary.LittleEndian.AppendUint32(b, hi)
		b = binary.LittleEndian.AppendUint32(b, data)
		m.WriteTable(uint64(v*pci.MSIXEntrySize), binary.LittleEndian.AppendUint32(b, ctrl))
	}
	for i := range 5000 {
		v := i % 3
		entry(v, 0xfee00000|uint32(i&0xff)<<12, 0, uint32(i), 0)
		m.Signal(v)
		entry(v, uint32(i)*0x9e3779b9, uint32(i), ^uint32(i), 1) // garbage, masked
		m.Signal(v)
	}
	require.Len(t, vm.irqfds, 3, "one irqfd per vector")
	require.LessOrEqual(t, openFDs(t), fds+3, "eventfds bounded")
	require.Len(t, vm.table, len(pcIRQRouting())+3, "routing table bounded")
	for _, fd := range []uint32{ioapicPins, ioapicPins + 1, ioapicPins + 2} {
		require.NotNil(t, vm.msiRoute(fd))
	}
	require.Empty(t, vm.signals)
	// Garbage was only ever written masked; an unmasked garbage address is
	// dropped by MSIX, so no route ever carried one.
	require.Equal(t, uint64(0), m.Dropped())
	r.close()
	require.Empty(t, vm.irqfds)
	require.Equal(t, fds, openFDs(t), "close releases every eventfd")
}

// Masked vectors stay pending; unmasking delivers through the irqfd with
// the message written while masked.
func TestMSIRoutesMaskedVectorDeliveredOnUnmask(t *testing.T) {
	vm := newFakeRoutingVM()
	r, err := newGSIRoutes(vm, true, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer r.close()
	m, err := pci.NewMSIX(1, r.newTable("dev"))
	require.NoError(t, err)
	cap := m.Capability(0, 0, 0x1000)
	cap.Written([]byte{0, 0x80}, 0, 2)
	m.WriteTable(0, binary.LittleEndian.AppendUint32(nil, 0xfee00000))
	m.WriteTable(8, binary.LittleEndian.AppendUint32(nil, 0x61))
	m.Signal(0) // still masked: pending, nothing bound yet
	require.Empty(t, vm.irqfds)
	pba := make([]byte, 8)
	m.ReadPBA(0, pba)
	require.Equal(t, byte(1), pba[0])
	m.WriteTable(12, []byte{0, 0, 0, 0})
	require.Len(t, vm.irqfds, 1)
	require.Equal(t, uint32(0x61), vm.msiRoute(ioapicPins).Data)
	require.Equal(t, uint64(1), vm.fired(t, ioapicPins))
	m.ReadPBA(0, pba)
	require.Equal(t, byte(0), pba[0])
}

func TestMSIRoutesFallBackToSignalMSI(t *testing.T) {
	t.Run("no irqfd", func(t *testing.T) {
		vm := newFakeRoutingVM()
		r, err := newGSIRoutes(vm, false, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		tab := r.newTable("d")
		require.NoError(t, tab.SendMSI(0, 0xfee00000, 0, 0x41))
		require.NoError(t, tab.SendMSI(0, 0xfee00000, 0, 0x42))
		require.Equal(t, [][3]uint32{{0xfee00000, 0, 0x41}, {0xfee00000, 0, 0x42}}, vm.signals)
		require.Empty(t, vm.irqfds)
		require.Equal(t, 1, vm.sets, "only the PC routes")
		r.close()
	})
	t.Run("routing update fails", func(t *testing.T) {
		vm := newFakeRoutingVM()
		r, err := newGSIRoutes(vm, true, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		defer r.close()
		tab := r.newTable("d")
		require.NoError(t, tab.SendMSI(0, 0xfee00000, 0, 0x41))
		vm.failSets = true
		require.NoError(t, tab.SendMSI(0, 0xfee00000, 0, 0x42))
		require.Equal(t, [][3]uint32{{0xfee00000, 0, 0x42}}, vm.signals, "delivered directly")
		require.Equal(t, uint32(0x41), vm.msiRoute(ioapicPins).Data, "kernel table unchanged")
		vm.failSets = false
		require.NoError(t, tab.SendMSI(0, 0xfee00000, 0, 0x42))
		require.Equal(t, uint32(0x42), vm.msiRoute(ioapicPins).Data, "route retried")
		require.Len(t, vm.signals, 1)
	})
	t.Run("GSIs exhausted", func(t *testing.T) {
		vm := newFakeRoutingVM()
		r, err := newGSIRoutes(vm, true, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		defer r.close()
		r.nextGSI = r.firstMSI + maxMSIRoutes
		tab := r.newTable("d")
		require.NoError(t, tab.SendMSI(0, 0xfee00000, 0, 0x41))
		require.Empty(t, vm.irqfds)
		require.Len(t, vm.signals, 1)
	})
}

// FuzzMSIRoutes drives an MSI-X table bound to the routing table with a
// guest's script of table writes, control writes and device interrupts:
// whatever it writes, each vector holds at most one GSI and one irqfd, the
// table holds the PC routes plus those, and closing releases every irqfd.
func FuzzMSIRoutes(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0xe0, 0xfe, 0x41, 0, 2, 0, 1, 0, 0x80, 3, 0})
	f.Add([]byte{1, 0x0c, 1, 0, 0, 0, 0, 2, 1, 0, 0x0c, 0, 0, 0, 0, 0, 1, 0, 0xc0, 1, 0, 0x80})
	f.Fuzz(func(t *testing.T, script []byte) {
		const vectors = 4
		vm := newFakeRoutingVM()
		r, err := newGSIRoutes(vm, true, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		m, err := pci.NewMSIX(vectors, r.newTable("fuzz"))
		require.NoError(t, err)
		ctl := m.Capability(0, 0, 0x1000)
		for len(script) >= 2 {
			op, arg := script[0], script[1]
			script = script[2:]
			switch op % 3 {
			case 0: // write 4 bytes of the table at arg
				if len(script) < 4 {
					return
				}
				m.WriteTable(uint64(arg)%(vectors*pci.MSIXEntrySize+8), script[:4])
				script = script[4:]
			case 1: // message control
				if len(script) < 1 {
					return
				}
				ctl.Written([]byte{arg, script[0]}, 0, 2)
				script = script[1:]
			case 2: // the device raises a vector (possibly out of range)
				m.Signal(int(int8(arg)))
			}
		}
		require.LessOrEqual(t, len(vm.irqfds), vectors)
		require.LessOrEqual(t, len(vm.table), len(pcIRQRouting())+vectors)
		require.Equal(t, pcIRQRouting(), vm.table[:len(pcIRQRouting())], "PC routes intact")
		for _, rt := range vm.table[len(pcIRQRouting()):] {
			require.Equal(t, kvm.IRQRoutingMSI, rt.Type)
			require.Zero(t, rt.AddressHi, "only APIC addresses are routed")
			require.Equal(t, uint32(0xfee00000), rt.AddressLo&0xfff00000)
		}
		r.close()
		require.Empty(t, vm.irqfds)
	})
}
