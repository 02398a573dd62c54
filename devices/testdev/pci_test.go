package testdev

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/bus"
	"github.com/vmmdev/vmm/devices/pci"
)

// fakeKVM stands in for KVM_IOEVENTFD: a write that matches a watch is
// counted there and never reaches the device.
type fakeKVM struct {
	watches map[*fakeWatch]bool
	fail    bool
}

type fakeWatch struct {
	k          *fakeKVM
	addr, data uint64
	pio, match bool
	n          uint64
}

func (w *fakeWatch) Take() uint64 { n := w.n; w.n = 0; return n }
func (w *fakeWatch) Close()       { delete(w.k.watches, w) }

func (k *fakeKVM) Watch(addr uint64, pio, match bool, data uint64) (Watch, error) {
	if k.fail {
		return nil, fmt.Errorf("no ioeventfd")
	}
	w := &fakeWatch{k: k, addr: addr, pio: pio, match: match, data: data}
	k.watches[w] = true
	return w, nil
}

// pciGuest drives pci-testdev the way kvm-unit-tests' lib/pci-testdev.c
// does, through a real PCI bus.
type pciGuest struct {
	t        *testing.T
	kvm      *fakeKVM
	mmio     *bus.Bus
	pio      *bus.Bus
	mem, io  uint64
	dev      *PCITestdev
	pbus     *pci.Bus
	slot     uint64
	exitsOut int // writes that reached the device
}

func newPCIGuest(t *testing.T, kvm *fakeKVM) *pciGuest {
	g := &pciGuest{t: t, kvm: kvm, mmio: bus.New("mmio"), pio: bus.New("pio"), mem: 0xc0001000, io: 0xc100}
	var err error
	g.pbus, err = pci.NewBus(g.mmio, g.pio, nil)
	require.NoError(t, err)
	var ev Notifiers
	if kvm != nil {
		ev = kvm
	}
	g.dev, err = NewPCITestdev(ev, nil)
	require.NoError(t, err)
	slot, err := g.pbus.Add(g.dev.Function())
	require.NoError(t, err)
	g.slot = uint64(slot)
	g.cfg32(0x00)
	require.Equal(t, uint32(PCIDevice)<<16|PCIVendor, g.cfg32(0x00))
	g.setBARs(g.mem, g.io)
	return g
}

func (g *pciGuest) cfg32(reg uint64) uint32 {
	d := make([]byte, 4)
	g.pbus.ReadConfig(0, g.slot, 0, reg, d)
	return binary.LittleEndian.Uint32(d)
}

func (g *pciGuest) setBARs(mem, io uint64) {
	g.mem, g.io = mem, io
	g.pbus.WriteConfig(0, g.slot, 0, 0x10, binary.LittleEndian.AppendUint32(nil, uint32(mem)))
	g.pbus.WriteConfig(0, g.slot, 0, 0x14, binary.LittleEndian.AppendUint32(nil, uint32(io)))
	g.pbus.WriteConfig(0, g.slot, 0, 0x04, []byte{pci.CommandIO | pci.CommandMemory, 0})
}

func (g *pciGuest) base(io bool) (*bus.Bus, uint64) {
	if io {
		return g.pio, g.io
	}
	return g.mmio, g.mem
}

func (g *pciGuest) write(io bool, off uint64, data []byte) {
	b, base := g.base(io)
	if g.kvm != nil {
		for w := range g.kvm.watches {
			if w.pio == io && w.addr == base+off && len(data) == 1 && (!w.match || uint64(data[0]) == w.data) {
				w.n++
				return
			}
		}
	}
	g.exitsOut++
	require.True(g.t, b.Write(base+off, data), "write at %#x", base+off)
}

func (g *pciGuest) read(io bool, off uint64, n int) []byte {
	b, base := g.base(io)
	d := make([]byte, n)
	require.True(g.t, b.Read(base+off, d), "read at %#x", base+off)
	return d
}

func (g *pciGuest) readl(io bool, off uint64) uint32 {
	return binary.LittleEndian.Uint32(g.read(io, off, 4))
}

// one is pci_testdev_one: start test nr, check count 0, read width, data
// and offset, write 16 times, and accept a count of 0 (eventfd) or 16.
func (g *pciGuest) one(io bool, nr byte) (ok bool, count uint32, name string) {
	g.write(io, hdrTest, []byte{nr})
	if g.readl(io, hdrCount) != 0 {
		return false, 0, ""
	}
	width := g.read(io, hdrWidth, 1)[0]
	if width != 1 && width != 2 && width != 4 {
		return false, 0, ""
	}
	data := g.readl(io, hdrData)
	off := g.readl(io, hdrOffset)
	for range 16 {
		g.write(io, uint64(off), binary.LittleEndian.AppendUint32(nil, data)[:width])
	}
	count = g.readl(io, hdrCount)
	raw := g.read(io, hdrName, 32)
	for i, c := range raw {
		if c == 0 {
			name = string(raw[:i])
			break
		}
	}
	return count == 0 || count == 16, count, name
}

func (g *pciGuest) all(io bool) []string {
	var names []string
	for nr := byte(0); ; nr++ {
		ok, count, name := g.one(io, nr)
		if !ok {
			return names
		}
		require.Equal(g.t, uint32(16), count, "%s: every write counted", name)
		names = append(names, name)
	}
}

var wantPCITests = []string{"mmio-no-eventfd", "mmio-wildcard-eventfd", "mmio-datamatch-eventfd",
	"portio-no-eventfd", "portio-wildcard-eventfd", "portio-datamatch-eventfd"}

// TestPCITestdevAsKVMUnitTests: the six tests pass as kvm-unit-tests runs
// them, the eventfd ones through the ioeventfd (no exits), with exact counts.
func TestPCITestdevAsKVMUnitTests(t *testing.T) {
	g := newPCIGuest(t, &fakeKVM{watches: map[*fakeWatch]bool{}})
	names := append(g.all(false), g.all(true)...)
	require.Equal(t, wantPCITests, names)
	// Exits: per test the start write (and per BAR the start of test 3,
	// which ends the scan), plus 16 for each no-eventfd test.
	require.Equal(t, 2*4+2*16, g.exitsOut)
	require.Empty(t, g.kvm.watches, "the last start (test 3) stopped every watch")
}

// TestPCITestdevWithoutIOEventFD: with no ioeventfds (or failing ones)
// every write exits and is counted the same.
func TestPCITestdevWithoutIOEventFD(t *testing.T) {
	for _, k := range []*fakeKVM{nil, {watches: map[*fakeWatch]bool{}, fail: true}} {
		g := newPCIGuest(t, k)
		names := append(g.all(false), g.all(true)...)
		require.Equal(t, wantPCITests, names)
		require.Equal(t, 8+6*16, g.exitsOut)
	}
}

func TestPCITestdevRules(t *testing.T) {
	g := newPCIGuest(t, &fakeKVM{watches: map[*fakeWatch]bool{}})
	require.Equal(t, make([]byte, 16), g.read(false, 0, 16), "no test running: zeros")
	require.Equal(t, uint32(0x0000ff01), func() uint32 {
		g.pbus.WriteConfig(0, g.slot, 0, 0x14, []byte{0xff, 0xff, 0xff, 0xff})
		defer g.setBARs(g.mem, g.io)
		return g.cfg32(0x14)
	}(), "BAR 1: 256 I/O ports")

	// Datamatch: other values and widths are not counted, wildcard counts
	// any value and width.
	g.write(false, hdrTest, []byte{2})
	off := uint64(g.readl(false, hdrOffset))
	g.write(false, off, []byte{0x11})
	g.write(false, off, []byte{pciTestData, 0})
	g.write(false, off+1, []byte{pciTestData})
	require.Equal(t, uint32(0), g.readl(false, hdrCount))
	g.write(false, off, []byte{pciTestData})
	require.Equal(t, uint32(1), g.readl(false, hdrCount))
	g.write(false, hdrTest, []byte{1})
	off = uint64(g.readl(false, hdrOffset))
	g.write(false, off, []byte{0x11})
	g.write(false, off, []byte{1, 2, 3, 4}) // not the ioeventfd's width: exits, counted
	require.Equal(t, uint32(2), g.readl(false, hdrCount))

	// The header reads through either BAR; a portio test's address in the
	// memory BAR is not its address.
	g.write(true, hdrTest, []byte{0})
	require.Equal(t, uint32(PCIIOBARSize/2+3), g.readl(false, hdrOffset))
	g.write(false, PCIIOBARSize/2+3, []byte{pciTestData})
	require.Equal(t, uint32(0), g.readl(true, hdrCount))

	// A 4-byte write of a test number starts it; an unknown one stops all.
	g.write(true, hdrTest, binary.LittleEndian.AppendUint32(nil, 2))
	require.Equal(t, "portio-datamatch-eventfd", string(g.read(true, hdrName, 24)))
	require.Len(t, g.kvm.watches, 1)
	g.write(true, hdrTest, []byte{3})
	require.Empty(t, g.kvm.watches)
	require.Equal(t, make([]byte, 8), g.read(true, 0, 8))

	// The ioeventfd follows its BAR, and goes while the BAR is off.
	g.write(false, hdrTest, []byte{1})
	off = uint64(g.readl(false, hdrOffset))
	g.write(false, off, []byte{7})
	g.setBARs(0xc0002000, g.io)
	for w := range g.kvm.watches {
		require.Equal(t, uint64(0xc0002000)+off, w.addr)
	}
	g.write(false, off, []byte{7})
	require.Equal(t, uint32(2), g.readl(false, hdrCount), "counts kept across the move")
	g.pbus.WriteConfig(0, g.slot, 0, 0x04, []byte{pci.CommandIO, 0})
	require.Empty(t, g.kvm.watches)
	g.dev.Close()
}

// FuzzPCITestdev: any sequence of accesses leaves the device consistent:
// reads stay inside the header, and the ioeventfds are the running test's.
func FuzzPCITestdev(f *testing.F) {
	f.Add([]byte{0, 0, 1, 2, 0x80, 8, 0xfa, 1, 0, 0, 0, 4, 12})
	f.Fuzz(func(t *testing.T, ops []byte) {
		g := newPCIGuest(t, &fakeKVM{watches: map[*fakeWatch]bool{}})
		for len(ops) >= 3 {
			op, off, v := ops[0], uint64(ops[1])|uint64(ops[0]&0x70)<<4, ops[2]
			ops = ops[3:]
			io := op&1 != 0
			width := []int{1, 2, 4, 8}[op>>1&3]
			if io {
				off = min(off, PCIIOBARSize-uint64(width))
			}
			if op&0x80 != 0 {
				g.read(io, off, width)
				continue
			}
			data := make([]byte, width)
			data[0] = v
			if op&0x08 != 0 {
				g.setBARs(g.mem^0x1000, g.io^0x100)
				continue
			}
			g.write(io, off, data)
		}
		require.LessOrEqual(t, len(g.kvm.watches), 1)
		g.dev.Close()
		require.Empty(t, g.kvm.watches)
	})
}
