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
	path := "/proc/" + strconv.Itoa(pid) + "/smaps"
	var (
		mu  sync.Mutex
		out scenario.Memory
	)
	sample := func() {
		data, err := readBounded(path, maxSmapsBytes)
		if err != nil {
			return // the process is gone, or not yet exec'd
		}
		total, guest := splitSmaps(data, guestKiB)
		if total == 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		out.Samples++
		out.GuestKiB = guest
		out.GuestPeakKiB = max(out.GuestPeakKiB, guest)
		out.OwnPeakKiB = max(out.OwnPeakKiB, total-guest)
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

// splitSmaps sums the Rss of every mapping in a /proc/PID/smaps text and
// picks out the guest RAM's: the largest writable anonymous mapping (no
// inode) of at least guestKiB. Both in KiB.
func splitSmaps(smaps []byte, guestKiB uint64) (total, guest uint64) {
	var size, best uint64
	candidate := false
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 {
			continue
		}
		if !bytes.HasSuffix(f[0], []byte(":")) {
			size, candidate = anonWritableKiB(f)
			continue
		}
		if string(f[0]) != "Rss:" || len(f) < 2 {
			continue
		}
		rss, err := strconv.ParseUint(string(f[1]), 10, 64)
		if err != nil {
			continue
		}
		total += rss
		if candidate && size >= guestKiB && size > best {
			best, guest = size, rss
		}
	}
	return total, guest
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
