package main

import (
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHeartbeatStopCheck(t *testing.T) {
	const dev = "57164f39-9115-4e78-ab55-382f3bd5422d"
	sysfs := func(irqs string, bound bool) fstest.MapFS {
		m := fstest.MapFS{
			vmbusDevices + "/" + dev + "/class_id":              {Data: []byte(classHeartbeat + "\n")},
			vmbusDevices + "/" + dev + "/channels/5/interrupts": {Data: []byte(irqs + "\n")},
			// Another service, which must be left alone.
			vmbusDevices + "/0e0b6031/class_id":      {Data: []byte(classShutdown + "\n")},
			vmbusDevices + "/0e0b6031/driver/uevent": {},
			hvUtilsDriver + "/0e0b6031/uevent":       {},
		}
		if bound {
			m[vmbusDevices+"/"+dev+"/driver/uevent"] = &fstest.MapFile{}
			m[hvUtilsDriver+"/"+dev+"/uevent"] = &fstest.MapFile{}
		}
		return m
	}
	var slept time.Duration
	sleep := func(d time.Duration) { slept += d }

	root := sysfs("4", true)
	io := &fakeIO{sysfs: root}
	pass, detail := heartbeatStopCheck(&env{root: root, io: io}, time.Second, sleep)
	require.True(t, pass, detail)
	assert.Contains(t, detail, "unbound from hv_utils after 4 host interrupts")
	assert.NotContains(t, root, hvUtilsDriver+"/"+dev+"/uevent")
	assert.Contains(t, root, hvUtilsDriver+"/0e0b6031/uevent", "only the heartbeat is unbound")
	assert.Zero(t, slept)

	for name, tc := range map[string]struct {
		irqs  string
		bound bool
		want  string
	}{
		"too early": {"3", true, "3 host interrupts, want 4"},
		"unbound":   {"9", false, "not bound to hv_utils"},
		"garbage":   {"x", true, `interrupts "x"`},
	} {
		slept = 0
		root := sysfs(tc.irqs, tc.bound)
		pass, detail := heartbeatStopCheck(&env{root: root, io: &fakeIO{sysfs: root}}, time.Second, sleep)
		assert.False(t, pass, name)
		assert.Contains(t, detail, tc.want, name)
		assert.Equal(t, time.Second, slept, "%s: polled until the deadline", name)
	}

	// An unbind that leaves the device bound fails the check.
	root = sysfs("4", true)
	pass, detail = heartbeatStopCheck(&env{root: root, io: &fakeIO{sysfs: fstest.MapFS{hvUtilsDriver + "/" + dev + "/uevent": {}}}}, time.Second, sleep)
	assert.False(t, pass)
	assert.Contains(t, detail, "still bound")

	pass, detail = heartbeatStopCheck(&env{root: fstest.MapFS{vmbusDevices + "/x/class_id": {Data: []byte(classShutdown)}}, io: &fakeIO{}}, 0, sleep)
	assert.False(t, pass)
	assert.Contains(t, detail, "no heartbeat device")
}
