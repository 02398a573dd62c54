package main

import (
	"fmt"
	"strings"
	"time"
)

// suspendWake is how far ahead the suspend check sets the RTC alarm, as
// `rtcwake -m mem -s 3` does.
const suspendWake = 3 * time.Second

// suspendMinSlept is the least CLOCK_BOOTTIME must advance across the
// suspend. The alarm is whole RTC seconds ahead (up to a second less than
// suspendWake passes before it fires), and Linux adds the time asleep from
// the RTC's whole seconds read at suspend and at resume, late in a slow
// suspend path (up to another second lost): a CI run measured 1.79 s for an
// S3 cycle vmm timed at 2.05 s.
const suspendMinSlept = suspendWake - 2*time.Second

// checkSuspend suspends the guest to RAM (ACPI S3) and has the RTC alarm
// wake it: the platform must offer S3 as "mem" with mem_sleep "deep", the
// write to /sys/power/state must return (the kernel resumed) with as many
// CPUs online as before, boot time must have advanced by the time asleep,
// and the kernel log must show the S3 round trip.
func checkSuspend(e *env) (bool, string) {
	states, err := e.readTrimmed("sys/power/state")
	if err != nil {
		return false, fmt.Sprintf("read /sys/power/state: %v", err)
	}
	if !strings.Contains(" "+states+" ", " mem ") {
		return false, fmt.Sprintf("no suspend to RAM: /sys/power/state is %q", states)
	}
	memSleep, err := e.readTrimmed("sys/power/mem_sleep")
	if err != nil {
		return false, fmt.Sprintf("read /sys/power/mem_sleep: %v", err)
	}
	if !strings.Contains(memSleep, "[deep]") {
		return false, fmt.Sprintf("mem is not ACPI S3: mem_sleep is %q", memSleep)
	}
	cpus, err := e.onlineCPUs()
	if err != nil {
		return false, err.Error()
	}
	slept, err := e.io.suspendToRAM(suspendWake)
	if err != nil {
		return false, fmt.Sprintf("suspend to RAM: %v", err)
	}
	// Linux takes every CPU but the boot CPU offline before S3 and starts
	// them again (INIT/SIPI) after it; one it could not start stays offline.
	cpusAfter, err := e.onlineCPUs()
	if err != nil {
		return false, err.Error()
	}
	if cpusAfter != cpus {
		return false, fmt.Sprintf("resumed with %d CPU(s) online of the %d before the suspend", cpusAfter, cpus)
	}
	if slept < suspendMinSlept {
		return false, fmt.Sprintf("resumed, but boot time advanced only %v (alarm %v ahead)", slept, suspendWake)
	}
	var found []string
	for _, want := range []string{"PM: suspend entry (deep)", "Waking up from system sleep state S3", "PM: suspend exit"} {
		lines, err := e.dmesgMatches(want)
		if err != nil {
			return false, fmt.Sprintf("kernel log: %v", err)
		}
		if len(lines) == 0 {
			return false, fmt.Sprintf("resumed after %v, but the kernel log lacks %q", slept.Round(time.Millisecond), want)
		}
		found = append(found, want)
	}
	return true, fmt.Sprintf("suspended to RAM (mem_sleep %s), woken by the RTC alarm after %v of boot time, %d CPU(s) online after; kernel log: %s",
		memSleep, slept.Round(time.Millisecond), cpusAfter, strings.Join(found, ", "))
}
