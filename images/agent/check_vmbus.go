package main

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// VMBus check (issue 14): Linux's hv_vmbus connected to vmm's VMBus host
// and hv_utils bound the integration services it offered (heartbeat,
// shutdown, time sync).

const (
	vmbusVersionLine = "hv_vmbus: Vmbus version:"
	vmbusDevices     = "sys/bus/vmbus/devices"
	// The services vmm offers (hyperv.h HV_HEART_BEAT_GUID, HV_SHUTDOWN_GUID)
	// as sysfs prints class_id.
	classHeartbeat = "{57164f39-9115-4e78-ab55-382f3bd5422d}"
	classShutdown  = "{0e0b6031-5213-4934-818b-38d90ced39db}"
	classTimeSync  = "{9527e630-d0ae-497b-adce-e80ab0175caf}"
	// vmbusWait bounds how long the check waits for the channels: offers,
	// probes and the IC negotiation run in kernel work items after
	// hv_vmbus's init returns.
	vmbusWait = 20 * time.Second
)

func checkVMBus(e *env) (bool, string) { return vmbusCheck(e, vmbusWait, time.Sleep) }

// vmbusCheck passes when the kernel log names the VMBus version and the
// three services' devices are bound with their IC versions logged, polling
// until wait has passed.
func vmbusCheck(e *env, wait time.Duration, sleep func(time.Duration)) (bool, string) {
	const step = 200 * time.Millisecond
	for waited := time.Duration(0); ; waited += step {
		pass, detail := vmbusState(e)
		if pass || waited >= wait {
			return pass, detail
		}
		sleep(step)
	}
}

func vmbusState(e *env) (bool, string) {
	ver, err := e.dmesgMatches(vmbusVersionLine)
	if err != nil {
		return false, fmt.Sprintf("kernel log: %v", err)
	}
	if len(ver) == 0 {
		return false, fmt.Sprintf("no %q in the kernel log", vmbusVersionLine)
	}
	version := strings.TrimSpace(ver[len(ver)-1][strings.Index(ver[len(ver)-1], vmbusVersionLine)+len(vmbusVersionLine):])
	entries, err := fs.ReadDir(e.root, vmbusDevices)
	if err != nil {
		return false, fmt.Sprintf("version %s; %v", version, err)
	}
	bound := map[string]bool{}
	var devs []string
	for _, d := range entries {
		class, err := e.readTrimmed(path.Join(vmbusDevices, d.Name(), "class_id"))
		if err != nil {
			continue
		}
		_, err = fs.Stat(e.root, path.Join(vmbusDevices, d.Name(), "driver"))
		bound[class] = err == nil
		devs = append(devs, fmt.Sprintf("%s bound=%t", class, err == nil))
	}
	sort.Strings(devs)
	ics, _ := e.dmesgMatches("IC version")
	detail := fmt.Sprintf("version %s; devices [%s]; %s", version, strings.Join(devs, ", "), strings.Join(icVersions(ics), ", "))
	return bound[classHeartbeat] && bound[classShutdown] && bound[classTimeSync] && len(ics) >= 3, detail
}

// icVersions trims "hv_utils: Heartbeat IC version 3.0" lines to their
// message.
func icVersions(lines []string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if i := strings.Index(l, "hv_utils: "); i >= 0 {
			l = l[i+len("hv_utils: "):]
		}
		out = append(out, strings.TrimSpace(l))
	}
	return out
}
