package main

import (
	"fmt"
	"strings"
	"time"
)

// Hyper-V checks (issue 5): what a Linux guest shows when vmm offers the
// enlightenments (--hyperv all) and when it does not.

const (
	hypervDetected    = "Hypervisor detected: Microsoft Hyper-V"
	hypervTSCPage     = "hyperv_clocksource_tsc_page"
	hypervClockevent  = "Hyper-V clockevent"
	clockeventCurrent = "sys/devices/system/clockevents/clockevent0/current_device"
	clocksourceNow    = "sys/devices/system/clocksource/clocksource0/current_clocksource"
)

// hypervChecks are added to the registry.
func hypervChecks() registry {
	return registry{
		"hyperv":       checkHyperV,
		"hyperv-clock": checkHyperVClock,
		"no-hyperv":    checkNoHyperV,
		"clock-cost":   checkClockCost,
	}
}

// checkHyperV passes when Linux detected Hyper-V; the detail carries the
// kernel's "Hyper-V:" lines (privilege flags, hints, features used).
func checkHyperV(e *env) (bool, string) {
	det, err := e.dmesgMatches(hypervDetected)
	if err != nil {
		return false, fmt.Sprintf("kernel log: %v", err)
	}
	lines, _ := e.dmesgMatches("Hyper-V:")
	feats := make([]string, 0, len(lines))
	for _, l := range lines {
		if i := strings.Index(l, "Hyper-V:"); i >= 0 {
			feats = append(feats, strings.TrimSpace(l[i+len("Hyper-V:"):]))
		}
	}
	if len(det) == 0 {
		return false, fmt.Sprintf("no %q in the kernel log; Hyper-V lines: [%s]", hypervDetected, strings.Join(feats, " | "))
	}
	return true, fmt.Sprintf("detected; Hyper-V lines: [%s]", strings.Join(feats, " | "))
}

// checkHyperVClock passes when the clocksource is the reference TSC page and
// the per-CPU clockevent is the synthetic timer in direct mode; it also
// times clock reads (through the vDSO, which reads the TSC page) and checks
// they never go backwards.
func checkHyperVClock(e *env) (bool, string) {
	cs, err := e.readTrimmed(clocksourceNow)
	if err != nil {
		return false, fmt.Sprintf("read clocksource: %v", err)
	}
	ce, err := e.readTrimmed(clockeventCurrent)
	if err != nil {
		return false, fmt.Sprintf("read clockevent: %v", err)
	}
	perCall, backwards := timeClockReads(200000, time.Second)
	detail := fmt.Sprintf("clocksource=%s clockevent=%q clock_gettime=%.1fns backwards=%d", cs, ce, perCall, backwards)
	return cs == hypervTSCPage && ce == hypervClockevent && backwards == 0, detail
}

// timeClockReads reads the monotonic clock up to n times or for about
// budget, whichever ends first (a clocksource that traps, such as the MSR
// one, is slow two levels down); it returns the cost per read and how often
// a read was earlier than the one before.
func timeClockReads(n int, budget time.Duration) (nsPerRead float64, backwards int) {
	start := time.Now()
	prev := start
	i := 0
	for i < n {
		t := time.Now()
		if t.Before(prev) {
			backwards++
		}
		prev = t
		i++
		if i%64 == 0 && t.Sub(start) > budget {
			break
		}
	}
	return float64(prev.Sub(start).Nanoseconds()) / float64(i), backwards
}

// checkClockCost reports the clocksource and the cost of one clock read
// (the vDSO's clock_gettime, which Go's time.Now is), for the benchmark.
func checkClockCost(e *env) (bool, string) {
	cs, err := e.readTrimmed(clocksourceNow)
	if err != nil {
		return false, fmt.Sprintf("read clocksource: %v", err)
	}
	perCall, backwards := timeClockReads(200000, time.Second)
	return backwards == 0, fmt.Sprintf("clocksource=%s read_ns=%.1f backwards=%d", cs, perCall, backwards)
}

// checkNoHyperV passes when nothing of Hyper-V is in use.
func checkNoHyperV(e *env) (bool, string) {
	var seen []string
	if det, err := e.dmesgMatches(hypervDetected); err != nil {
		return false, fmt.Sprintf("kernel log: %v", err)
	} else if len(det) > 0 {
		seen = append(seen, "detected")
	}
	if cs, err := e.readTrimmed(clocksourceNow); err == nil && strings.HasPrefix(cs, "hyperv") {
		seen = append(seen, "clocksource="+cs)
	}
	if ce, err := e.readTrimmed(clockeventCurrent); err == nil && ce == hypervClockevent {
		seen = append(seen, "clockevent="+ce)
	}
	if len(seen) > 0 {
		return false, "Hyper-V in use: " + strings.Join(seen, ", ")
	}
	return true, "no Hyper-V detection, clocksource or clockevent"
}
