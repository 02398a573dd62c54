package main

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"time"
)

// heartbeat-stop check (issue 14): the guest stops answering vmm's VMBus
// heartbeats without panicking or powering off, so that vmm's
// --heartbeat-timeout ends the run (exit 10). It unbinds the heartbeat
// device from hv_utils, which closes its channel: Linux keeps running and
// answers no more. vmm counts a guest as lost only once it has beaten, so
// the check first waits until the channel has taken heartbeatInterrupts
// host interrupts: one for the version negotiation, at most one spare
// from the open, and at least two heartbeat requests, of which vmm sends
// the second only once it has counted the answer to the first.

// heartbeatInterrupts is how many host interrupts on the heartbeat channel
// prove vmm has counted a beat.
const heartbeatInterrupts = 4

// hvUtilsDriver is hv_utils' sysfs directory: a link per bound device, and
// the unbind file.
const hvUtilsDriver = "sys/bus/vmbus/drivers/hv_utils"

func checkHeartbeatStop(e *env) (bool, string) {
	return heartbeatStopCheck(e, vmbusWait, time.Sleep)
}

func heartbeatStopCheck(e *env, wait time.Duration, sleep func(time.Duration)) (bool, string) {
	const step = 200 * time.Millisecond
	dev, irqs, detail := "", uint64(0), ""
	for waited := time.Duration(0); ; waited += step {
		dev, irqs, detail = heartbeatChannel(e)
		if irqs >= heartbeatInterrupts {
			break
		}
		if waited >= wait {
			return false, detail
		}
		sleep(step)
	}
	if err := e.io.unbind(hvUtilsDriver, dev); err != nil {
		return false, fmt.Sprintf("unbind %s from hv_utils: %v", dev, err)
	}
	if heartbeatBound(e, dev) {
		return false, fmt.Sprintf("%s still bound after the unbind", dev)
	}
	return true, fmt.Sprintf("heartbeat device %s unbound from hv_utils after %d host interrupts", dev, irqs)
}

// heartbeatChannel finds the heartbeat device bound to hv_utils and the
// host interrupts its channel took (sysfs channels/RELID/interrupts).
func heartbeatChannel(e *env) (dev string, irqs uint64, detail string) {
	entries, err := fs.ReadDir(e.root, vmbusDevices)
	if err != nil {
		return "", 0, err.Error()
	}
	for _, d := range entries {
		if class, err := e.readTrimmed(path.Join(vmbusDevices, d.Name(), "class_id")); err != nil || class != classHeartbeat {
			continue
		}
		dir := path.Join(vmbusDevices, d.Name())
		if !heartbeatBound(e, d.Name()) {
			return "", 0, fmt.Sprintf("heartbeat device %s not bound to hv_utils", d.Name())
		}
		chans, err := fs.ReadDir(e.root, path.Join(dir, "channels"))
		if err != nil || len(chans) != 1 {
			return "", 0, fmt.Sprintf("heartbeat device %s: channels %d, err %v", d.Name(), len(chans), err)
		}
		s, err := e.readTrimmed(path.Join(dir, "channels", chans[0].Name(), "interrupts"))
		if err != nil {
			return "", 0, err.Error()
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return "", 0, fmt.Sprintf("heartbeat channel interrupts %q", s)
		}
		return d.Name(), n, fmt.Sprintf("heartbeat device %s: %d host interrupts, want %d", d.Name(), n, heartbeatInterrupts)
	}
	return "", 0, "no heartbeat device"
}

// heartbeatBound: dev has a driver and hv_utils lists it.
func heartbeatBound(e *env, dev string) bool {
	_, errDev := fs.Stat(e.root, path.Join(vmbusDevices, dev, "driver"))
	_, errDrv := fs.Stat(e.root, path.Join(hvUtilsDriver, dev))
	return errDev == nil && errDrv == nil
}
