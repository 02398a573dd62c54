package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
)

// maxSmapsBytes bounds one read of a runner's /proc/PID/smaps.
const maxSmapsBytes = 8 << 20

// sampleMemory follows process pid's memory every interval until the
// returned stop is called, which returns the figures (scenario.Memory):
// guest RAM is the largest writable anonymous mapping of at least guestKiB.
func sampleMemory(pid int, guestKiB uint64, interval time.Duration) (stop func() scenario.Memory) {
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	var (
		mu  sync.Mutex
		out scenario.Memory
	)
	sample := func() {
		data, err := readBounded(dir+"smaps", maxSmapsBytes)
		if err != nil {
			return // the process is gone, or not yet exec'd
		}
		s := splitSmaps(data, guestKiB)
		if s.total == 0 {
			return
		}
		var pte uint64
		if status, err := readBounded(dir+"status", maxStatusBytes); err == nil {
			pte = statusKiB(status, "VmPTE:")
		}
		mu.Lock()
		defer mu.Unlock()
		out.Samples++
		out.GuestKiB = s.guest
		out.GuestPeakKiB = max(out.GuestPeakKiB, s.guest)
		out.OwnPeakKiB = max(out.OwnPeakKiB, s.total-s.guest)
		out.AnonPeakKiB = max(out.AnonPeakKiB, s.anon)
		out.FilePeakKiB = max(out.FilePeakKiB, s.total-s.guest-min(s.total-s.guest, s.anon))
		out.FileDirtyPeakKiB = max(out.FileDirtyPeakKiB, s.fileDirty)
		out.PageTablesPeakKiB = max(out.PageTablesPeakKiB, pte)
		out.PssPeakKiB = max(out.PssPeakKiB, s.pss)
		out.PerGuestPeakKiB = max(out.PerGuestPeakKiB, s.anon+pte)
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() scenario.Memory {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return out
	}
}

// readBounded reads at most n bytes of path (a hostile runner's smaps is
// still bounded).
func readBounded(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// maxStatusBytes bounds one read of a runner's /proc/PID/status.
const maxStatusBytes = 64 << 10

// smapsSums are a /proc/PID/smaps text's figures in KiB: total is every
// mapping's Rss, guest the guest RAM mapping's (the largest writable
// anonymous mapping of at least the guest's size); anon, pss and fileDirty
// leave the guest RAM mapping out: its Anonymous pages, its Pss, and its
// dirty pages that are not anonymous (a file's, written through a shared
// mapping).
type smapsSums struct {
	total, guest, anon, pss, fileDirty uint64
}

// splitSmaps sums a /proc/PID/smaps text (smapsSums) for a guest of
// guestKiB.
func splitSmaps(smaps []byte, guestKiB uint64) smapsSums {
	var (
		all, cur, guest smapsSums // cur: the mapping being read
		size, best      uint64
		candidate, open bool
		dirty           uint64
	)
	// end closes the current mapping: it is guest RAM if it is the largest
	// candidate so far.
	end := func() {
		cur.fileDirty = dirty - min(dirty, cur.anon)
		all.total, all.anon, all.pss, all.fileDirty = all.total+cur.total, all.anon+cur.anon, all.pss+cur.pss, all.fileDirty+cur.fileDirty
		if candidate && size >= guestKiB && size > best {
			best, guest = size, cur
		}
		cur, dirty = smapsSums{}, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 {
			continue
		}
		if !bytes.HasSuffix(f[0], []byte(":")) {
			if open {
				end()
			}
			cur, dirty, open = smapsSums{}, 0, true
			size, candidate = anonWritableKiB(f)
			continue
		}
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseUint(string(f[1]), 10, 64)
		if err != nil || v > maxSmapsKiB {
			continue
		}
		switch string(f[0]) {
		case "Rss:":
			cur.total = v
		case "Anonymous:":
			cur.anon = v
		case "Pss:":
			cur.pss = v
		case "Shared_Dirty:", "Private_Dirty:":
			dirty += v
		}
	}
	if open {
		end()
	}
	return smapsSums{
		total:     all.total,
		guest:     guest.total,
		anon:      all.anon - guest.anon,
		pss:       all.pss - guest.pss,
		fileDirty: all.fileDirty - guest.fileDirty,
	}
}

// maxSmapsKiB bounds one smaps or status figure (1 PiB): a hostile runner's
// figures cannot overflow the sums.
const maxSmapsKiB = 1 << 40

// statusKiB reads a "Name:   1234 kB" field of a /proc/PID/status text
// (0 when absent or malformed).
func statusKiB(status []byte, name string) uint64 {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte(name))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0
		}
		v, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil || v > maxSmapsKiB {
			return 0
		}
		return v
	}
	return 0
}

// anonWritableKiB parses a mapping's header line (range, permissions,
// offset, device, inode, path) and returns its size and whether it is a
// writable mapping of no file.
func anonWritableKiB(f [][]byte) (uint64, bool) {
	if len(f) < 5 || len(f[1]) < 2 || f[1][1] != 'w' || string(f[4]) != "0" {
		return 0, false
	}
	lo, hi, ok := bytes.Cut(f[0], []byte("-"))
	if !ok {
		return 0, false
	}
	start, err1 := strconv.ParseUint(string(lo), 16, 64)
	end, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return 0, false
	}
	return (end - start) >> 10, true
}

// memoryLine renders a run's figures as the console text ParseMemory reads.
func memoryLine(m scenario.Memory) string {
	data, err := json.Marshal(m)
	if err != nil {
		return scenario.MemoryPrefix + "{}"
	}
	return scenario.MemoryPrefix + string(data)
}
