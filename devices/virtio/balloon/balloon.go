// Package balloon is virtio-balloon (virtio 1.2 §5.5): the guest hands
// memory back to the host. Pages the guest inflates into the balloon and
// free pages it reports (VIRTIO_BALLOON_F_PAGE_REPORTING) are discarded from
// the host mapping (madvise MADV_DONTNEED), so they stop counting in vmm's
// resident set until the guest touches them again and gets zeroed pages. The
// statistics queue (VIRTIO_BALLOON_F_STATS_VQ) carries the guest's memory
// figures; with VIRTIO_BALLOON_F_DEFLATE_ON_OOM the guest deflates instead
// of running out of memory. The host never asks for a size (num_pages stays
// 0), but a driver that inflates anyway is served.
//
// Every address comes from the guest: ranges are taken only through guest
// memory's bounds-checked Slice, so a wild address discards nothing outside
// guest RAM.
package balloon

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// Feature bits (virtio 1.2 §5.5.3).
const (
	FeatureStatsVQ       = 1 << 1 // VIRTIO_BALLOON_F_STATS_VQ
	FeatureDeflateOnOOM  = 1 << 2 // VIRTIO_BALLOON_F_DEFLATE_ON_OOM
	FeaturePageReporting = 1 << 5 // VIRTIO_BALLOON_F_PAGE_REPORTING
)

// QueueSize is the size of each queue.
const QueueSize = 128

// Queue indices as Linux and QEMU number them: inflateq and deflateq, then
// statsq and reporting_vq, each present only when its feature was
// negotiated (free_page_vq, not offered, would come before reporting_vq).
const (
	queueInflate = 0
	queueDeflate = 1
	maxQueues    = 4
)

// PageSize is the balloon's page: PFNs count 4 KiB pages whatever the guest's
// page size.
const PageSize = 4096

// configSize is the configuration space: num_pages, actual,
// free_page_hint_cmd_id, poison_val (all le32).
const configSize = 16

// Stat tags (virtio 1.2 §5.5.6.3) and the names the report uses.
var statNames = map[uint16]string{
	0: "swap_in", 1: "swap_out", 2: "major_faults", 3: "minor_faults",
	4: "free_memory", 5: "total_memory", 6: "available_memory", 7: "disk_caches",
	8: "hugetlb_allocations", 9: "hugetlb_failures",
}

// statSize is one statistic: le16 tag, le64 value (packed).
const statSize = 10

// Discard gives the host pages behind a page-aligned host view of guest
// memory back to the kernel.
type Discard func(b []byte) error

// madvDontneed drops the pages: anonymous private memory reads back as
// zeros, so the guest sees freshly zeroed pages when it reuses them.
func madvDontneed(b []byte) error { return unix.Madvise(b, unix.MADV_DONTNEED) }

// Options configure a Device; the zero value is usable.
type Options struct {
	// Discard drops pages (default: madvise MADV_DONTNEED).
	Discard Discard
	// BeforeDiscard, if set, is called before each batch of pages is
	// discarded: vmm samples the guest's resident memory there, so its
	// peak is known though the balloon makes it fall.
	BeforeDiscard func()
	// StatsInterval is how often the device asks for fresh statistics
	// (default 5 s).
	StatsInterval time.Duration
}

// Stats are the balloon's figures for the report.
type Stats struct {
	// ActualPages is the balloon's size as the driver last wrote it.
	ActualPages uint32
	// InflatedPages and DeflatedPages count PFNs the driver put in and
	// took out; IgnoredPages those outside guest RAM.
	InflatedPages, DeflatedPages, IgnoredPages uint64
	// Reports counts free page reports, ReportedBytes the memory they
	// returned to the host.
	Reports, ReportedBytes uint64
	// Guest holds the guest's last statistics by name (StatsUpdates of
	// them received); absent names were not reported.
	Guest        map[string]uint64
	StatsUpdates uint64
}

// Device is a virtio-balloon device.
type Device struct {
	opt Options
	w   virtio.Worker

	mu    sync.Mutex
	st    Stats
	guest map[string]uint64
}

// New returns a balloon device.
func New(opt Options) *Device {
	if opt.Discard == nil {
		opt.Discard = madvDontneed
	}
	if opt.StatsInterval <= 0 {
		opt.StatsInterval = 5 * time.Second
	}
	return &Device{opt: opt, guest: map[string]uint64{}}
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeBalloon }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	return FeatureStatsVQ | FeatureDeflateOnOOM | FeaturePageReporting | virtio.FeatureIndirectDesc
}

// QueueSizes implements virtio.Device: inflate, deflate, stats, reporting.
func (d *Device) QueueSizes() []uint16 {
	return []uint16{QueueSize, QueueSize, QueueSize, QueueSize}
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off uint64, data []byte) {
	var cfg [configSize]byte
	d.mu.Lock()
	binary.LittleEndian.PutUint32(cfg[4:], d.st.ActualPages)
	d.mu.Unlock()
	clear(data)
	if off < configSize {
		copy(data, cfg[off:])
	}
}

// WriteConfig implements virtio.Device: only actual (bytes 4-7) is the
// driver's to write.
func (d *Device) WriteConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var actual [4]byte
	binary.LittleEndian.PutUint32(actual[:], d.st.ActualPages)
	for i, b := range data {
		if at := off + uint64(i); at >= 4 && at < 8 {
			actual[at-4] = b
		}
	}
	d.st.ActualPages = binary.LittleEndian.Uint32(actual[:])
}

// Stats returns a copy of the balloon's figures.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.st
	if len(d.guest) > 0 {
		s.Guest = make(map[string]uint64, len(d.guest))
		for k, v := range d.guest {
			s.Guest[k] = v
		}
	}
	return s
}

// queueIndex maps the negotiated features to the indices of the stats and
// reporting queues (-1 when absent).
func queueIndex(features uint64) (stats, reporting int) {
	stats, reporting = -1, -1
	next := 2
	if features&FeatureStatsVQ != 0 {
		stats, next = next, next+1
	}
	if features&FeaturePageReporting != 0 {
		reporting = next
	}
	return stats, reporting
}

// Activate implements virtio.Device.
func (d *Device) Activate(a virtio.Activation) error {
	if len(a.Queues) < 2 || a.Queues[queueInflate] == nil || a.Queues[queueDeflate] == nil {
		return fmt.Errorf("virtio-balloon: inflate and deflate queues not enabled")
	}
	stats, reporting := queueIndex(a.Features)
	q := func(i int) *queue.Queue {
		if i < 0 || i >= len(a.Queues) {
			return nil
		}
		return a.Queues[i]
	}
	return d.w.Start("virtio-balloon", a, nil, func(r *virtio.Run) error {
		r.Serve(queueInflate, a.Queues[queueInflate], func(c queue.Chain) (uint32, error) {
			d.inflate(a.Mem, c.Readable)
			return 0, nil
		})
		r.Serve(queueDeflate, a.Queues[queueDeflate], func(c queue.Chain) (uint32, error) {
			n := pfnCount(c.Readable)
			d.mu.Lock()
			d.st.DeflatedPages += n
			d.mu.Unlock()
			return 0, nil
		})
		if sq := q(stats); sq != nil {
			r.Go(func() { d.serveStats(r, stats, sq) })
		}
		if rq := q(reporting); rq != nil {
			r.Serve(reporting, rq, func(c queue.Chain) (uint32, error) {
				d.report(c.Writable)
				return 0, nil
			})
		}
		return nil
	})
}

// Notify implements virtio.Device.
func (d *Device) Notify(i int) { d.w.Notify(i) }

// Reset implements virtio.Device. The figures stay for the report.
func (d *Device) Reset() { d.w.Reset() }

// pfnCount counts the le32 PFNs in the buffers (a trailing partial one is
// ignored).
func pfnCount(bufs [][]byte) uint64 {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b) / 4)
	}
	return n
}

// inflate discards the pages whose PFNs the buffers list; PFNs outside
// guest RAM are counted and skipped.
func (d *Device) inflate(mem virtio.Memory, bufs [][]byte) {
	var done, ignored uint64
	if d.opt.BeforeDiscard != nil {
		d.opt.BeforeDiscard()
	}
	for _, b := range bufs {
		for ; len(b) >= 4; b = b[4:] {
			pfn := uint64(binary.LittleEndian.Uint32(b))
			page, err := mem.Slice(pfn*PageSize, PageSize)
			if err != nil || d.discard(page) == 0 {
				ignored++
				continue
			}
			done++
		}
	}
	d.mu.Lock()
	d.st.InflatedPages += done
	d.st.IgnoredPages += ignored
	d.mu.Unlock()
}

// report discards the free ranges a page report lists: the chain's
// device-writable buffers, each a range of guest RAM the queue has already
// checked.
func (d *Device) report(bufs [][]byte) {
	if d.opt.BeforeDiscard != nil {
		d.opt.BeforeDiscard()
	}
	var n uint64
	for _, b := range bufs {
		n += d.discard(b)
	}
	d.mu.Lock()
	d.st.Reports++
	d.st.ReportedBytes += n
	d.mu.Unlock()
}

// discard drops the whole pages inside b and returns how many bytes that
// was: a range that is not page aligned keeps its partial pages.
func (d *Device) discard(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	start := uintptrOf(b)
	head := (PageSize - start%PageSize) % PageSize
	if uint64(len(b)) <= head {
		return 0
	}
	b = b[head:]
	b = b[:len(b)/PageSize*PageSize]
	if len(b) == 0 || d.opt.Discard(b) != nil {
		return 0
	}
	return uint64(len(b))
}

// serveStats keeps the driver's statistics buffer: each one it sends is
// parsed and held, and every StatsInterval the held buffer goes back, which
// asks the driver for fresh figures (virtio 1.2 §5.5.6.3).
func (d *Device) serveStats(r *virtio.Run, index int, q *queue.Queue) {
	tick := time.NewTicker(d.opt.StatsInterval)
	defer tick.Stop()
	held, holding := uint16(0), false
	give := func() error {
		if !holding {
			return nil
		}
		holding = false
		if err := q.Push(held, 0); err != nil {
			return err
		}
		if q.NeedInterrupt() {
			r.Interrupt(index)
		}
		return nil
	}
	for {
		for {
			c, ok, err := q.Next()
			if err != nil {
				r.Fail(err)
				return
			}
			if !ok {
				if !q.EnableNotify() {
					break
				}
				continue
			}
			// A driver that sends a second buffer gets the first back.
			if err := give(); err != nil {
				r.Fail(err)
				return
			}
			d.setGuestStats(c.Readable)
			held, holding = c.Head, true
		}
		select {
		case <-r.Kick(index):
		case <-tick.C:
			if err := give(); err != nil {
				r.Fail(err)
				return
			}
		case <-r.Stop():
			return
		}
	}
}

// setGuestStats records the statistics in bufs (the chain's readable
// buffers, read through one bounded copy); unknown tags and a trailing
// partial entry are ignored.
func (d *Device) setGuestStats(bufs [][]byte) {
	parsed := ParseStats(bufs)
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, v := range parsed {
		d.guest[k] = v
	}
	d.st.StatsUpdates++
}

// maxStatBytes bounds what ParseStats reads: a few times the tags defined.
const maxStatBytes = 64 * statSize

// ParseStats decodes a statistics buffer (the chain's readable buffers, an
// entry may straddle two) into values by name.
func ParseStats(bufs [][]byte) map[string]uint64 {
	var raw [maxStatBytes]byte
	n := 0
	for _, b := range bufs {
		n += copy(raw[n:], b)
		if n == len(raw) {
			break
		}
	}
	out := map[string]uint64{}
	for at := 0; at+statSize <= n; at += statSize {
		tag := binary.LittleEndian.Uint16(raw[at:])
		if name, ok := statNames[tag]; ok {
			out[name] = binary.LittleEndian.Uint64(raw[at+2:])
		}
	}
	return out
}

func uintptrOf(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }
