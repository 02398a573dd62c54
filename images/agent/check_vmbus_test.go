package main

import (
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestVMBusCheck(t *testing.T) {
	dev := func(class string, bound bool) fstest.MapFS {
		m := fstest.MapFS{"sys/bus/vmbus/devices/" + class[1:9] + "/class_id": {Data: []byte(class + "\n")}}
		if bound {
			m["sys/bus/vmbus/devices/"+class[1:9]+"/driver/uevent"] = &fstest.MapFile{}
		}
		return m
	}
	fsOf := func(parts ...fstest.MapFS) fstest.MapFS {
		out := fstest.MapFS{}
		for _, p := range parts {
			for k, v := range p {
				out[k] = v
			}
		}
		return out
	}
	good := logOf("[    1.0] hv_vmbus: Vmbus version:5.3", "[    1.2] hv_utils: Heartbeat IC version 3.0",
		"[    1.2] hv_utils: Shutdown IC version 3.2", "[    1.2] hv_utils: TimeSync IC version 4.0")
	var slept time.Duration
	sleep := func(d time.Duration) { slept += d }

	all := fsOf(dev(classHeartbeat, true), dev(classShutdown, true), dev(classTimeSync, true))
	e := &env{root: all, kernelLog: good}
	pass, detail := vmbusCheck(e, time.Second, sleep)
	assert.True(t, pass, detail)
	assert.Contains(t, detail, "version 5.3")
	assert.Contains(t, detail, "Heartbeat IC version 3.0, Shutdown IC version 3.2, TimeSync IC version 4.0")
	assert.Zero(t, slept)

	for name, e := range map[string]*env{
		"no VMBus":        {root: fstest.MapFS{}, kernelLog: logOf("hello")},
		"shutdown absent": {root: fsOf(dev(classHeartbeat, true), dev(classTimeSync, true)), kernelLog: good},
		"unbound":         {root: fsOf(dev(classHeartbeat, true), dev(classShutdown, false), dev(classTimeSync, true)), kernelLog: good},
		"no IC versions":  {root: all, kernelLog: logOf("hv_vmbus: Vmbus version:4.1")},
	} {
		slept = 0
		pass, detail := vmbusCheck(e, time.Second, sleep)
		assert.False(t, pass, "%s: %s", name, detail)
		assert.Equal(t, time.Second, slept, "%s: polled until the deadline", name)
	}
}
