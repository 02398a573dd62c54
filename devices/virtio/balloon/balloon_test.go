package balloon

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/internal/vqdriver"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

type fakeIRQ = vqdriver.IRQ

// waitQueue waits for an interrupt on queue want.
func waitQueue(t *testing.T, irq *fakeIRQ, want int) {
	t.Helper()
	for {
		select {
		case i := <-irq.Queues:
			if i == want {
				return
			}
		case err := <-irq.Resets:
			t.Fatalf("device needs reset: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no interrupt on queue %d within 10s", want)
		}
	}
}

// recorder is a Discard that records the guest-physical ranges dropped.
type recorder struct {
	mu     sync.Mutex
	base   uintptr
	ranges [][2]uint64
}

func (r *recorder) discard(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	at := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))) - r.base)
	r.ranges = append(r.ranges, [2]uint64{at, uint64(len(b))})
	return nil
}

func (r *recorder) got() [][2]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][2]uint64(nil), r.ranges...)
}

// rig is a balloon with all four queues on fake memory; each queue has its
// own driver (and so its own rings) over one memory.
type rig struct {
	dev  *Device
	drvs []*vqdriver.Driver
	irq  *fakeIRQ
	rec  *recorder
}

func newRig(t *testing.T, features uint64, opt Options) *rig {
	t.Helper()
	// One driver's memory for data; the others' rings live in their own
	// memories, which is fine: the device only needs each queue's Memory
	// for its own chains.
	r := &rig{irq: vqdriver.NewIRQ(), rec: &recorder{}}
	var qs []*queue.Queue
	for range maxQueues {
		d := vqdriver.New(QueueSize, 4<<20)
		q, err := d.Queue(false)
		require.NoError(t, err)
		r.drvs = append(r.drvs, d)
		qs = append(qs, q)
	}
	if opt.Discard == nil {
		opt.Discard = r.rec.discard
	}
	r.dev = New(opt)
	// Discarded ranges are reported relative to queue 0's memory, which
	// inflate uses.
	r.rec.base = uintptr(unsafe.Pointer(&r.drvs[0].Mem[0]))
	require.NoError(t, r.dev.Activate(virtio.Activation{Features: features, Queues: qs, Mem: r.drvs[0].Mem, IRQ: r.irq}))
	t.Cleanup(r.dev.Reset)
	return r
}

const all = FeatureStatsVQ | FeatureDeflateOnOOM | FeaturePageReporting

func TestQueueIndex(t *testing.T) {
	s, r := queueIndex(all)
	require.Equal(t, [2]int{2, 3}, [2]int{s, r})
	s, r = queueIndex(FeaturePageReporting)
	require.Equal(t, [2]int{-1, 2}, [2]int{s, r})
	s, r = queueIndex(0)
	require.Equal(t, [2]int{-1, -1}, [2]int{s, r})
}

func TestConfigActual(t *testing.T) {
	d := New(Options{})
	d.WriteConfig(4, []byte{0x10, 0x20, 0, 0})
	d.WriteConfig(0, []byte{0xff, 0xff, 0xff, 0xff}) // num_pages is the host's
	d.WriteConfig(1<<40, []byte{1})
	got := make([]byte, configSize)
	d.ReadConfig(0, got)
	require.Equal(t, []byte{0, 0, 0, 0, 0x10, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, got)
	require.Equal(t, uint32(0x2010), d.Stats().ActualPages)
	out := []byte{9, 9}
	d.ReadConfig(1<<40, out)
	require.Equal(t, []byte{0, 0}, out)
	// An unaligned write across actual's end changes only its last byte.
	d.WriteConfig(7, []byte{0x01, 0xaa})
	require.Equal(t, uint32(0x01002010), d.Stats().ActualPages)
}

// Free page reporting: each reported range of guest RAM is discarded whole
// and the report goes back to the driver.
func TestReportingDiscardsRanges(t *testing.T) {
	var samples int
	r := newRig(t, all, Options{BeforeDiscard: func() { samples++ }})
	drv := r.drvs[3]
	r.rec.base = uintptr(unsafe.Pointer(&drv.Mem[0]))
	head, _ := drv.Offer(vqdriver.Buf{GPA: 0x200000, Len: 0x200000, Writable: true},
		vqdriver.Buf{GPA: 0x400000 - 0x1000, Len: 0x1000, Writable: true})
	r.dev.Notify(3)
	waitQueue(t, r.irq, 3)
	id, _, ok := drv.Used()
	require.True(t, ok)
	require.Equal(t, uint32(head), id)
	require.Equal(t, [][2]uint64{{0x200000, 0x200000}, {0x3ff000, 0x1000}}, r.rec.got())
	st := r.dev.Stats()
	require.Equal(t, uint64(1), st.Reports)
	require.Equal(t, uint64(0x201000), st.ReportedBytes)
	require.Equal(t, 1, samples)
}

// A report naming memory outside guest RAM discards nothing: the queue
// rejects the chain and the device needs a reset.
func TestReportingWildAddress(t *testing.T) {
	r := newRig(t, all, Options{})
	drv := r.drvs[3]
	drv.Offer(vqdriver.Buf{GPA: 1 << 40, Len: 0x200000, Writable: true})
	r.dev.Notify(3)
	select {
	case err := <-r.irq.Resets:
		require.ErrorIs(t, err, queue.ErrOutOfRange)
	case <-time.After(10 * time.Second):
		t.Fatal("no reset request")
	}
	require.Empty(t, r.rec.got())
	require.Zero(t, r.dev.Stats().ReportedBytes)
}

// Inflating discards the pages named by PFN; PFNs beyond guest RAM are
// counted and skipped; deflating counts.
func TestInflateDeflate(t *testing.T) {
	r := newRig(t, all, Options{})
	memPages := uint32(len(r.drvs[0].Mem) / PageSize)
	pfns := make([]byte, 0, 16)
	for _, p := range []uint32{0x300, 0x301, memPages, 0xffffffff} {
		pfns = binary.LittleEndian.AppendUint32(pfns, p)
	}
	pfns = append(pfns, 0xaa) // a trailing partial PFN
	r.drvs[0].Offer(vqdriver.Buf{Data: pfns})
	r.dev.Notify(0)
	waitQueue(t, r.irq, 0)
	require.Equal(t, [][2]uint64{{0x300000, PageSize}, {0x301000, PageSize}}, r.rec.got())
	r.drvs[1].Offer(vqdriver.Buf{Data: pfns[:8]})
	r.dev.Notify(1)
	waitQueue(t, r.irq, 1)
	st := r.dev.Stats()
	require.Equal(t, uint64(2), st.InflatedPages)
	require.Equal(t, uint64(2), st.IgnoredPages)
	require.Equal(t, uint64(2), st.DeflatedPages)
}

func statsBuf(kv map[uint16]uint64) []byte {
	var b []byte
	for tag := uint16(0); tag < 16; tag++ {
		if v, ok := kv[tag]; ok {
			b = binary.LittleEndian.AppendUint16(b, tag)
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

// The statistics buffer is held and handed back every interval for fresh
// figures; the last figures are the device's.
func TestStatsQueue(t *testing.T) {
	r := newRig(t, all, Options{StatsInterval: time.Millisecond})
	drv := r.drvs[2]
	drv.Offer(vqdriver.Buf{Data: statsBuf(map[uint16]uint64{4: 100 << 20, 5: 256 << 20, 42: 7})})
	r.dev.Notify(2)
	waitQueue(t, r.irq, 2)
	_, _, ok := drv.Used()
	require.True(t, ok)
	st := r.dev.Stats()
	require.Equal(t, map[string]uint64{"free_memory": 100 << 20, "total_memory": 256 << 20}, st.Guest)
	require.Equal(t, uint64(1), st.StatsUpdates)

	drv.Offer(vqdriver.Buf{Data: statsBuf(map[uint16]uint64{4: 50 << 20, 0: 3})})
	r.dev.Notify(2)
	waitQueue(t, r.irq, 2)
	st = r.dev.Stats()
	require.Equal(t, map[string]uint64{"free_memory": 50 << 20, "total_memory": 256 << 20, "swap_in": 3}, st.Guest)
	require.Equal(t, uint64(2), st.StatsUpdates)
}

func TestParseStatsStraddles(t *testing.T) {
	b := statsBuf(map[uint16]uint64{5: 0x1122334455667788, 6: 9})
	got := ParseStats([][]byte{b[:3], b[3:13], b[13:], {1, 2, 3}})
	require.Equal(t, map[string]uint64{"total_memory": 0x1122334455667788, "available_memory": 9}, got)
}

// The default discard really gives pages back: they read as zero and are
// no longer resident.
func TestDiscardGivesPagesBack(t *testing.T) {
	const size = 4 * PageSize
	m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Munmap(m) })
	for i := range m {
		m[i] = 0x5a
	}
	d := New(Options{})
	// An unaligned range keeps its partial pages.
	require.Equal(t, uint64(2*PageSize), d.discard(m[100:size-100]))
	vec := make([]byte, 4)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
	require.Zero(t, errno)
	require.Equal(t, []byte{1, 0, 0, 1}, []byte{vec[0] & 1, vec[1] & 1, vec[2] & 1, vec[3] & 1})
	require.Equal(t, byte(0x5a), m[PageSize-1])
	require.Equal(t, byte(0), m[PageSize])
	require.Equal(t, byte(0), m[3*PageSize-1])
	require.Equal(t, byte(0x5a), m[3*PageSize])
	require.Zero(t, d.discard(m[1:PageSize]))
	require.Zero(t, d.discard(nil))
}
