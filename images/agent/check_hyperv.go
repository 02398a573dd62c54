package main

import (
	"fmt"
	"io/fs"
	"sort"
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
		"hyperv":         checkHyperV,
		"hyperv-clock":   checkHyperVClock,
		"no-hyperv":      checkNoHyperV,
		"clock-cost":     checkClockCost,
		"hyperv-smp":     func(e *env) (bool, string) { return checkHyperVSMP(e, tlbShootdowns) },
		"msr-cost":       func(e *env) (bool, string) { return checkMSRCost(e, msrCosts) },
		"mitigations":    checkMitigations,
		"vmbus":          checkVMBus,
		"disk-vmbus":     checkDiskVMBus,
		"kvp":            checkKVP,
		"heartbeat-stop": checkHeartbeatStop,
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
// every CPU's clockevent is the synthetic timer in direct mode; it also
// times clock reads (through the vDSO, which reads the TSC page) and checks
// they never go backwards.
func checkHyperVClock(e *env) (bool, string) {
	cs, err := e.readTrimmed(clocksourceNow)
	if err != nil {
		return false, fmt.Sprintf("read clocksource: %v", err)
	}
	events, err := e.clockevents()
	if err != nil {
		return false, fmt.Sprintf("read clockevents: %v", err)
	}
	direct := len(events) > 0
	for _, ce := range events {
		direct = direct && ce == hypervClockevent
	}
	perCall, backwards := timeClockReads(200000, time.Second)
	detail := fmt.Sprintf("clocksource=%s clockevents=%q clock_gettime=%.1fns backwards=%d", cs, events, perCall, backwards)
	return cs == hypervTSCPage && direct && backwards == 0, detail
}

// clockevents returns each CPU's current clockevent device, by CPU.
func (e *env) clockevents() ([]string, error) {
	dirs, err := fs.Glob(e.root, "sys/devices/system/clockevents/clockevent[0-9]*")
	if err != nil {
		return nil, err
	}
	sort.Slice(dirs, func(i, j int) bool {
		return len(dirs[i]) < len(dirs[j]) || len(dirs[i]) == len(dirs[j]) && dirs[i] < dirs[j]
	})
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		ce, err := e.readTrimmed(d + "/current_device")
		if err != nil {
			return nil, err
		}
		out = append(out, ce)
	}
	return out, nil
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
// (the vDSO's clock_gettime, which Go's time.Now is), for the benchmark: the
// median of several batches, with the fastest and slowest batch, so that a
// burst of load on the host shows as spread rather than as the figure.
func checkClockCost(e *env) (bool, string) {
	cs, err := e.readTrimmed(clocksourceNow)
	if err != nil {
		return false, fmt.Sprintf("read clocksource: %v", err)
	}
	backwards := 0
	prev := time.Now()
	st, _ := timeBatches(9, 200000, 150*time.Millisecond, func() error {
		t := time.Now()
		if t.Before(prev) {
			backwards++
		}
		prev = t
		return nil
	})
	return backwards == 0, fmt.Sprintf("clocksource=%s read_ns=%.1f min_ns=%.1f max_ns=%.1f reads=%d backwards=%d",
		cs, st.median, st.lo, st.hi, st.reads, backwards)
}

// checkMSRCost times MSR reads through the msr driver (see msrProbes): the
// difference between hvmsr and noexit is the round trip of one emulated
// Hyper-V MSR access, the cost the MSR clocksource would pay per read. An
// MSR the guest cannot read (no Hyper-V) is reported unreadable; the check
// fails only when the passed-through one is, i.e. without the msr driver.
func checkMSRCost(_ *env, probe func() (map[string]batchStats, error)) (bool, string) {
	costs, err := probe()
	if err != nil {
		return false, err.Error()
	}
	var b strings.Builder
	for _, p := range msrProbes {
		st, ok := costs[p.name]
		if !ok {
			fmt.Fprintf(&b, "%s=unreadable ", p.name)
			continue
		}
		fmt.Fprintf(&b, "%s_ns=%.1f %s_min_ns=%.1f %s_max_ns=%.1f ", p.name, st.median, p.name, st.lo, p.name, st.hi)
	}
	b.WriteString("(pread of /dev/cpu/0/msr: FS_BASE, APIC_BASE, HV_X64_MSR_TIME_REF_COUNT)")
	_, base := costs["noexit"]
	return base, b.String()
}

// tlbRounds is how many remote TLB flushes the hyperv-smp check causes.
const tlbRounds = 2000

// checkHyperVSMP exercises the multi-CPU enlightenments: with two or more
// CPUs online it makes the kernel flush a remote CPU's TLB tlbRounds times
// (a hypercall each with Hyper-V's remote flush). The report's hypercall
// counts, read by the e2e test, say whether the flushes and the IPIs went
// through vmm; the check reports the kernel's interrupt counts beside.
func checkHyperVSMP(e *env, shootdowns func(rounds int) error) (bool, string) {
	onlineList, err := e.readTrimmed("sys/devices/system/cpu/online")
	if err != nil {
		return false, fmt.Sprintf("read online CPUs: %v", err)
	}
	if n, err := countCPUList(onlineList); err != nil || n < 2 {
		return false, fmt.Sprintf("needs two CPUs online, have %q", onlineList)
	}
	if err := shootdowns(tlbRounds); err != nil {
		return false, fmt.Sprintf("TLB shootdowns: %v", err)
	}
	var irqs []string
	if data, err := fs.ReadFile(e.root, "proc/interrupts"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			if len(f) > 0 && (f[0] == "RES:" || f[0] == "CAL:" || f[0] == "TLB:" || f[0] == "HYP:" || f[0] == "HRE:") {
				irqs = append(irqs, strings.Join(f, " "))
			}
		}
	}
	return true, fmt.Sprintf("online=%s tlb_rounds=%d interrupts: [%s]", onlineList, tlbRounds, strings.Join(irqs, " | "))
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

// checkMitigations reports the kernel's CPU vulnerability mitigations, which
// set the cost of every kernel entry: two VMMs offering different CPUID bits
// can make the same guest pay differently for a syscall.
func checkMitigations(e *env) (bool, string) {
	names, err := fs.Glob(e.root, "sys/devices/system/cpu/vulnerabilities/*")
	if err != nil || len(names) == 0 {
		return false, fmt.Sprintf("no vulnerabilities in sysfs (%v)", err)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		v, err := e.readTrimmed(n)
		if err != nil {
			v = err.Error()
		}
		parts = append(parts, n[strings.LastIndex(n, "/")+1:]+": "+v)
	}
	return true, strings.Join(parts, " | ")
}
