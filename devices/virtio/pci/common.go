package pci

import (
	"encoding/binary"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// Offsets in struct virtio_pci_common_cfg (virtio 1.2 §4.1.4.3).
const (
	cDevFeatSel   = 0x00
	cDevFeat      = 0x04
	cDrvFeatSel   = 0x08
	cDrvFeat      = 0x0c
	cConfigVector = 0x10
	cNumQueues    = 0x12
	cStatus       = 0x14
	cGeneration   = 0x15
	cQueueSel     = 0x16
	cQueueSize    = 0x18
	cQueueVector  = 0x1a
	cQueueEnable  = 0x1c
	cQueueNotify  = 0x1e
	cQueueDesc    = 0x20
	cQueueDriver  = 0x28
	cQueueDevice  = 0x30
	cNotifyData   = 0x38
	cQueueReset   = 0x3a
)

// selected is the queue queue_select names, or nil past the last one.
func (t *Transport) selected() *queueRegs {
	if int(t.queueSel) < len(t.queues) {
		return t.queues[t.queueSel]
	}
	return nil
}

// commonImage renders the common configuration structure as the driver
// would read it now.
func (t *Transport) commonImage() []byte {
	b := make([]byte, commonSize)
	le := binary.LittleEndian
	le.PutUint32(b[cDevFeatSel:], t.devFeatSel)
	if t.devFeatSel < 2 {
		le.PutUint32(b[cDevFeat:], uint32(t.offered>>(32*t.devFeatSel)))
	}
	le.PutUint32(b[cDrvFeatSel:], t.drvFeatSel)
	if t.drvFeatSel < 2 {
		le.PutUint32(b[cDrvFeat:], uint32(t.drvFeat>>(32*t.drvFeatSel)))
	}
	le.PutUint16(b[cConfigVector:], uint16(t.configVector.Load()))
	le.PutUint16(b[cNumQueues:], uint16(len(t.queues)))
	b[cStatus] = byte(t.status.Load())
	b[cGeneration] = byte(t.generation.Load())
	le.PutUint16(b[cQueueSel:], t.queueSel)
	if q := t.selected(); q != nil {
		le.PutUint16(b[cQueueSize:], q.size)
		le.PutUint16(b[cQueueVector:], uint16(q.vector.Load()))
		if q.enabled {
			le.PutUint16(b[cQueueEnable:], 1)
		}
		le.PutUint16(b[cQueueNotify:], t.queueSel)
		le.PutUint64(b[cQueueDesc:], q.desc)
		le.PutUint64(b[cQueueDriver:], q.driver)
		le.PutUint64(b[cQueueDevice:], q.device)
		le.PutUint16(b[cNotifyData:], t.queueSel)
	} else {
		le.PutUint16(b[cQueueVector:], NoVector)
	}
	return b
}

func (t *Transport) readCommon(off uint64, data []byte) {
	t.mu.Lock()
	img := t.commonImage()
	t.mu.Unlock()
	clear(data)
	if off < uint64(len(img)) {
		copy(data, img[off:])
	}
}

// writeCommon merges the write into the current image and acts on every
// field it touched, so partial and split (two 32-bit halves of a 64-bit
// address) writes behave as the driver meant.
func (t *Transport) writeCommon(off uint64, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	img := t.commonImage()
	if off >= uint64(len(img)) {
		return
	}
	n := copy(img[off:], data)
	end := off + uint64(n)
	touches := func(field, size uint64) bool { return off < field+size && end > field }
	le := binary.LittleEndian
	if touches(cDevFeatSel, 4) {
		t.devFeatSel = le.Uint32(img[cDevFeatSel:])
	}
	if touches(cDrvFeatSel, 4) {
		t.drvFeatSel = le.Uint32(img[cDrvFeatSel:])
	}
	if touches(cDrvFeat, 4) && t.drvFeatSel < 2 && t.status.Load()&StatusFeaturesOK == 0 {
		shift := 32 * t.drvFeatSel
		t.drvFeat = t.drvFeat&^(0xffffffff<<shift) | uint64(le.Uint32(img[cDrvFeat:]))<<shift
	}
	if touches(cConfigVector, 2) {
		t.configVector.Store(t.vector(le.Uint16(img[cConfigVector:])))
	}
	if touches(cQueueSel, 2) {
		t.queueSel = le.Uint16(img[cQueueSel:])
	}
	if q := t.selected(); q != nil {
		if touches(cQueueVector, 2) {
			q.vector.Store(t.vector(le.Uint16(img[cQueueVector:])))
		}
		// A queue's layout is fixed once the driver enabled it.
		if !q.enabled {
			if touches(cQueueSize, 2) {
				q.size = le.Uint16(img[cQueueSize:])
			}
			if touches(cQueueDesc, 8) {
				q.desc = le.Uint64(img[cQueueDesc:])
			}
			if touches(cQueueDriver, 8) {
				q.driver = le.Uint64(img[cQueueDriver:])
			}
			if touches(cQueueDevice, 8) {
				q.device = le.Uint64(img[cQueueDevice:])
			}
			if touches(cQueueEnable, 2) && le.Uint16(img[cQueueEnable:]) == 1 {
				q.enabled = true
			}
		}
	}
	if touches(cStatus, 1) {
		t.setStatus(img[cStatus])
	}
}

// vector validates an MSI-X vector the driver assigns; a vector the table
// does not have reads back as NoVector, which tells the driver it failed.
func (t *Transport) vector(v uint16) uint32 {
	if int(v) >= t.msix.Vectors() {
		return NoVector
	}
	return uint32(v)
}

// setStatus runs the device status state machine (virtio 1.2 §3.1.1).
func (t *Transport) setStatus(s byte) {
	if s == 0 {
		t.resetLocked()
		return
	}
	old := byte(t.status.Load())
	if s&StatusFeaturesOK != 0 && old&StatusFeaturesOK == 0 {
		// Accept only a subset of what was offered, and only modern drivers.
		if t.drvFeat&^t.offered != 0 || t.drvFeat&virtio.FeatureVersion1 == 0 {
			t.log.Warn("virtio-pci: driver features refused", "device", t.name,
				"offered", t.offered, "driver", t.drvFeat)
			s &^= StatusFeaturesOK
		}
	}
	// Only a reset clears status bits (virtio 1.2 §2.1.1): a driver that
	// drops DRIVER_OK and sets it again does not activate the device twice.
	s |= old
	t.status.Store(uint32(s))
	if s&StatusDriverOK != 0 && old&StatusDriverOK == 0 && s&StatusFailed == 0 {
		t.activateLocked()
	}
}

func (t *Transport) activateLocked() {
	fail := func(err error) {
		t.log.Warn("virtio-pci: activation failed", "device", t.name, "err", err)
		t.status.Or(StatusNeedsReset)
		interrupt{t}.Config()
	}
	if t.status.Load()&StatusFeaturesOK == 0 {
		fail(errNoFeaturesOK)
		return
	}
	qs := make([]*queue.Queue, len(t.queues))
	for i, r := range t.queues {
		if !r.enabled {
			continue
		}
		if r.size > r.max {
			fail(errQueueTooBig{i, r.size, r.max})
			return
		}
		q, err := queue.New(t.mem, queue.Config{
			Size: r.size, Desc: r.desc, Avail: r.driver, Used: r.device,
			EventIdx: t.drvFeat&virtio.FeatureEventIdx != 0,
			Indirect: t.drvFeat&virtio.FeatureIndirectDesc != 0,
		})
		if err != nil {
			fail(err)
			return
		}
		qs[i], r.ready = q, q
	}
	t.notifyMu.Lock()
	defer t.notifyMu.Unlock()
	if err := t.dev.Activate(virtio.Activation{Features: t.drvFeat, Queues: qs, Mem: t.mem, IRQ: interrupt{t}}); err != nil {
		fail(err)
		return
	}
	t.active = true
}
