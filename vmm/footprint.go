package vmm

import (
	"bufio"
	"bytes"
	"os"
	"runtime/debug"
	"strconv"

	"golang.org/x/sys/unix"
)

// releaseStartup gives back the memory only start-up needed, once the guest
// is loaded, so that vmm's own share of the resident set is what running the
// guest needs. The report's overhead (rss.go, report.go) is measured against
// the peak, and a guest's own memory grows past the start-up peak within
// seconds of booting, so what start-up held no longer counts there.
//   - Go heap pages freed since start-up (debug.FreeOSMemory).
//   - The page-table entries of vmm's read-only file mappings: its binary's
//     code and constants. Faulting maps them in 64 KiB runs (the kernel's
//     fault-around), so start-up leaves most of the binary mapped though
//     little of it runs again. The pages stay in the page cache, shared by
//     every vmm process, and fault back in as they are used.
//
// It reads /proc/self/maps, so it must run before the seccomp filter.
func releaseStartup() {
	debug.FreeOSMemory()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	for _, r := range readOnlyFileMappings(maps) {
		// Errors (a locked mapping) leave the mapping as it was.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED)
	}
}

// readOnlyFileMappings picks from a /proc/PID/maps text the private,
// non-writable mappings of files: dropping their pages loses nothing, since
// each page reads back from its file as it was. Writable mappings (the
// binary's data, the heap, guest RAM) are never picked.
func readOnlyFileMappings(maps []byte) [][2]uintptr {
	var out [][2]uintptr
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 6 {
			continue // anonymous: no path
		}
		perms, inode := f[1], f[4]
		if len(perms) != 4 || perms[1] != '-' || perms[3] != 'p' || string(inode) == "0" {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
	}
	return out
}
