package main

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
)

func hypervFS(clock, event string) fstest.MapFS {
	return fstest.MapFS{
		"sys/devices/system/clocksource/clocksource0/current_clocksource": {Data: []byte(clock + "\n")},
		"sys/devices/system/clockevents/clockevent0/current_device":       {Data: []byte(event + "\n")},
	}
}

func TestHyperVChecks(t *testing.T) {
	r := newRegistry()
	on := &env{root: hypervFS("hyperv_clocksource_tsc_page", "Hyper-V clockevent"), kernelLog: logOf(
		"[    0.000000] Hypervisor detected: Microsoft Hyper-V",
		"[    0.000000] Hyper-V: privilege flags low 0xae7f, high 0x30, hints 0xe2c, misc 0x80d08",
		"[    0.000000] Hyper-V: Host Build 10.0.14393.0-0-0",
	)}
	pass, detail := r["hyperv"](on)
	assert.True(t, pass, detail)
	assert.Contains(t, detail, "privilege flags low 0xae7f")
	pass, detail = r["hyperv-clock"](on)
	assert.True(t, pass, detail)
	assert.Contains(t, detail, "backwards=0")
	pass, detail = r["no-hyperv"](on)
	assert.False(t, pass)
	assert.Contains(t, detail, "detected, clocksource=hyperv_clocksource_tsc_page, clockevent=Hyper-V clockevent")

	off := &env{root: hypervFS("kvm-clock", "lapic-deadline"), kernelLog: logOf("Hypervisor detected: KVM")}
	pass, detail = r["no-hyperv"](off)
	assert.True(t, pass, detail)
	pass, detail = r["hyperv"](off)
	assert.False(t, pass)
	assert.Contains(t, detail, "no \"Hypervisor detected: Microsoft Hyper-V\"")
	pass, detail = r["hyperv-clock"](off)
	assert.False(t, pass)
	assert.Contains(t, detail, "clocksource=kvm-clock")

	pass, detail = r["clock-cost"](on)
	assert.True(t, pass, detail)
	assert.Contains(t, detail, "clocksource=hyperv_clocksource_tsc_page read_ns=")
	pass, _ = r["clock-cost"](&env{root: fstest.MapFS{}, kernelLog: logOf()})
	assert.False(t, pass)

	msr := &env{root: hypervFS("hyperv_clocksource_msr", "Hyper-V clockevent"), kernelLog: logOf()}
	pass, _ = r["hyperv-clock"](msr)
	assert.False(t, pass, "the MSR clocksource is not the TSC page")
	pass, _ = r["hyperv-clock"](&env{root: fstest.MapFS{}, kernelLog: logOf()})
	assert.False(t, pass)
}
