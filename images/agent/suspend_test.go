package main

import (
	"errors"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
)

const cpusOnline = "sys/devices/system/cpu/online"

func TestCheckSuspend(t *testing.T) {
	fsys := func(states, memSleep string) fstest.MapFS {
		return fstest.MapFS{
			"sys/power/state":     {Data: []byte(states + "\n")},
			"sys/power/mem_sleep": {Data: []byte(memSleep + "\n")},
			cpusOnline:            {Data: []byte("0-1\n")},
		}
	}
	klog := logOf("PM: suspend entry (deep)", "ACPI: PM: Waking up from system sleep state S3", "PM: suspend exit")

	io := &fakeIO{slept: 3200 * time.Millisecond}
	pass, detail := checkSuspend(&env{root: fsys("freeze mem disk", "s2idle [deep]"), io: io, kernelLog: klog})
	assert.True(t, pass, detail)
	assert.Equal(t, []time.Duration{suspendWake}, io.wakes)
	assert.Contains(t, detail, "after 3.2s")
	assert.Contains(t, detail, "2 CPU(s) online after")
	// As a CI run measured: the RTC's whole seconds cost up to two.
	pass, detail = checkSuspend(&env{root: fsys("freeze mem disk", "s2idle [deep]"), io: &fakeIO{slept: 1789 * time.Millisecond}, kernelLog: klog})
	assert.True(t, pass, detail)

	// Linux could not start CPU 1 again after the resume.
	root := fsys("mem", "[deep]")
	io = &fakeIO{slept: 3 * time.Second, resumed: func() { root[cpusOnline] = &fstest.MapFile{Data: []byte("0\n")} }}
	pass, detail = checkSuspend(&env{root: root, io: io, kernelLog: klog})
	assert.False(t, pass)
	assert.Contains(t, detail, "resumed with 1 CPU(s) online of the 2")

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
