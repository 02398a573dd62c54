package rng

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/internal/vqdriver"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

type fakeIRQ = vqdriver.IRQ

func waitIRQ(t *testing.T, irq *fakeIRQ) {
	t.Helper()
	select {
	case <-irq.Queues:
	case err := <-irq.Resets:
		t.Fatalf("device needs reset: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no interrupt within 10s")
	}
}

func start(t *testing.T, dev *Device, drv *vqdriver.Driver) *fakeIRQ {
	t.Helper()
	q, err := drv.Queue(true)
	require.NoError(t, err)
	irq := vqdriver.NewIRQ()
	require.NoError(t, dev.Activate(virtio.Activation{Features: dev.Features(), Queues: []*queue.Queue{q}, Mem: drv.Mem, IRQ: irq}))
	t.Cleanup(dev.Reset)
	return irq
}

func TestServesEntropy(t *testing.T) {
	counter := byte(0)
	dev := New(func(p []byte) (int, error) {
		for i := range p {
			counter++
			p[i] = counter
		}
		return len(p), nil
	})
	drv := vqdriver.New(QueueSize, 1<<20)
	irq := start(t, dev, drv)
	head, views := drv.Offer(vqdriver.Buf{Len: 10, Writable: true}, vqdriver.Buf{Len: 6, Writable: true})
	dev.Notify(0)
	waitIRQ(t, irq)
	id, n, ok := drv.Used()
	require.True(t, ok)
	assert.Equal(t, uint32(head), id)
	assert.Equal(t, uint32(16), n)
	assert.Equal(t, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, views[0])
	assert.Equal(t, []byte{11, 12, 13, 14, 15, 16}, views[1])
	assert.Equal(t, uint64(16), dev.Served())
	_, _, ok = drv.Used() // re-arms used_event, as Linux's driver does
	require.False(t, ok)

	// A huge request is capped.
	_, views = drv.Offer(vqdriver.Buf{Len: 2 * maxRequest, Writable: true})
	dev.Notify(0)
	waitIRQ(t, irq)
	_, n, _ = drv.Used()
	assert.Equal(t, uint32(maxRequest), n)
	assert.True(t, bytes.Equal(views[0][maxRequest:], make([]byte, maxRequest)), "nothing written past the cap")
}

func TestRealGetrandom(t *testing.T) {
	dev := New(nil)
	drv := vqdriver.New(QueueSize, 1<<20)
	irq := start(t, dev, drv)
	_, views := drv.Offer(vqdriver.Buf{Len: 64, Writable: true})
	dev.Notify(0)
	waitIRQ(t, irq)
	assert.NotEqual(t, make([]byte, 64), views[0])
}

func TestSourceFailureNeedsReset(t *testing.T) {
	dev := New(func(p []byte) (int, error) { return 0, errors.New("no entropy") })
	drv := vqdriver.New(QueueSize, 1<<20)
	irq := start(t, dev, drv)
	drv.Offer(vqdriver.Buf{Len: 8, Writable: true})
	dev.Notify(0)
	select {
	case err := <-irq.Resets:
		assert.ErrorContains(t, err, "no entropy")
	case <-time.After(10 * time.Second):
		t.Fatal("no NeedsReset")
	}
	dev.Reset()
	dev.Reset() // idempotent
	dev.Notify(0)
}

func TestHostileChainNeedsReset(t *testing.T) {
	dev := New(nil)
	drv := vqdriver.New(QueueSize, 1<<20)
	irq := start(t, dev, drv)
	drv.Offer(vqdriver.Buf{Len: 8, Writable: true, GPA: 1 << 40})
	dev.Notify(0)
	select {
	case err := <-irq.Resets:
		assert.ErrorIs(t, err, queue.ErrOutOfRange)
	case <-time.After(10 * time.Second):
		t.Fatal("no NeedsReset")
	}
}

func TestActivateNeedsQueue(t *testing.T) {
	dev := New(nil)
	assert.Error(t, dev.Activate(virtio.Activation{Queues: []*queue.Queue{nil}}))
	assert.Equal(t, virtio.TypeRNG, dev.Type())
	assert.Equal(t, []uint16{QueueSize}, dev.QueueSizes())
}
