package runner

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// CaseOverhead is what a vmm run costs beyond its guest's RAM, with room
// to spare (the report's memory.overhead_kib is a few MiB).
const CaseOverhead = 64 << 20

// DefaultJobs is how many cases fit this host at once: one per CPU, no more
// than fit in avail bytes of memory at perCase bytes each, at least one.
func DefaultJobs(cpus int, avail, perCase uint64) int {
	jobs := max(cpus, 1)
	if avail > 0 && perCase > 0 {
		jobs = min(jobs, int(min(avail/perCase, uint64(jobs))))
	}
	return max(jobs, 1)
}

// AvailableMemory is the kernel's estimate of memory available for new
// work (MemAvailable), 0 when unknown.
func AvailableMemory() uint64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kib, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kib << 10
		}
	}
	return 0
}
