package net

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/vmmdev/vmm/internal/testenv"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/internal/vqdriver"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// fakeTap is a SOCK_SEQPACKET pair standing in for a tap: the device's end
// keeps frame boundaries as a tap does; host is the network side.
func fakeTap(t *testing.T) (*Tap, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, unix.SetNonblock(fds[0], true))
	tap := &Tap{f: os.NewFile(uintptr(fds[0]), "fake-tap"), name: "fake"}
	t.Cleanup(func() { tap.Close(); unix.Close(fds[1]) })
	return tap, fds[1]
}

type fakeIRQ = vqdriver.IRQ

type rig struct {
	dev    *Device
	rx, tx *vqdriver.Driver
	irq    *fakeIRQ
	host   int
}

func newRig(t *testing.T, features uint64) *rig {
	t.Helper()
	tap, host := fakeTap(t)
	dev, err := New(tap, nil, nil)
	require.NoError(t, err)
	r := &rig{dev: dev, rx: vqdriver.New(queueSize, 1<<20), tx: vqdriver.New(queueSize, 1<<20),
		irq: vqdriver.NewIRQ(), host: host}
	rxq, err := r.rx.Queue(true)
	require.NoError(t, err)
	txq, err := r.tx.Queue(true)
	require.NoError(t, err)
	require.NoError(t, dev.Activate(virtio.Activation{Features: features, Queues: []*queue.Queue{rxq, txq}, IRQ: r.irq}))
	t.Cleanup(dev.Reset)
	return r
}

// used waits for the next used element of d, failing after 10 s.
func (r *rig) used(t *testing.T, d *vqdriver.Driver) (uint32, uint32) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if id, n, ok := d.Used(); ok {
			return id, n
		}
		select {
		case <-r.irq.Queues:
		case err := <-r.irq.Resets:
			t.Fatalf("device needs reset: %v", err)
		case <-deadline:
			t.Fatal("no used element within 10s")
		}
	}
}

func frame(n int, seed byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = seed + byte(i*13)
	}
	return f
}

func TestTransmit(t *testing.T) {
	r := newRig(t, FeatureMrgRxbuf)
	pkt := append(make([]byte, HeaderSize), frame(1500, 1)...)
	head, _ := r.tx.Offer(vqdriver.Buf{Data: pkt[:HeaderSize]}, vqdriver.Buf{Data: pkt[HeaderSize:800]}, vqdriver.Buf{Data: pkt[800:]})
	r.dev.Notify(txQueue)
	id, n := r.used(t, r.tx)
	require.Equal(t, uint32(head), id)
	require.Zero(t, n)
	got := make([]byte, 4096)
	m, err := unix.Read(r.host, got)
	require.NoError(t, err)
	require.Equal(t, pkt, got[:m])
}

func TestTransmitDropsMalformed(t *testing.T) {
	r := newRig(t, FeatureMrgRxbuf)
	r.tx.Offer(vqdriver.Buf{Data: make([]byte, HeaderSize)})                                    // no frame
	r.tx.Offer(vqdriver.Buf{Data: make([]byte, 100)}, vqdriver.Buf{Len: 10, Writable: true})    // writable part
	r.tx.Offer(vqdriver.Buf{Data: make([]byte, maxFrame)}, vqdriver.Buf{Data: make([]byte, 1)}) // too long
	good := append(make([]byte, HeaderSize), frame(60, 9)...)
	r.tx.Offer(vqdriver.Buf{Data: good})
	r.dev.Notify(txQueue)
	for range 4 {
		r.used(t, r.tx)
	}
	got := make([]byte, 4096)
	m, err := unix.Read(r.host, got)
	require.NoError(t, err)
	require.Equal(t, good, got[:m], "only the good frame reaches the tap")
	require.Equal(t, uint64(3), r.dev.Drops())
}

func TestReceiveMergeable(t *testing.T) {
	r := newRig(t, FeatureMrgRxbuf)
	pkt := append(make([]byte, HeaderSize), frame(4000, 3)...)
	var views [][]byte
	for range 4 {
		_, v := r.rx.Offer(vqdriver.Buf{Len: 1536, Writable: true})
		views = append(views, v[0])
	}
	r.dev.Notify(rxQueue)
	_, err := unix.Write(r.host, pkt)
	require.NoError(t, err)
	var got []byte
	var lens []uint32
	for range 3 { // 4012 bytes in 1536-byte buffers
		id, n := r.used(t, r.rx)
		lens = append(lens, n)
		got = append(got, views[id][:n]...)
	}
	require.Equal(t, []uint32{1536, 1536, 940}, lens)
	require.Equal(t, uint16(3), binary.LittleEndian.Uint16(got[10:]), "num_buffers")
	require.Equal(t, pkt[:10], got[:10])
	require.Equal(t, pkt[HeaderSize:], got[HeaderSize:])
	_, _, ok := r.rx.Used()
	require.False(t, ok, "the fourth buffer stays with the device")
}

func TestReceiveWaitsForBuffers(t *testing.T) {
	r := newRig(t, FeatureMrgRxbuf)
	pkt := append(make([]byte, HeaderSize), frame(200, 5)...)
	_, err := unix.Write(r.host, pkt)
	require.NoError(t, err)
	// No buffers yet: the device must park, then deliver on the notification.
	_, v := r.rx.Offer(vqdriver.Buf{Len: 2048, Writable: true})
	r.dev.Notify(rxQueue)
	_, n := r.used(t, r.rx)
	require.Equal(t, uint32(len(pkt)), n)
	require.Equal(t, pkt[HeaderSize:], v[0][HeaderSize:n])
}

func TestReceiveWithoutMergeableDropsOversized(t *testing.T) {
	r := newRig(t, 0)
	_, small := r.rx.Offer(vqdriver.Buf{Len: 100, Writable: true})
	r.dev.Notify(rxQueue)
	_, err := unix.Write(r.host, append(make([]byte, HeaderSize), frame(500, 1)...))
	require.NoError(t, err)
	_, n := r.used(t, r.rx)
	require.Zero(t, n, "too-small buffer returned unused")
	require.Equal(t, make([]byte, 100), small[0])
	require.Equal(t, uint64(1), r.dev.Drops())

	pkt := append(make([]byte, HeaderSize), frame(300, 2)...)
	_, big := r.rx.Offer(vqdriver.Buf{Len: 2048, Writable: true})
	r.dev.Notify(rxQueue)
	_, err = unix.Write(r.host, pkt)
	require.NoError(t, err)
	_, n = r.used(t, r.rx)
	require.Equal(t, uint32(len(pkt)), n)
	require.Zero(t, binary.LittleEndian.Uint16(big[0][10:]))
	require.True(t, bytes.Equal(pkt[HeaderSize:], big[0][HeaderSize:n]))
}

func TestHostileRxChainNeedsReset(t *testing.T) {
	r := newRig(t, FeatureMrgRxbuf)
	r.rx.Offer(vqdriver.Buf{Len: 64, Writable: true, GPA: 1 << 60})
	r.dev.Notify(rxQueue)
	_, err := unix.Write(r.host, append(make([]byte, HeaderSize), frame(60, 1)...))
	require.NoError(t, err)
	select {
	case err := <-r.irq.Resets:
		require.True(t, errors.Is(err, queue.ErrOutOfRange), "%v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no reset request")
	}
}

func TestResetAndReactivate(t *testing.T) {
	r := newRig(t, FeatureMrgRxbuf)
	r.dev.Reset() // the receiver is parked in a tap read
	r.dev.Reset()
	r.dev.Notify(rxQueue)
	rx, tx := vqdriver.New(queueSize, 1<<16), vqdriver.New(queueSize, 1<<16)
	rxq, _ := rx.Queue(true)
	txq, _ := tx.Queue(true)
	require.NoError(t, r.dev.Activate(virtio.Activation{Features: FeatureMrgRxbuf, Queues: []*queue.Queue{rxq, txq}, IRQ: r.irq}))
	require.Error(t, r.dev.Activate(virtio.Activation{Queues: []*queue.Queue{rxq, txq}}))
	_, v := rx.Offer(vqdriver.Buf{Len: 2048, Writable: true})
	r.dev.Notify(rxQueue)
	pkt := append(make([]byte, HeaderSize), frame(80, 7)...)
	_, err := unix.Write(r.host, pkt)
	require.NoError(t, err)
	r.rx = rx
	_, n := r.used(t, rx)
	require.Equal(t, pkt[HeaderSize:], v[0][HeaderSize:n])
}

func TestConfigAndFeatures(t *testing.T) {
	tap, _ := fakeTap(t)
	_, err := New(tap, []byte{1, 2, 3, 4, 5, 6}, nil)
	require.Error(t, err, "multicast MAC")
	dev, err := New(tap, []byte{0x02, 0, 0, 0, 0, 9}, nil)
	require.NoError(t, err)
	c := make([]byte, 10)
	dev.ReadConfig(0, c)
	require.Equal(t, []byte{2, 0, 0, 0, 0, 9, 1, 0, 0, 0}, c)
	dev.ReadConfig(1<<40, c)
	require.Equal(t, make([]byte, 10), c)
	require.Zero(t, dev.Features()&FeatureGuestTSO4, "no offloads on a tap without them")
	require.NotZero(t, dev.Features()&FeatureMrgRxbuf)
	random, err := New(tap, nil, nil)
	require.NoError(t, err)
	require.Equal(t, byte(2), random.MAC()[0]&3, "locally administered unicast")

	require.Equal(t, 0, tapOffloads(FeatureGuestTSO4))
	require.Equal(t, tunFCSUM|tunFTSO4|tunFTSO6, tapOffloads(FeatureGuestCSUM|FeatureGuestTSO4|FeatureGuestTSO6))
}

func TestOpenTap(t *testing.T) {
	_, err := OpenTap("")
	require.ErrorIs(t, err, ErrNoTap)
	_, err = OpenTap("this-name-is-far-too-long")
	require.ErrorIs(t, err, ErrNoTap)
	tap, err := OpenTap("vmmtest%d")
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EACCES) {
		testenv.Skip(t, "no tap devices here: %v", err)
	}
	require.NoError(t, err)
	defer tap.Close()
	require.Regexp(t, `^vmmtest\d+$`, tap.Name())
	require.True(t, tap.Offloads(), "Linux taps take checksum and TSO offloads")
	require.NoError(t, tap.SetOffload(tunFCSUM|tunFTSO4))
}

// TestSetLink: the status field follows the host's link, each change
// signals the active driver once, and a reset device signals nothing.
func TestSetLink(t *testing.T) {
	r := newRig(t, FeatureMrgRxbuf)
	status := func() byte {
		c := make([]byte, 2)
		r.dev.ReadConfig(6, c)
		return c[0]
	}
	require.Equal(t, byte(statusLinkUp), status())
	r.dev.SetLink(false)
	r.dev.SetLink(false)
	require.Equal(t, byte(0), status())
	require.Equal(t, int32(1), r.irq.Configs.Load())
	r.dev.SetLink(true)
	require.Equal(t, byte(statusLinkUp), status())
	require.Equal(t, int32(2), r.irq.Configs.Load())
	r.dev.Reset()
	r.dev.SetLink(false)
	require.Equal(t, byte(0), status(), "the state holds while the device is reset")
	require.Equal(t, int32(2), r.irq.Configs.Load(), "no driver to signal")
}
