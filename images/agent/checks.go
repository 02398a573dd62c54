package main

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// env is what checks see of the guest. It is an interface to the machine so
// that checks run in unit tests against a fake filesystem and kernel log.
type env struct {
	root      fs.FS                    // the guest's "/" (proc and sys mounted)
	kernelLog func() ([]string, error) // dmesg, one message per line
	release   string                   // uname -r
	opts      options
	moduleErr error   // outcome of loading the initramfs's modules
	io        guestIO // device access for the disk and network checks
}

// checkFunc runs one check and says whether it passed and why.
type checkFunc func(e *env) (pass bool, detail string)

// registry maps check names (as in vmm.checks=) to checks. Later checks
// (disk, net, hyperv) are added here.
type registry map[string]checkFunc

func newRegistry() registry {
	r := registry{
		"boot":        checkBoot,
		"cpus":        checkCPUs,
		"clocksource": checkClocksource,
		"modules":     checkModules,
		"disk":        checkDisk,
		"disk-ro":     checkDiskRO,
		"disk-ids":    checkDiskIDs,
		"disk-nvme":   checkDiskNVMe,
		"disk-ahci":   checkDiskAHCI,
		"cdrom":       checkCDROM,
		"net":         checkNet,
		"iobench":     checkIOBench,
		"pci":         checkPCI,
		"durable":     checkDurable,
		"rng":         checkRNG,
		"balloon":     checkBalloon,
		"memfree":     checkMemFree,
		"suspend":     checkSuspend,
		"console":     checkConsole,
		"acpi":        checkACPI,
		"acpi-tables": checkACPITables,
		"efi":         checkEFI,
		"efi-vars":    checkEFIVars,
		"secure-boot": checkSecureBoot,
	}
	for name, c := range hypervChecks() {
		r[name] = c
	}
	return r
}

func (r registry) names() []string {
	n := make([]string, 0, len(r))
	for k := range r {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// outcome is one reported check result.
type outcome struct {
	name   string
	pass   bool
	detail string
}

// run runs the named checks in order; an unknown name is a failed check.
// A panicking check is a failed check too: the agent is PID 1, and an
// exiting init takes the kernel down with a misleading panic.
func (r registry) run(e *env, names []string, emit func(outcome)) (pass, fail int) {
	for _, n := range names {
		o := outcome{name: n}
		if f, ok := r[n]; ok {
			o.pass, o.detail = safeRun(f, e)
		} else {
			o.detail = fmt.Sprintf("unknown check; known: %s", strings.Join(r.names(), ","))
		}
		if o.pass {
			pass++
		} else {
			fail++
		}
		emit(o)
	}
	return pass, fail
}

func safeRun(f checkFunc, e *env) (pass bool, detail string) {
	defer func() {
		if r := recover(); r != nil {
			pass, detail = false, fmt.Sprintf("check panicked: %v", r)
		}
	}()
	return f(e)
}

func (e *env) readTrimmed(name string) (string, error) {
	b, err := fs.ReadFile(e.root, name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// dmesgMatches returns the kernel log lines containing substr.
func (e *env) dmesgMatches(substr string) ([]string, error) {
	lines, err := e.kernelLog()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range lines {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out, nil
}

// checkBoot passes once userspace runs; it reports what booted and when.
func checkBoot(e *env) (bool, string) {
	up, err := e.readTrimmed("proc/uptime")
	if err != nil {
		return true, fmt.Sprintf("kernel=%s uptime=unknown (%v)", e.release, err)
	}
	secs, _, _ := strings.Cut(up, " ")
	return true, fmt.Sprintf("kernel=%s uptime=%ss", e.release, secs)
}

// checkCPUs compares the online CPUs with vmm.expect_cpus, or with the
// present CPUs when no count was given (every CPU the VMM described came up).
func checkCPUs(e *env) (bool, string) {
	onlineList, err := e.readTrimmed("sys/devices/system/cpu/online")
	if err != nil {
		return false, fmt.Sprintf("read online CPUs: %v", err)
	}
	online, err := countCPUList(onlineList)
	if err != nil {
		return false, fmt.Sprintf("online CPUs %q: %v", onlineList, err)
	}
	want, source := e.opts.expectCPUs, "expect_cpus"
	if want == 0 {
		presentList, err := e.readTrimmed("sys/devices/system/cpu/present")
		if err != nil {
			return false, fmt.Sprintf("read present CPUs: %v", err)
		}
		if want, err = countCPUList(presentList); err != nil {
			return false, fmt.Sprintf("present CPUs %q: %v", presentList, err)
		}
		source = "present"
	}
	return online == want, fmt.Sprintf("online=%d (%s) %s=%d", online, onlineList, source, want)
}

// badClocksource: the kernel found no usable hardware clock.
func badClocksource(name string) bool {
	return name == "jiffies" || name == "refined-jiffies"
}

// checkClocksource reports the clocksource and fails when the kernel fell
// back to jiffies or declared the TSC unstable (a VMM that gives no usable
// timer or TSC frequency).
func checkClocksource(e *env) (bool, string) {
	cur, err := e.readTrimmed("sys/devices/system/clocksource/clocksource0/current_clocksource")
	if err != nil {
		return false, fmt.Sprintf("read current clocksource: %v", err)
	}
	avail, _ := e.readTrimmed("sys/devices/system/clocksource/clocksource0/available_clocksource")
	detail := fmt.Sprintf("current=%s available=[%s]", cur, avail)
	unstable, err := e.dmesgMatches("Marking TSC unstable")
	if err != nil {
		return false, fmt.Sprintf("%s dmesg: %v", detail, err)
	}
	if len(unstable) > 0 {
		return false, fmt.Sprintf("%s dmesg: %s", detail, unstable[0])
	}
	if badClocksource(cur) {
		return false, detail + " (no hardware clocksource)"
	}
	return true, detail
}

// checkModules passes when every module in the initramfs loaded.
func checkModules(e *env) (bool, string) {
	if e.moduleErr != nil {
		return false, e.moduleErr.Error()
	}
	return true, "all modules loaded"
}
