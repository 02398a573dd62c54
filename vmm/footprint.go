package vmm

import (
	"bufio"
	"bytes"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// fileMappings lists vmm's clean file mappings (cleanFileMappings) for
// releaseStartup and trimFilePages. It reads /proc/self/smaps, so New calls
// it, before the seccomp filter.
func fileMappings() [][2]uintptr {
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil
	}
	return cleanFileMappings(smaps)
}

// releaseStartup gives back the memory only start-up needed, when the guest
// starts, so that vmm's own share of the resident set is what running the
// guest needs. The report's overhead (rss.go, report.go) is measured against
// the peak, and a Linux guest's memory grows past the start-up peak within
// seconds of booting, so what start-up held no longer counts there.
//   - Go heap pages freed since start-up (debug.FreeOSMemory).
//   - The page-table entries of vmm's read-only file mappings: its binary's
//     code, constants and line tables. Faulting maps them in 64 KiB runs
//     (the kernel's fault-around), so start-up leaves most of the binary
//     mapped though little of it runs again. The pages stay in the page
//     cache, shared by every vmm process, and fault back in as they are
//     used (trimFilePages keeps dropping them).
func releaseStartup(ranges [][2]uintptr) {
	debug.FreeOSMemory()
	dropFilePages(ranges)
}

// Trimming while the guest runs: the first trim comes soon after start,
// after the guest's drivers have set up vmm's devices; later ones keep the
// binary's share to what vmm has used since the last one. A
// page in use faults back from the page cache (a minor fault); the trims
// cost a few hundred of those a minute.
const (
	firstTrim  = time.Second
	trimPeriod = 5 * time.Second
)

// trimFilePages drops the ranges' page-table entries firstTrim after it is
// called and every trimPeriod after that, until the returned stop is called;
// before each trim it calls sample (the report's memory, rss.go), which may
// be nil.
func trimFilePages(ranges [][2]uintptr, sample func()) (stop func()) {
	if len(ranges) == 0 && sample == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTimer(firstTrim)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if sample != nil {
					sample()
				}
				dropFilePages(ranges)
				t.Reset(trimPeriod)
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// dropFilePages drops the page-table entries of clean file mappings that
// fileMappings found; madvise is allowed under the seccomp filter.
func dropFilePages(ranges [][2]uintptr) {
	for _, r := range ranges {
		// Errors (a locked mapping) leave the mapping as it was.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED)
	}
}

// cleanFileMappings picks from a /proc/PID/smaps text the private,
// non-writable mappings of files that hold no anonymous (copied-on-write)
// page: dropping their pages loses nothing, since each reads back from its
// file as it was. Writable mappings (the binary's data, the heap, guest
// RAM) and read-only ones with private copies (a dynamic linker's RELRO:
// relocated, then made read-only) are never picked.
func cleanFileMappings(smaps []byte) [][2]uintptr {
	var out [][2]uintptr
	var cur [2]uintptr
	candidate := false
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Bytes()
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if rest, ok := bytes.CutPrefix(line, []byte("Anonymous:")); ok {
			if candidate && string(bytes.TrimSpace(rest)) == "0 kB" {
				out = append(out, cur)
			}
			candidate = false
			continue
		}
		if bytes.HasSuffix(f[0], []byte(":")) {
			continue // another field of the current mapping
		}
		candidate = false
		r, ok := readOnlyFileMapping(f)
		if ok {
			cur, candidate = r, true
		}
	}
	return out
}

// readOnlyFileMapping parses a mapping's header line (address range,
// permissions, offset, device, inode, path) and says whether it is a
// private, non-writable mapping of a file.
func readOnlyFileMapping(f [][]byte) ([2]uintptr, bool) {
	if len(f) < 6 {
		return [2]uintptr{}, false // anonymous: no path
	}
	perms, inode := f[1], f[4]
	if len(perms) != 4 || perms[1] != '-' || perms[3] != 'p' || string(inode) == "0" {
		return [2]uintptr{}, false
	}
	lo, hi, ok := bytes.Cut(f[0], []byte("-"))
	if !ok {
		return [2]uintptr{}, false
	}
	start, err1 := strconv.ParseUint(string(lo), 16, 64)
	end, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return [2]uintptr{}, false
	}
	return [2]uintptr{uintptr(start), uintptr(end)}, true
}
