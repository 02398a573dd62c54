package blk

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/internal/vqdriver"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

type fakeIRQ = vqdriver.IRQ

func activate(t *testing.T, dev *Device, drv *vqdriver.Driver) *fakeIRQ {
	t.Helper()
	q, err := drv.Queue(true)
	require.NoError(t, err)
	irq := vqdriver.NewIRQ()
	require.NoError(t, dev.Activate(virtio.Activation{
		Features: dev.Features() | virtio.FeatureVersion1, Queues: []*queue.Queue{q}, Mem: drv.Mem, IRQ: irq}))
	t.Cleanup(dev.Reset)
	return irq
}

func waitIRQ(t *testing.T, irq *fakeIRQ) {
	t.Helper()
	select {
	case i := <-irq.Queues:
		require.Equal(t, 0, i)
	case err := <-irq.Resets:
		t.Fatalf("device needs reset: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no interrupt within 10s")
	}
}

func TestDeviceServesQueue(t *testing.T) {
	disk, path := newImage(t, 64, Options{Serial: "s1"})
	img, _ := os.ReadFile(path)
	dev := NewDevice(disk, nil)
	require.Equal(t, virtio.TypeBlock, dev.Type())
	require.NotZero(t, dev.Features()&virtio.FeatureEventIdx)
	drv := vqdriver.New(QueueSize, 1<<20)
	irq := activate(t, dev, drv)

	head, views := drv.Offer(vqdriver.Buf{Data: header(TypeIn, 4)},
		vqdriver.Buf{Len: 4096, Writable: true}, vqdriver.Buf{Data: []byte{0xee}, Writable: true})
	dev.Notify(0)
	waitIRQ(t, irq)
	id, n, ok := drv.Used()
	require.True(t, ok)
	require.Equal(t, uint32(head), id)
	require.Equal(t, uint32(4097), n)
	require.Equal(t, byte(StatusOK), views[2][0])
	require.Equal(t, img[4*512:4*512+4096], views[1])

	// A batch of writes, one notification.
	var status [][]byte
	for i := range 8 {
		_, v := drv.Offer(vqdriver.Buf{Data: header(TypeOut, uint64(i))},
			vqdriver.Buf{Data: make([]byte, 512)}, vqdriver.Buf{Data: []byte{0xee}, Writable: true})
		status = append(status, v[2])
	}
	dev.Notify(0)
	got := 0
	for got < 8 {
		if _, _, ok := drv.Used(); ok {
			got++
			continue
		}
		waitIRQ(t, irq)
	}
	for _, s := range status {
		require.Equal(t, byte(StatusOK), s[0])
	}
	img, _ = os.ReadFile(path)
	require.Equal(t, make([]byte, 8*512), img[:8*512])
}

func TestDeviceHostileChainNeedsReset(t *testing.T) {
	disk, _ := newImage(t, 8, Options{})
	dev := NewDevice(disk, nil)
	drv := vqdriver.New(8, 1<<16)
	irq := activate(t, dev, drv)
	// A chain that points outside guest memory.
	drv.Offer(vqdriver.Buf{Data: header(TypeIn, 0)}, vqdriver.Buf{Len: 1, Writable: true, GPA: 1 << 50})
	dev.Notify(0)
	select {
	case err := <-irq.Resets:
		require.ErrorIs(t, err, queue.ErrOutOfRange)
	case <-time.After(10 * time.Second):
		t.Fatal("device did not ask for a reset")
	}
	dev.Reset() // returns although the worker was parked after the error
	dev.Reset() // idempotent
	dev.Notify(0)
}

func TestDeviceConfigAndActivationErrors(t *testing.T) {
	disk, _ := newImage(t, 8, Options{ReadOnly: true})
	dev := NewDevice(disk, nil)
	b := make([]byte, 8)
	dev.ReadConfig(0, b)
	require.Equal(t, []byte{8, 0, 0, 0, 0, 0, 0, 0}, b)
	dev.WriteConfig(0, []byte{1})
	dev.ReadConfig(0, b)
	require.Equal(t, byte(8), b[0])
	require.Error(t, dev.Activate(virtio.Activation{Queues: []*queue.Queue{nil}}))
	require.Equal(t, []uint16{QueueSize}, dev.QueueSizes())
}
