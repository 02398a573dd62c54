package main

import (
	"fmt"
	"io/fs"
	"strings"
	"time"
)

// balloonBytes is what the balloon check allocates, touches and frees.
const balloonBytes = 128 << 20

// balloonSettle is how long the guest keeps running after freeing: Linux
// reports free memory to the balloon in batches, two seconds after enough
// has gathered (mm/page_reporting.c). The host side (e2e) asserts on vmm's
// report, which counts what was reported; this wait only gives the guest
// kernel the time to report it before the agent powers off.
const balloonSettle = 10 * time.Second

// reportingBit is VIRTIO_BALLOON_F_PAGE_REPORTING in the features string
// sysfs shows (one character per bit, bit 0 first).
const reportingBit = 5

// checkBalloon finds the virtio-balloon bound to its driver with free page
// reporting negotiated, then allocates, touches and frees balloonBytes so
// that the host sees guest memory grow and, through the balloon, fall back.
func checkBalloon(e *env) (bool, string) {
	dir := "sys/bus/virtio/drivers/virtio_balloon"
	ents, err := fs.ReadDir(e.root, dir)
	if err != nil {
		return false, fmt.Sprintf("no virtio_balloon driver: %v", err)
	}
	dev := ""
	for _, d := range ents {
		if strings.HasPrefix(d.Name(), "virtio") {
			dev = d.Name()
		}
	}
	if dev == "" {
		return false, "virtio_balloon drives no device"
	}
	features, err := e.readTrimmed("sys/bus/virtio/devices/" + dev + "/features")
	if err != nil {
		return false, fmt.Sprintf("read %s features: %v", dev, err)
	}
	if len(features) <= reportingBit || features[reportingBit] != '1' {
		return false, fmt.Sprintf("%s: free page reporting not negotiated (features %s)", dev, features)
	}
	ok, detail := checkMemFree(e)
	return ok, dev + ": " + detail
}

// checkMemFree allocates, touches and frees balloonBytes and lets the guest
// run balloonSettle more, balloon or not: without one it is the baseline of
// what the host keeps of memory the guest has freed (make bench).
func checkMemFree(e *env) (bool, string) {
	if err := e.io.touchAndFree(balloonBytes); err != nil {
		return false, fmt.Sprintf("allocate %d MiB: %v", balloonBytes>>20, err)
	}
	e.io.settle(balloonSettle)
	return true, fmt.Sprintf("touched and freed %d MiB", balloonBytes>>20)
}
