package vmm

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mincoreChunk bounds the residency vector mincore fills per call (one byte
// per page): 1 GiB of guest RAM at a time.
const mincoreChunk = 1 << 30

// residentInto counts the pages of guest RAM the host holds in memory (by
// mincore over the guest mappings), so the report can tell the VMM's own
// memory from the guest's. vec is the residency vector (one byte per page,
// at most mincoreChunk's worth), kept for the next call.
func (m *Memory) residentInto(vec *[]byte) uint64 {
	if m == nil {
		return 0
	}
	page := uint64(unix.Getpagesize())
	var total uint64
	for i := range m.regions {
		host := m.host(i)
		for off := 0; off < len(host); off += mincoreChunk {
			chunk := host[off:min(off+mincoreChunk, len(host))]
			n := (uint64(len(chunk)) + page - 1) / page
			if uint64(len(*vec)) < n {
				*vec = make([]byte, n)
			}
			v := (*vec)[:n]
			_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(chunk))),
				uintptr(len(chunk)), uintptr(unsafe.Pointer(&v[0])))
			if errno != 0 {
				return 0
			}
			for _, b := range v {
				total += uint64(b & 1)
			}
		}
	}
	return total * page
}

// hostRanges lists the guest RAM mappings' host address ranges [start, end).
func (m *Memory) hostRanges() [][2]uintptr {
	if m == nil {
		return nil
	}
	var out [][2]uintptr
	for i := range m.regions {
		h := m.host(i)
		if len(h) == 0 {
			continue
		}
		start := uintptr(unsafe.Pointer(unsafe.SliceData(h)))
		out = append(out, [2]uintptr{start, start + uintptr(len(h))})
	}
	return out
}

// OwnMemory is vmm's own memory at one sample, in bytes: Anon, the
// anonymous pages of every mapping but guest RAM's (heap, stacks, runtime
// metadata, device buffers, copied-on-write data), and PageTables, all of
// the process's page tables (VmPTE, guest RAM's included).
type OwnMemory struct {
	Anon, PageTables uint64
}

// Total is what one more such process costs the host beyond its guest RAM.
func (o OwnMemory) Total() uint64 { return o.Anon + o.PageTables }

// residentPeak follows the most guest RAM resident at once and vmm's own
// memory at its most among the samples. Guest RAM only leaves the resident
// set when vmm discards it (the balloon), so sampling before each discard
// and at the end finds its peak; vmm's own memory is sampled at the same
// points and at the file-page trims (footprint.go).
type residentPeak struct {
	mu   sync.Mutex
	mem  *Memory
	rss  *rssProbe
	vec  []byte
	peak uint64
	own  OwnMemory
}

// sample measures guest RAM resident now and vmm's own memory, updates the
// peaks and returns guest RAM's. Guest RAM is counted first: pages the
// guest touches between the two reads count as vmm's, never the reverse.
func (r *residentPeak) sample() (now, peak uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now = r.mem.residentInto(&r.vec)
	r.peak = max(r.peak, now)
	if o, ok := r.rss.own(r.mem.hostRanges()); ok && o.Total() > r.own.Total() {
		r.own = o
	}
	return now, r.peak
}

// ownPeak is vmm's own memory at its most among the samples (zero if it
// could not be read).
func (r *residentPeak) ownPeak() OwnMemory {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.own
}

// rssProbe reads the process's memory from /proc/self: status for the peak
// resident set (VmHWM) and the page tables (VmPTE), smaps for the anonymous
// pages of each mapping. It keeps both open from New on, because the
// seccomp filter forbids opening files once the guest runs. VmHWM belongs
// to the current address space; getrusage's ru_maxrss is not usable for
// this: across fork+exec it starts from the parent's peak, so a vmm
// started by a large process would report that.
type rssProbe struct {
	status, smaps *os.File
	// rd reads smaps (own, under residentPeak's lock).
	rd *bufio.Reader
}

func openRSSProbe() *rssProbe {
	p := &rssProbe{}
	if f, err := os.Open("/proc/self/status"); err == nil {
		p.status = f
	}
	if f, err := os.Open("/proc/self/smaps"); err == nil {
		p.smaps = f
		p.rd = bufio.NewReaderSize(f, smapsLineMax)
	}
	return p
}

// readStatus returns the status text (nil if unreadable).
func (p *rssProbe) readStatus() []byte {
	if p == nil || p.status == nil {
		return nil
	}
	buf := make([]byte, 4096)
	n, err := p.status.ReadAt(buf, 0)
	if n == 0 && err != nil {
		return nil
	}
	return buf[:n]
}

// peak is the peak RSS in bytes, 0 if unknown.
func (p *rssProbe) peak() uint64 { return statusKiB(p.readStatus(), "VmHWM:") }

// own reads vmm's own memory now; guest lists guest RAM's host ranges.
func (p *rssProbe) own(guest [][2]uintptr) (OwnMemory, bool) {
	if p == nil || p.smaps == nil {
		return OwnMemory{}, false
	}
	p.rd.Reset(io.NewSectionReader(p.smaps, 0, smapsMax))
	anon, _, ok := parseSmapsAnon(p.rd, guest)
	if !ok {
		return OwnMemory{}, false
	}
	return OwnMemory{Anon: anon, PageTables: statusKiB(p.readStatus(), "VmPTE:")}, true
}

func (p *rssProbe) Close() error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.status != nil {
		errs = append(errs, p.status.Close())
	}
	if p.smaps != nil {
		errs = append(errs, p.smaps.Close())
	}
	return errors.Join(errs...)
}

// statusKiB finds a "Key:   1234 kB" line (key with its colon) in a
// /proc/PID/status text and returns its value in bytes (0 if absent or
// malformed).
func statusKiB(status []byte, key string) uint64 {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte(key))
		if !ok {
			continue
		}
		v, ok := kbValue(rest)
		if !ok {
			return 0
		}
		return v
	}
	return 0
}

// kbValue parses a "   1234 kB" field value into bytes.
func kbValue(rest []byte) (uint64, bool) {
	f := bytes.Fields(rest)
	if len(f) != 2 || string(f[1]) != "kB" {
		return 0, false
	}
	kib, err := strconv.ParseUint(string(f[0]), 10, 64)
	if err != nil || kib > 1<<44 {
		return 0, false
	}
	return kib << 10, true
}

// Bounds on reading smaps: a line (a mapping's header holds a path of up to
// PATH_MAX) and the whole text (the kernel's default limit of 65530
// mappings at about 1.5 KiB each stays well below).
const (
	smapsLineMax = 8 << 10
	smapsMax     = 256 << 20
)

// parseSmapsAnon sums the Anonymous fields of a /proc/PID/smaps text, in
// bytes: own for the mappings outside guest (host address ranges), guestAnon
// for those within one. A mapping that only overlaps guest RAM counts as
// own. Lines longer than the reader's buffer are read up to its size (a
// header's address range comes first). ok is false if the text is
// malformed, has no mapping or exceeds smapsMax.
func parseSmapsAnon(rd *bufio.Reader, guest [][2]uintptr) (own, guestAnon uint64, ok bool) {
	var read int
	inGuest, header, cont := false, false, false
	for {
		chunk, err := rd.ReadSlice('\n')
		read += len(chunk)
		if read > smapsMax {
			return 0, 0, false
		}
		if !cont && len(chunk) > 0 {
			if rest, isAnon := bytes.CutPrefix(chunk, []byte("Anonymous:")); isAnon {
				v, ok := kbValue(rest)
				if !ok || !header {
					return 0, 0, false
				}
				if inGuest {
					guestAnon += v
				} else {
					own += v
				}
			} else if f := bytes.Fields(chunk); len(f) > 0 && !bytes.HasSuffix(f[0], []byte(":")) {
				lo, hi, ok := mappingRange(f[0])
				if !ok {
					return 0, 0, false
				}
				inGuest, header = within(guest, lo, hi), true
			}
		}
		switch {
		case err == nil:
			cont = false
		case errors.Is(err, bufio.ErrBufferFull):
			cont = true
		case errors.Is(err, io.EOF):
			return own, guestAnon, header
		default:
			return 0, 0, false
		}
	}
}

// mappingRange parses a mapping header's "start-end" (hex).
func mappingRange(f []byte) (lo, hi uintptr, ok bool) {
	l, h, found := bytes.Cut(f, []byte("-"))
	if !found || len(l) > 16 || len(h) > 16 {
		return 0, 0, false
	}
	start, err1 := strconv.ParseUint(string(l), 16, 64)
	end, err2 := strconv.ParseUint(string(h), 16, 64)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, false
	}
	return uintptr(start), uintptr(end), true
}

// within says whether [lo, hi) lies inside one of ranges.
func within(ranges [][2]uintptr, lo, hi uintptr) bool {
	for _, r := range ranges {
		if lo >= r[0] && hi <= r[1] {
			return true
		}
	}
	return false
}
