package main

import (
	"errors"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestCheckSuspend(t *testing.T) {
	fsys := func(states, memSleep string) fstest.MapFS {
		return fstest.MapFS{
			"sys/power/state":     {Data: []byte(states + "\n")},
			"sys/power/mem_sleep": {Data: []byte(memSleep + "\n")},
		}
	}
	klog := logOf("PM: suspend entry (deep)", "ACPI: PM: Waking up from system sleep state S3", "PM: suspend exit")

	io := &fakeIO{slept: 3200 * time.Millisecond}
	pass, detail := checkSuspend(&env{root: fsys("freeze mem disk", "s2idle [deep]"), io: io, kernelLog: klog})
	assert.True(t, pass, detail)
	assert.Equal(t, []time.Duration{suspendWake}, io.wakes)
	assert.Contains(t, detail, "after 3.2s")
	// As a CI run measured: the RTC's whole seconds cost up to two.
	pass, detail = checkSuspend(&env{root: fsys("freeze mem disk", "s2idle [deep]"), io: &fakeIO{slept: 1789 * time.Millisecond}, kernelLog: klog})
	assert.True(t, pass, detail)

	for _, tc := range []struct {
		name             string
		states, memSleep string
		io               *fakeIO
		klog             func() ([]string, error)
		want             string
	}{
		{"no S3", "freeze disk", "[s2idle]", &fakeIO{}, klog, "no suspend to RAM"},
		{"s2idle only", "freeze mem", "[s2idle]", &fakeIO{}, klog, "mem is not ACPI S3"},
		{"write fails", "mem", "[deep]", &fakeIO{sleepErr: errors.New("EBUSY")}, klog, "EBUSY"},
		{"no time asleep", "mem", "[deep]", &fakeIO{slept: 100 * time.Millisecond}, klog, "advanced only"},
		{"no resume in log", "mem", "[deep]", &fakeIO{slept: 3 * time.Second}, logOf("PM: suspend entry (deep)"), "lacks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pass, detail := checkSuspend(&env{root: fsys(tc.states, tc.memSleep), io: tc.io, kernelLog: tc.klog})
			assert.False(t, pass)
			assert.Contains(t, detail, tc.want)
		})
	}
}
