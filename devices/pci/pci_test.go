package pci

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/bus"
)

type regDev struct{ last uint64 }

func (d *regDev) Read(off uint64, data []byte) {
	d.last = off
	for i := range data {
		data[i] = 0xab
	}
}
func (d *regDev) Write(off uint64, data []byte) { d.last = off }

func cfgRead32(b *Bus, dev, reg uint64) uint32 {
	d := make([]byte, 4)
	b.ReadConfig(0, dev, 0, reg, d)
	return binary.LittleEndian.Uint32(d)
}

func cfgWrite32(b *Bus, dev, reg uint64, v uint32) {
	d := binary.LittleEndian.AppendUint32(nil, v)
	b.WriteConfig(0, dev, 0, reg, d)
}

func cfgWrite16(b *Bus, dev, reg uint64, v uint16) {
	b.WriteConfig(0, dev, 0, reg, binary.LittleEndian.AppendUint16(nil, v))
}

func newTestBus(t *testing.T) (*Bus, *bus.Bus) {
	t.Helper()
	mmio := bus.New("mmio")
	b, err := NewBus(mmio, nil, nil)
	require.NoError(t, err)
	return b, mmio
}

func TestHostBridgeIdentity(t *testing.T) {
	b, _ := newTestBus(t)
	assert.Equal(t, uint32(0x12378086), cfgRead32(b, 0, 0))
	assert.Equal(t, uint32(0x06000002), cfgRead32(b, 0, 8), "class/revision")
	assert.Equal(t, uint32(0x11001af4), cfgRead32(b, 0, 0x2c), "subsystem")
	assert.Equal(t, uint32(0xffffffff), cfgRead32(b, 1, 0), "absent device")
	d := make([]byte, 4)
	b.ReadConfig(0, 0, 1, 0, d)
	assert.Equal(t, []byte{0xff, 0xff, 0xff, 0xff}, d, "function 1")
	b.ReadConfig(1, 0, 0, 0, d)
	assert.Equal(t, []byte{0xff, 0xff, 0xff, 0xff}, d, "bus 1")
	// Read-only identity.
	cfgWrite32(b, 0, 0, 0)
	assert.Equal(t, uint32(0x12378086), cfgRead32(b, 0, 0))
}

func TestConfigPorts(t *testing.T) {
	b, _ := newTestBus(t)
	p := b.ConfigPorts()
	d := make([]byte, 4)
	// Linux's mechanism #1 probe: a byte write to 0xCFB must not disturb
	// the address, and the enable bit reads back.
	p.Write(3, []byte{1})
	p.Write(0, binary.LittleEndian.AppendUint32(nil, 0x80000000))
	p.Read(0, d)
	assert.Equal(t, uint32(0x80000000), binary.LittleEndian.Uint32(d))
	p.Read(4, d)
	assert.Equal(t, uint32(0x12378086), binary.LittleEndian.Uint32(d))
	w := make([]byte, 2)
	p.Read(6, w)
	assert.Equal(t, uint16(0x1237), binary.LittleEndian.Uint16(w), "device id through 0xCFE")
	p.Write(0, binary.LittleEndian.AppendUint32(nil, 0x80000008))
	p.Read(7, d[:1])
	assert.Equal(t, byte(0x06), d[0], "base class through 0xCFF")
	// Disabled: all ones.
	p.Write(0, binary.LittleEndian.AppendUint32(nil, 0x00000000))
	p.Read(4, d)
	assert.Equal(t, uint32(0xffffffff), binary.LittleEndian.Uint32(d))
	// An access that runs past 0xCFF.
	p.Write(0, binary.LittleEndian.AppendUint32(nil, 0x80000000))
	p.Read(6, d)
	assert.Equal(t, uint32(0xffffffff), binary.LittleEndian.Uint32(d))
}

// regByte is a one-byte register recording writes.
type regByte struct{ v byte }

func (r *regByte) Read(_ uint64, d []byte)  { d[0] = r.v }
func (r *regByte) Write(_ uint64, d []byte) { r.v = d[0] }

func TestConfigPortsPort1(t *testing.T) {
	b, _ := newTestBus(t)
	p := b.ConfigPorts()
	rcr := &regByte{}
	p.SetPort1(rcr)
	p.Write(0, binary.LittleEndian.AppendUint32(nil, 0x80000000))
	p.Write(1, []byte{0x06})
	assert.Equal(t, byte(0x06), rcr.v, "byte write to 0xCF9")
	d := make([]byte, 4)
	p.Read(0, d)
	assert.Equal(t, uint32(0x80000000), binary.LittleEndian.Uint32(d), "address register untouched")
	p.Read(1, d[:1])
	assert.Equal(t, byte(0x06), d[0])
	// The dword write still sets the address, not the register.
	p.Write(0, binary.LittleEndian.AppendUint32(nil, 0x80000100))
	assert.Equal(t, byte(0x06), rcr.v)
}

func TestECAM(t *testing.T) {
	b, _ := newTestBus(t)
	e := b.ECAM()
	d := make([]byte, 4)
	e.Read(0, d)
	assert.Equal(t, uint32(0x12378086), binary.LittleEndian.Uint32(d))
	e.Read(0x100, d)
	assert.Equal(t, uint32(0), binary.LittleEndian.Uint32(d), "extended space of a conventional function")
	e.Read(1<<15, d)
	assert.Equal(t, uint32(0xffffffff), binary.LittleEndian.Uint32(d), "device 1 absent")
	e.Read(0xffe, d)
	assert.Equal(t, uint32(0xffffffff), binary.LittleEndian.Uint32(d), "access crossing a function's 4 KiB")
	e.Read(ECAMBusSize, d)
	assert.Equal(t, uint32(0xffffffff), binary.LittleEndian.Uint32(d), "beyond bus 0")
}

func testFunction(t *testing.T, name string, dev bus.Device, moved func(uint64, bool)) *Function {
	t.Helper()
	f, err := NewFunction(name, Identity{Vendor: 0x1af4, Device: 0x1044, Class: 0xff0000},
		[]BAR{{Index: 0, Kind: BARMem32, Size: 0x4000, Dev: dev, Moved: moved}, {Index: 2, Kind: BARMem64, Size: 0x1000, Prefetchable: true, Dev: dev}},
		[]Capability{{ID: 0x09, Body: []byte{1, 2, 3}}, {ID: 0x0a, Body: []byte{0, 0}, WriteMask: []byte{0xff, 0x0f}}}, nil)
	require.NoError(t, err)
	return f
}

func TestBARSizingAndMoves(t *testing.T) {
	b, mmio := newTestBus(t)
	dev := &regDev{}
	var moves []uint64
	f := testFunction(t, "f", dev, func(a uint64, mapped bool) {
		if mapped {
			moves = append(moves, a)
		} else {
			moves = append(moves, 0)
		}
	})
	slot, err := b.Add(f)
	require.NoError(t, err)
	require.Equal(t, 1, slot)
	s := uint64(slot)

	cfgWrite32(b, s, 0x10, 0xffffffff)
	assert.Equal(t, uint32(0xffffc000), cfgRead32(b, s, 0x10), "32-bit BAR size")
	cfgWrite32(b, s, 0x18, 0xffffffff)
	cfgWrite32(b, s, 0x1c, 0xffffffff)
	assert.Equal(t, uint32(0xfffff00c), cfgRead32(b, s, 0x18), "64-bit prefetchable low half")
	assert.Equal(t, uint32(0xffffffff), cfgRead32(b, s, 0x1c), "64-bit high half")
	assert.Empty(t, moves, "nothing decoded while memory decoding is off")

	cfgWrite32(b, s, 0x10, 0xc0000000)
	cfgWrite32(b, s, 0x18, 0xc0004000)
	cfgWrite32(b, s, 0x1c, 0)
	cfgWrite16(b, s, 0x04, CommandMemory)
	assert.Equal(t, []uint64{0xc0000000}, moves)
	addr, mapped := f.BARAddress(2)
	assert.True(t, mapped)
	assert.Equal(t, uint64(0xc0004000), addr)
	d := make([]byte, 4)
	require.True(t, mmio.Read(0xc0000010, d))
	assert.Equal(t, uint64(0x10), dev.last)

	// Move BAR 0 on top of BAR 2: not decoded, and the old range is free.
	cfgWrite32(b, s, 0x10, 0xc0004000)
	assert.Equal(t, []uint64{0xc0000000, 0}, moves)
	_, mapped = f.BARAddress(0)
	assert.False(t, mapped)
	assert.False(t, mmio.Read(0xc0000010, d))
	// Move it somewhere free.
	cfgWrite32(b, s, 0x10, 0xd0000000)
	assert.Equal(t, []uint64{0xc0000000, 0, 0xd0000000}, moves)
	assert.True(t, mmio.Read(0xd0003ffc, d))

	// Decoding off unmaps everything.
	cfgWrite16(b, s, 0x04, 0)
	assert.False(t, mmio.Read(0xd0000000, d))
	assert.False(t, mmio.Read(0xc0004000, d))
	assert.Equal(t, uint16(0), f.Command())
}

func TestCapabilities(t *testing.T) {
	b, _ := newTestBus(t)
	f := testFunction(t, "f", &regDev{}, nil)
	_, err := b.Add(f)
	require.NoError(t, err)
	assert.Equal(t, uint32(statusCapList), cfgRead32(b, 1, 4)>>16&statusCapList)
	ptr := cfgRead32(b, 1, regCapPtr) & 0xff
	require.Equal(t, uint32(0x40), ptr)
	first := cfgRead32(b, 1, uint64(ptr))
	assert.Equal(t, uint32(0x09), first&0xff)
	next := first >> 8 & 0xff
	require.Equal(t, uint32(0x48), next)
	second := cfgRead32(b, 1, uint64(next))
	assert.Equal(t, uint32(0x0a), second&0xff)
	assert.Equal(t, uint32(0), second>>8&0xff, "end of list")
	// The second capability's body is partly writable.
	cfgWrite32(b, 1, uint64(next), 0xffffffff)
	assert.Equal(t, uint32(0x0fff000a), cfgRead32(b, 1, uint64(next)))
}

func TestNewFunctionRejects(t *testing.T) {
	dev := &regDev{}
	for _, bars := range [][]BAR{
		{{Index: 6, Size: 0x1000, Dev: dev}},
		{{Index: 5, Kind: BARMem64, Size: 0x1000, Dev: dev}},
		{{Index: 0, Size: 0x1800, Dev: dev}},
		{{Index: 0, Size: 0x100, Dev: dev}},
		{{Index: 0, Size: 0x1000}},
		{{Index: 0, Kind: BARMem64, Size: 0x1000, Dev: dev}, {Index: 1, Size: 0x1000, Dev: dev}},
	} {
		_, err := NewFunction("x", Identity{}, bars, nil, nil)
		assert.ErrorIs(t, err, ErrInvalid, "%+v", bars)
	}
	_, err := NewFunction("x", Identity{}, nil, []Capability{{ID: 1, Body: make([]byte, 200)}}, nil)
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = NewFunction("x", Identity{InterruptPin: 5}, nil, nil, nil)
	assert.ErrorIs(t, err, ErrInvalid)
}

func TestBusFull(t *testing.T) {
	b, _ := newTestBus(t)
	for i := 1; i < Slots; i++ {
		f, err := NewFunction("f", Identity{}, nil, nil, nil)
		require.NoError(t, err)
		_, err = b.Add(f)
		require.NoError(t, err)
	}
	f, _ := NewFunction("f", Identity{}, nil, nil, nil)
	_, err := b.Add(f)
	assert.True(t, errors.Is(err, ErrBusFull))
}

type msiLog struct {
	sent [][3]uint32
	vecs []int
}

func (l *msiLog) SendMSI(v int, lo, hi, data uint32) error {
	l.sent = append(l.sent, [3]uint32{lo, hi, data})
	l.vecs = append(l.vecs, v)
	return nil
}

func TestMSIX(t *testing.T) {
	log := &msiLog{}
	m, err := NewMSIX(3, log)
	require.NoError(t, err)
	b, mmio := newTestBus(t)
	cap := m.Capability(0, 0x1000, 0x1800)
	f, err := NewFunction("m", Identity{}, []BAR{{Index: 0, Size: 0x2000, Dev: msixBAR{m}}}, []Capability{cap}, nil)
	require.NoError(t, err)
	_, err = b.Add(f)
	require.NoError(t, err)
	cfgWrite32(b, 1, 0x10, 0xc0000000)
	cfgWrite16(b, 1, 4, CommandMemory)

	assert.Equal(t, uint32(0x00020011), cfgRead32(b, 1, 0x40)&0xffff00ff, "table size 3 (encoded 2)")
	assert.Equal(t, uint32(0x1000), cfgRead32(b, 1, 0x44))
	assert.Equal(t, uint32(0x1800), cfgRead32(b, 1, 0x48))

	w32 := func(addr uint64, v uint32) { mmio.Write(addr, binary.LittleEndian.AppendUint32(nil, v)) }
	r32 := func(addr uint64) uint32 {
		d := make([]byte, 4)
		mmio.Read(addr, d)
		return binary.LittleEndian.Uint32(d)
	}
	assert.Equal(t, uint32(1), r32(0xc000100c), "vectors start masked")
	w32(0xc0001010, 0xfee00000)
	w32(0xc0001018, 0x41)
	m.Signal(1)
	assert.Empty(t, log.sent, "MSI-X disabled")

	// Enable with the function masked: the interrupt is pending.
	cfgWrite16(b, 1, 0x42, msixCtrlEnable|msixCtrlMask)
	m.Signal(1)
	assert.Empty(t, log.sent)
	w32(0xc000101c, 0xfffffff0) // garbage in reserved bits, vector unmasked
	assert.Equal(t, uint32(0), r32(0xc000101c), "reserved control bits read as zero")
	assert.Empty(t, log.sent, "function still masked")
	assert.Equal(t, uint32(2), r32(0xc0001800), "raised while the function was masked: pending")
	cfgWrite16(b, 1, 0x42, msixCtrlEnable)
	assert.Equal(t, [][3]uint32{{0xfee00000, 0, 0x41}}, log.sent, "sent on function unmask")
	assert.Equal(t, uint32(0), r32(0xc0001800))
	m.Signal(1)
	assert.Len(t, log.sent, 2)

	// Masked vector: pending bit, sent on unmask.
	w32(0xc000101c, 1)
	m.Signal(1)
	assert.Equal(t, uint32(2), r32(0xc0001800), "PBA bit 1")
	w32(0xc000101c, 0)
	assert.Len(t, log.sent, 3)
	assert.Equal(t, uint32(0), r32(0xc0001800))

	// A vector with a non-APIC address is dropped, an out-of-range one ignored.
	w32(0xc0001000, 0x12345678)
	w32(0xc000100c, 0)
	m.Signal(0)
	m.Signal(7)
	m.Signal(-1)
	assert.Len(t, log.sent, 3)
	assert.Equal(t, []int{1, 1, 1}, log.vecs, "the sender is told the vector")
	assert.Equal(t, uint64(1), m.Dropped())
	// Writes past the table vanish.
	m.WriteTable(0x30, []byte{1, 2, 3, 4})
	m.WriteTable(^uint64(0), []byte{1, 2})
	m.Reset()
	assert.False(t, m.Enabled())
}

// msixBAR puts the table at 0x1000 and the PBA at 0x1800.
type msixBAR struct{ m *MSIX }

func (b msixBAR) Read(off uint64, data []byte) {
	switch {
	case off >= 0x1800:
		b.m.ReadPBA(off-0x1800, data)
	case off >= 0x1000:
		b.m.ReadTable(off-0x1000, data)
	}
}

func (b msixBAR) Write(off uint64, data []byte) {
	if off >= 0x1000 && off < 0x1800 {
		b.m.WriteTable(off-0x1000, data)
	}
}

func TestCapabilityHooks(t *testing.T) {
	b, _ := newTestBus(t)
	var wrote [][2]int
	reads := 0
	f, err := NewFunction("h", Identity{}, nil, []Capability{{
		ID: 0x09, Body: make([]byte, 6), WriteMask: []byte{0, 0, 0xff, 0xff, 0xff, 0xff},
		Written: func(body []byte, off, n int) { wrote = append(wrote, [2]int{off, n}) },
		Read: func(body []byte, off, n int) {
			reads++
			body[0] = byte(reads)
		},
	}}, nil)
	require.NoError(t, err)
	_, err = b.Add(f)
	require.NoError(t, err)
	assert.Equal(t, uint32(0x010009), cfgRead32(b, 1, 0x40)&0xff00ff, "read hook refreshed body[0]")
	cfgWrite32(b, 1, 0x44, 0x11223344)
	assert.Equal(t, [][2]int{{2, 4}}, wrote, "write covered body bytes 2-5")
	cfgWrite16(b, 1, 0x3e, 0xffff) // before the capability, touches nothing of it
	assert.Len(t, wrote, 1)
	cfgRead32(b, 1, 0x00)
	assert.Equal(t, 1, reads, "reads elsewhere do not call the hook")
}

// TestIOBAR: an I/O BAR sizes as 16-bit ports with bit 0 set, is decoded on
// the port bus only while COMMAND.IO is on, and never while a bus has no
// port mapper.
func TestIOBAR(t *testing.T) {
	mmio, pio := bus.New("mmio"), bus.New("pio")
	b, err := NewBus(mmio, pio, nil)
	require.NoError(t, err)
	dev := &regDev{}
	var moves []uint64
	f, err := NewFunction("io", Identity{Vendor: 0x1b36, Device: 5}, []BAR{
		{Index: 1, Kind: BARIO, Size: 256, Dev: dev, Moved: func(addr uint64, mapped bool) {
			if !mapped {
				addr = 0
			}
			moves = append(moves, addr)
		}},
	}, nil, nil)
	require.NoError(t, err)
	slot, err := b.Add(f)
	require.NoError(t, err)
	s := uint64(slot)

	cfgWrite32(b, s, 0x14, 0xffffffff)
	assert.Equal(t, uint32(0x0000ff01), cfgRead32(b, s, 0x14), "256 ports, I/O space, upper half zero")
	cfgWrite32(b, s, 0x14, 0xc100)
	cfgWrite16(b, s, 0x04, CommandMemory)
	assert.Empty(t, moves, "memory decoding does not decode an I/O BAR")
	d := make([]byte, 1)
	assert.False(t, pio.Read(0xc100, d))
	cfgWrite16(b, s, 0x04, CommandIO)
	assert.Equal(t, []uint64{0xc100}, moves)
	require.True(t, pio.Read(0xc183, d))
	assert.Equal(t, uint64(0x83), dev.last)
	assert.False(t, mmio.Read(0xc183, d), "never on the memory bus")
	addr, mapped := f.BARAddress(1)
	assert.True(t, mapped)
	assert.Equal(t, uint64(0xc100), addr)
	cfgWrite16(b, s, 0x04, 0)
	assert.Equal(t, []uint64{0xc100, 0}, moves)
	assert.False(t, pio.Read(0xc100, d))

	for _, size := range []uint64{2, 512, 12} {
		_, err := NewFunction("bad", Identity{}, []BAR{{Index: 0, Kind: BARIO, Size: size, Dev: dev}}, nil, nil)
		assert.ErrorIs(t, err, ErrInvalid, "size %d", size)
	}

	// Without a port mapper nothing is decoded.
	nb, err := NewBus(mmio, nil, nil)
	require.NoError(t, err)
	g, err := NewFunction("io2", Identity{}, []BAR{{Index: 0, Kind: BARIO, Size: 16, Dev: dev}}, nil, nil)
	require.NoError(t, err)
	gs, err := nb.Add(g)
	require.NoError(t, err)
	cfgWrite32(nb, uint64(gs), 0x10, 0xd000)
	cfgWrite16(nb, uint64(gs), 0x04, CommandIO)
	_, mapped = g.BARAddress(0)
	assert.False(t, mapped)
}

func TestConfigStats(t *testing.T) {
	b, _ := newTestBus(t)
	p := b.ConfigPorts()
	d := make([]byte, 4)
	// The host bridge three times through the ports, once through ECAM.
	for range 3 {
		p.Write(0, binary.LittleEndian.AppendUint32(nil, 0x80000000))
		p.Read(4, d)
	}
	b.ECAM().Read(0, d)
	cfgWrite32(b, 0, 0x04, 0)
	// A probe of device 1 on buses 0-9: absent everywhere.
	for bus := range uint64(10) {
		b.ReadConfig(bus, 1, 0, 0, d)
	}
	// The address register alone is no configuration access.
	p.Write(0, binary.LittleEndian.AppendUint32(nil, 0x80000800))
	s := b.ConfigStats()
	assert.Equal(t, uint64(15), s.Accesses)
	assert.Equal(t, uint64(10), s.Absent)
	assert.Equal(t, 10, s.AbsentBuses)
	require.Len(t, s.Functions, maxTopFunctions)
	assert.Equal(t, FunctionAccesses{BDF: "00:00.0", Present: true, Accesses: 5}, s.Functions[0])
	assert.Equal(t, FunctionAccesses{BDF: "00:01.0", Accesses: 1}, s.Functions[1])
	assert.Equal(t, FunctionAccesses{BDF: "01:01.0", Accesses: 1}, s.Functions[2])
}

func TestConfigStatsBounded(t *testing.T) {
	b, _ := newTestBus(t)
	d := make([]byte, 4)
	for bus := range uint64(256) {
		for dev := range uint64(Slots) {
			b.ReadConfig(bus, dev, 0, 0, d)
		}
	}
	s := b.ConfigStats()
	assert.Equal(t, uint64(256*Slots), s.Accesses)
	assert.Equal(t, uint64(256*Slots-1), s.Absent)
	assert.Equal(t, 256, s.AbsentBuses)
	assert.Len(t, b.config.byFn, maxCountedFunctions)
}
