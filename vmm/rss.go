package vmm

import (
	"bytes"
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

// residentPeak follows the most guest RAM resident at once. Guest RAM only
// leaves the resident set when vmm discards it (the balloon), so sampling
// before each discard and at the end finds the peak.
type residentPeak struct {
	mu   sync.Mutex
	mem  *Memory
	vec  []byte
	peak uint64
}

// sample measures guest RAM resident now, updates the peak and returns both.
func (r *residentPeak) sample() (now, peak uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now = r.mem.residentInto(&r.vec)
	r.peak = max(r.peak, now)
	return now, r.peak
}

// rssProbe reads the process's peak resident set. It keeps /proc/self/status
// open from New on, because the seccomp filter forbids opening files once the
// guest runs. VmHWM belongs to the current address space; getrusage's
// ru_maxrss is not usable for this: across fork+exec it starts from the
// parent's peak, so a vmm started by a large process would report that.
type rssProbe struct{ status *os.File }

func openRSSProbe() rssProbe {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return rssProbe{}
	}
	return rssProbe{status: f}
}

// peak is the peak RSS in bytes, 0 if unknown.
func (p rssProbe) peak() uint64 {
	if p.status == nil {
		return 0
	}
	buf := make([]byte, 4096)
	n, err := p.status.ReadAt(buf, 0)
	if n == 0 && err != nil {
		return 0
	}
	return parseVmHWM(buf[:n])
}

func (p rssProbe) Close() error {
	if p.status == nil {
		return nil
	}
	return p.status.Close()
}

// parseVmHWM finds "VmHWM:   1234 kB" in a /proc/PID/status text and returns
// it in bytes (0 if absent or malformed).
func parseVmHWM(status []byte) uint64 {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmHWM:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0
		}
		kib, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil || kib > 1<<44 {
			return 0
		}
		return kib << 10
	}
	return 0
}
