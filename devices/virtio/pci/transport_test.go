package pci

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/bus"
	"github.com/vmmdev/vmm/devices/internal/fakeram"
	"github.com/vmmdev/vmm/devices/pci"
	"github.com/vmmdev/vmm/devices/virtio"
)

type flatMem = fakeram.RAM

type fakeDev struct {
	mu       sync.Mutex
	act      *virtio.Activation
	notified []int
	resets   int
	cfg      [8]byte
	failAct  error
}

func (d *fakeDev) Type() virtio.DeviceType { return virtio.TypeRNG }
func (d *fakeDev) Features() uint64        { return virtio.FeatureEventIdx | 1<<5 }
func (d *fakeDev) QueueSizes() []uint16    { return []uint16{16, 8} }
func (d *fakeDev) ReadConfig(off uint64, data []byte) {
	for i := range data {
		data[i] = 0
		if off+uint64(i) < 8 {
			data[i] = d.cfg[off+uint64(i)]
		}
	}
}
func (d *fakeDev) WriteConfig(off uint64, data []byte) {
	if off < 8 {
		copy(d.cfg[off:], data)
	}
}
func (d *fakeDev) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failAct != nil {
		return d.failAct
	}
	d.act = &a
	return nil
}
func (d *fakeDev) Notify(i int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.notified = append(d.notified, i)
}
func (d *fakeDev) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.act != nil {
		d.resets++
	}
	d.act = nil
}

type msiLog struct {
	mu   sync.Mutex
	sent []uint32
}

func (l *msiLog) SendMSI(_ int, lo, hi, data uint32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, data)
	return nil
}

type fakeEvents struct {
	added   map[uint64]func()
	removed int
}

func (e *fakeEvents) Add(addr uint64, length int, fn func()) (func(), error) {
	if length != 2 {
		return nil, errors.New("length")
	}
	e.added[addr] = fn
	return func() { delete(e.added, addr); e.removed++ }, nil
}

type rig struct {
	t    *testing.T
	dev  *fakeDev
	msi  *msiLog
	ev   *fakeEvents
	tr   *Transport
	pbus *pci.Bus
	mmio *bus.Bus
	slot uint64
}

const barAt = 0xc0000000

func newRig(t *testing.T) *rig {
	r := &rig{t: t, dev: &fakeDev{}, msi: &msiLog{}, ev: &fakeEvents{added: map[uint64]func(){}}, mmio: bus.New("mmio")}
	var err error
	r.tr, err = New(r.dev, Config{Name: "rng", Mem: make(flatMem, 0x10000), MSI: r.msi, Events: r.ev})
	require.NoError(t, err)
	r.pbus, err = pci.NewBus(r.mmio, nil, nil)
	require.NoError(t, err)
	s, err := r.pbus.Add(r.tr.Function())
	require.NoError(t, err)
	r.slot = uint64(s)
	r.cfgW(0x10, 4, barAt)
	r.cfgW(0x04, 2, pci.CommandMemory|pci.CommandBusMaster)
	t.Cleanup(r.tr.Close)
	return r
}

func (r *rig) cfgR(off uint64, n int) uint64 {
	d := make([]byte, 8)
	r.pbus.ReadConfig(0, r.slot, 0, off, d[:n])
	return binary.LittleEndian.Uint64(d)
}

func (r *rig) cfgW(off uint64, n int, v uint64) {
	d := binary.LittleEndian.AppendUint64(nil, v)
	r.pbus.WriteConfig(0, r.slot, 0, off, d[:n])
}

func (r *rig) r(off uint64, n int) uint64 {
	d := make([]byte, 8)
	require.True(r.t, r.mmio.Read(barAt+off, d[:n]))
	return binary.LittleEndian.Uint64(d)
}

func (r *rig) w(off uint64, n int, v uint64) {
	d := binary.LittleEndian.AppendUint64(nil, v)
	require.True(r.t, r.mmio.Write(barAt+off, d[:n]))
}

// caps walks the capability list: cfg_type -> offset for vendor capabilities.
func (r *rig) caps() map[byte]uint64 {
	out := map[byte]uint64{}
	for p := r.cfgR(0x34, 1); p != 0; p = r.cfgR(p+1, 1) {
		switch r.cfgR(p, 1) {
		case 0x09:
			require.Equal(r.t, uint64(0), r.cfgR(p+4, 1), "BAR 0")
			out[byte(r.cfgR(p+3, 1))] = r.cfgR(p+8, 4)
		case pci.CapMSIX:
			out[0x11] = p
		}
	}
	return out
}

func TestIdentityAndCapabilities(t *testing.T) {
	r := newRig(t)
	assert.Equal(t, uint64(0x10441af4), r.cfgR(0, 4))
	assert.Equal(t, uint64(0xff000001), r.cfgR(8, 4), "class 0xff0000, revision 1")
	assert.Equal(t, uint64(0x11001af4), r.cfgR(0x2c, 4))
	c := r.caps()
	assert.Equal(t, map[byte]uint64{capCommon: commonOff, capNotify: notifyOff, capISR: isrOff, capDevice: deviceOff, capPCICfg: 0, 0x11: 0x40}, c)
	assert.Equal(t, uint64(2), r.cfgR(0x42, 2)&0x7ff, "3 MSI-X vectors")
	assert.Len(t, r.ev.added, 2, "one ioeventfd per queue")
	assert.Contains(t, r.ev.added, uint64(barAt+notifyOff+4))
}

// initDriver does what Linux's virtio_pci_modern does up to DRIVER_OK.
func (r *rig) initDriver(features uint64) {
	r.w(cStatus, 1, 0)
	r.w(cStatus, 1, StatusAcknowledge)
	r.w(cStatus, 1, StatusAcknowledge|StatusDriver)
	r.w(cDrvFeatSel, 4, 0)
	r.w(cDrvFeat, 4, features&0xffffffff)
	r.w(cDrvFeatSel, 4, 1)
	r.w(cDrvFeat, 4, features>>32)
	r.w(cStatus, 1, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
}

func (r *rig) setupQueue(i uint16, size uint16, desc, avail, used uint64, vector uint16) {
	r.w(cQueueSel, 2, uint64(i))
	r.w(cQueueSize, 2, uint64(size))
	r.w(cQueueDesc, 4, desc)
	r.w(cQueueDesc+4, 4, 0)
	r.w(cQueueDriver, 8, avail)
	r.w(cQueueDevice, 8, used)
	r.w(cQueueVector, 2, uint64(vector))
	r.w(cQueueEnable, 2, 1)
}

func TestDriverLifecycle(t *testing.T) {
	r := newRig(t)
	// MSI-X on, vectors programmed and unmasked.
	r.cfgW(0x42, 2, 0x8000)
	for v := range 3 {
		r.w(msixTableOff+uint64(16*v), 4, 0xfee00000)
		r.w(msixTableOff+uint64(16*v)+8, 4, uint64(0x30+v))
		r.w(msixTableOff+uint64(16*v)+12, 4, 0)
	}
	r.w(cDevFeatSel, 4, 0)
	assert.Equal(t, uint64(virtio.FeatureEventIdx|1<<5), r.r(cDevFeat, 4))
	r.w(cDevFeatSel, 4, 1)
	assert.Equal(t, uint64(1), r.r(cDevFeat, 4), "VERSION_1")
	r.w(cDevFeatSel, 4, 2)
	assert.Equal(t, uint64(0), r.r(cDevFeat, 4))
	assert.Equal(t, uint64(2), r.r(cNumQueues, 2))

	r.initDriver(virtio.FeatureVersion1 | virtio.FeatureEventIdx)
	assert.Equal(t, uint64(StatusFeaturesOK), r.r(cStatus, 1)&StatusFeaturesOK)
	r.w(cConfigVector, 2, 0)
	assert.Equal(t, uint64(0), r.r(cConfigVector, 2))
	r.w(cQueueSel, 2, 0)
	assert.Equal(t, uint64(16), r.r(cQueueSize, 2))
	assert.Equal(t, uint64(0), r.r(cQueueNotify, 2))
	r.setupQueue(0, 8, 0x1000, 0x2000, 0x3000, 1)
	assert.Equal(t, uint64(0x1000), r.r(cQueueDesc, 8))
	r.w(cQueueSel, 2, 1)
	r.w(cQueueVector, 2, 7)
	assert.Equal(t, uint64(NoVector), r.r(cQueueVector, 2), "vector beyond the table")
	r.w(cQueueSel, 2, 5)
	assert.Equal(t, uint64(0), r.r(cQueueSize, 2), "no such queue")

	r.w(cStatus, 1, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	require.NotNil(t, r.dev.act)
	a := r.dev.act
	assert.Equal(t, uint64(virtio.FeatureVersion1|virtio.FeatureEventIdx), a.Features)
	require.Len(t, a.Queues, 2)
	require.NotNil(t, a.Queues[0])
	assert.Nil(t, a.Queues[1], "queue 1 not enabled")
	assert.Equal(t, uint16(8), a.Queues[0].Size())
	assert.True(t, a.Queues[0].Config().EventIdx)

	// Clearing DRIVER_OK without a reset changes nothing.
	r.w(cStatus, 1, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	assert.Equal(t, uint64(0x0f), r.r(cStatus, 1))
	r.w(cStatus, 1, 0x0f)
	assert.Same(t, a, r.dev.act, "not activated twice")

	// Enabled queues are frozen.
	r.w(cQueueSel, 2, 0)
	r.w(cQueueDesc, 8, 0x5000)
	assert.Equal(t, uint64(0x1000), r.r(cQueueDesc, 8))

	// Notifications: MMIO and ioeventfd paths.
	r.w(notifyOff, 2, 0)
	r.ev.added[barAt+notifyOff+4]()
	assert.Equal(t, []int{0, 1}, r.dev.notified)

	// Interrupts: queue 0 on vector 1, config on vector 0.
	a.IRQ.Queue(0)
	a.IRQ.Config()
	a.IRQ.Queue(9)
	assert.Equal(t, []uint32{0x31, 0x30}, r.msi.sent)
	assert.Equal(t, uint64(3), r.r(isrOff, 1), "ISR")
	assert.Equal(t, uint64(0), r.r(isrOff, 1), "ISR clears on read")
	assert.Equal(t, uint64(1), r.r(cGeneration, 1))

	// Device config passes through.
	r.w(deviceOff+2, 2, 0xbeef)
	assert.Equal(t, uint64(0xbeef), r.r(deviceOff+2, 2))

	// The device hits a bad chain.
	a.IRQ.NeedsReset(errors.New("bad chain"))
	assert.Equal(t, uint64(StatusNeedsReset), r.r(cStatus, 1)&StatusNeedsReset)

	// Reset.
	r.w(cStatus, 1, 0)
	assert.Equal(t, 1, r.dev.resets)
	assert.Equal(t, uint64(0), r.r(cStatus, 1))
	assert.Equal(t, uint64(16), r.r(cQueueSize, 2))
	assert.Equal(t, uint64(NoVector), r.r(cQueueVector, 2))
	assert.Equal(t, uint64(0), r.r(cQueueEnable, 2))
	r.w(notifyOff, 2, 0)
	assert.Equal(t, []int{0, 1}, r.dev.notified, "no notifications while inactive")
}

func TestFeaturesRefused(t *testing.T) {
	r := newRig(t)
	r.initDriver(virtio.FeatureVersion1 | 1<<6) // bit 6 was not offered
	assert.Equal(t, uint64(0), r.r(cStatus, 1)&StatusFeaturesOK)
	r.initDriver(1 << 5) // legacy driver: no VERSION_1
	assert.Equal(t, uint64(0), r.r(cStatus, 1)&StatusFeaturesOK)
	// DRIVER_OK without FEATURES_OK: not activated, needs reset.
	r.w(cStatus, 1, StatusAcknowledge|StatusDriver|StatusDriverOK)
	assert.Nil(t, r.dev.act)
	assert.Equal(t, uint64(StatusNeedsReset), r.r(cStatus, 1)&StatusNeedsReset)
}

func TestHostileQueues(t *testing.T) {
	for _, tc := range []struct {
		name              string
		size              uint16
		desc, avail, used uint64
	}{
		{"not a power of two", 6, 0x1000, 0x2000, 0x3000},
		{"larger than offered", 32, 0x1000, 0x2000, 0x3000},
		{"outside memory", 8, 0xfff0, 0x2000, 0x3000},
		{"misaligned", 8, 0x1008, 0x2000, 0x3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.initDriver(virtio.FeatureVersion1)
			r.setupQueue(0, tc.size, tc.desc, tc.avail, tc.used, 0)
			r.w(cStatus, 1, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
			assert.Nil(t, r.dev.act)
			assert.Equal(t, uint64(StatusNeedsReset), r.r(cStatus, 1)&StatusNeedsReset)
		})
	}
	r := newRig(t)
	r.dev.failAct = errors.New("no backend")
	r.initDriver(virtio.FeatureVersion1)
	r.w(cStatus, 1, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	assert.Equal(t, uint64(StatusNeedsReset), r.r(cStatus, 1)&StatusNeedsReset)
}

func TestBARMoveMovesIOEvents(t *testing.T) {
	r := newRig(t)
	r.cfgW(0x10, 4, 0xd0000000)
	assert.Equal(t, 2, r.ev.removed)
	assert.Contains(t, r.ev.added, uint64(0xd0000000+notifyOff))
	r.cfgW(0x04, 2, 0)
	assert.Empty(t, r.ev.added)
}

// FuzzCommonConfig throws arbitrary accesses at BAR 0: no panics, and the
// status never claims FEATURES_OK for features that were not offered.
func FuzzCommonConfig(f *testing.F) {
	f.Add([]byte{0x14, 1, 1, 0x14, 1, 3, 0x0c, 4, 0xff, 0xff, 0xff, 0xff, 0x14, 1, 0x0f})
	f.Add([]byte{0x16, 2, 0, 0, 0x18, 2, 3, 0, 0x1c, 2, 1, 0, 0x14, 1, 0x0f})
	f.Fuzz(func(t *testing.T, script []byte) {
		dev := &fakeDev{}
		tr, err := New(dev, Config{Name: "f", Mem: make(flatMem, 0x10000), MSI: &msiLog{}})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		bd := barDevice{tr}
		for len(script) >= 2 {
			off, n := uint64(script[0]), int(script[1]%9)
			script = script[2:]
			data := make([]byte, n)
			copy(data, script)
			script = script[min(n, len(script)):]
			if off&0x80 != 0 {
				bd.Read(off&0x7f|uint64(off&0x40)<<8, data)
			} else {
				bd.Write(off|uint64(off&0x40)<<8, data)
			}
		}
		if tr.Status()&StatusFeaturesOK != 0 && tr.drvFeat&^tr.offered != 0 {
			t.Fatalf("FEATURES_OK with features %#x, offered %#x", tr.drvFeat, tr.offered)
		}
	})
}

func TestPCICfgWindow(t *testing.T) {
	r := newRig(t)
	var p uint64
	for q := r.cfgR(0x34, 1); q != 0; q = r.cfgR(q+1, 1) {
		if r.cfgR(q, 1) == 0x09 && r.cfgR(q+3, 1) == capPCICfg {
			p = q
		}
	}
	require.NotZero(t, p, "VIRTIO_PCI_CAP_PCI_CFG present")
	assert.Equal(t, uint64(20), r.cfgR(p+2, 1), "cap_len")
	// num_queues through the window.
	r.cfgW(p+4, 1, 0)
	r.cfgW(p+8, 4, cNumQueues)
	r.cfgW(p+12, 4, 2)
	assert.Equal(t, uint64(2), r.cfgR(p+16, 4))
	// Write device_feature_select through it, read it back directly.
	r.cfgW(p+8, 4, cDevFeatSel)
	r.cfgW(p+12, 4, 4)
	r.cfgW(p+16, 4, 1)
	assert.Equal(t, uint64(1), r.r(cDevFeatSel, 4))
	// Bad length, bad BAR, past the BAR: nothing happens, data reads zero.
	for _, bad := range [][3]uint64{{0, cDevFeatSel, 3}, {1, cDevFeatSel, 4}, {0, barSize - 2, 4}} {
		r.cfgW(p+4, 1, bad[0])
		r.cfgW(p+8, 4, bad[1])
		r.cfgW(p+12, 4, bad[2])
		r.cfgW(p+16, 4, 0)
		assert.Equal(t, uint64(0), r.cfgR(p+16, 4))
	}
	assert.Equal(t, uint64(1), r.r(cDevFeatSel, 4), "unchanged by the bad accesses")
}
