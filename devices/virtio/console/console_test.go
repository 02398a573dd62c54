package console

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/internal/vqdriver"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

type fakeIRQ = vqdriver.IRQ

func waitIRQ(t *testing.T, irq *fakeIRQ, want int) {
	t.Helper()
	select {
	case q := <-irq.Queues:
		require.Equal(t, want, q)
	case err := <-irq.Resets:
		t.Fatalf("device needs reset: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no interrupt within 10s")
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTransmitAndReceive(t *testing.T) {
	out := &syncBuf{}
	dev := New(out)
	rxd, txd := vqdriver.New(QueueSize, 1<<16), vqdriver.New(QueueSize, 1<<16)
	rxq, err := rxd.Queue(true)
	require.NoError(t, err)
	txq, err := txd.Queue(true)
	require.NoError(t, err)
	irq := vqdriver.NewIRQ()
	require.NoError(t, dev.Activate(virtio.Activation{Queues: []*queue.Queue{rxq, txq}, IRQ: irq}))
	defer dev.Reset()

	txd.Offer(vqdriver.Buf{Data: []byte("hello, ")}, vqdriver.Buf{Data: []byte("hvc0\n")})
	dev.Notify(TXQueue)
	waitIRQ(t, irq, TXQueue)
	assert.Equal(t, "hello, hvc0\n", out.String())
	assert.Equal(t, uint64(12), dev.Written())
	_, n, ok := txd.Used()
	assert.True(t, ok)
	assert.Equal(t, uint32(0), n)
	_, _, ok = txd.Used() // re-arms used_event, as Linux's driver does
	require.False(t, ok)

	// Input waits for a receive buffer.
	done := make(chan struct{})
	delivered := make(chan bool)
	go func() { delivered <- dev.Input([]byte("typed"), done) }()
	assert.True(t, <-delivered, "the worker takes input even before buffers exist")
	_, views := rxd.Offer(vqdriver.Buf{Len: 3, Writable: true})
	dev.Notify(RXQueue)
	waitIRQ(t, irq, RXQueue)
	_, n, _ = rxd.Used()
	assert.Equal(t, uint32(3), n)
	assert.Equal(t, "typ", string(views[0]))
	_, _, ok = rxd.Used()
	require.False(t, ok)
	_, views = rxd.Offer(vqdriver.Buf{Len: 16, Writable: true})
	dev.Notify(RXQueue)
	waitIRQ(t, irq, RXQueue)
	_, n, _ = rxd.Used()
	assert.Equal(t, "ed", string(views[0][:n]))

	// Input while the device is reset blocks until done.
	dev.Reset()
	close(done)
	assert.False(t, dev.Input([]byte("x"), done))
	assert.True(t, dev.Input(nil, done))
}

func TestHostileTransmit(t *testing.T) {
	dev := New(nil)
	rxd, txd := vqdriver.New(QueueSize, 1<<16), vqdriver.New(QueueSize, 1<<16)
	rxq, _ := rxd.Queue(false)
	txq, _ := txd.Queue(false)
	irq := vqdriver.NewIRQ()
	require.NoError(t, dev.Activate(virtio.Activation{Queues: []*queue.Queue{rxq, txq}, IRQ: irq}))
	defer dev.Reset()
	txd.Offer(vqdriver.Buf{Len: 4, Writable: true}, vqdriver.Buf{Data: []byte("x")})
	dev.Notify(TXQueue)
	select {
	case err := <-irq.Resets:
		assert.ErrorIs(t, err, queue.ErrDirection)
	case <-time.After(10 * time.Second):
		t.Fatal("no NeedsReset")
	}
	assert.Error(t, dev.Activate(virtio.Activation{Queues: []*queue.Queue{rxq, txq}}), "already active")
	assert.Error(t, New(nil).Activate(virtio.Activation{Queues: []*queue.Queue{rxq, nil}}))
}
