package vmm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mincoreChunk bounds the residency vector mincore fills per call (one byte
// per page): 1 GiB of guest RAM at a time.
const mincoreChunk = 1 << 30

// residentBytes counts the pages of guest RAM the host holds in memory, so
// the report can tell the VMM's own memory from the guest's.
func (m *Memory) residentBytes() uint64 {
	if m == nil {
		return 0
	}
	page := uint64(unix.Getpagesize())
	vec := make([]byte, mincoreChunk/page)
	var total uint64
	for i := range m.regions {
		host := m.host(i)
		for off := 0; off < len(host); off += mincoreChunk {
			chunk := host[off:min(off+mincoreChunk, len(host))]
			n := (uint64(len(chunk)) + page - 1) / page
			_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(chunk))),
				uintptr(len(chunk)), uintptr(unsafe.Pointer(&vec[0])))
			if errno != 0 {
				return 0
			}
			for _, b := range vec[:n] {
				total += uint64(b & 1)
			}
		}
	}
	return total * page
}

// peakRSS is the process's peak resident set in bytes (getrusage).
func peakRSS() uint64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil || ru.Maxrss < 0 {
		return 0
	}
	return uint64(ru.Maxrss) << 10
}
