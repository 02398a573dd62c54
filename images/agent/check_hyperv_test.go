package main

import (
	"errors"
	"testing"
	"testing/fstest"
	"time"

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

func TestHyperVClockEveryCPU(t *testing.T) {
	fsys := hypervFS("hyperv_clocksource_tsc_page", "Hyper-V clockevent")
	fsys["sys/devices/system/clockevents/clockevent1/current_device"] = &fstest.MapFile{Data: []byte("lapic-deadline\n")}
	fsys["sys/devices/system/clockevents/broadcast/current_device"] = &fstest.MapFile{Data: []byte("hpet\n")}
	e := &env{root: fsys, kernelLog: logOf()}
	pass, detail := checkHyperVClock(e)
	assert.False(t, pass, "CPU 1 is not on the synthetic timer")
	assert.Contains(t, detail, `clockevents=["Hyper-V clockevent" "lapic-deadline"]`)
	fsys["sys/devices/system/clockevents/clockevent1/current_device"] = &fstest.MapFile{Data: []byte("Hyper-V clockevent\n")}
	pass, detail = checkHyperVClock(e)
	assert.True(t, pass, detail)
}

func TestMSRCost(t *testing.T) {
	probe := func() (map[string]batchStats, error) {
		return map[string]batchStats{"noexit": {median: 50, lo: 40, hi: 60}, "hvmsr": {median: 9000, lo: 8000, hi: 12000}}, nil
	}
	pass, detail := checkMSRCost(nil, probe)
	assert.True(t, pass, detail)
	assert.Contains(t, detail, "noexit_ns=50.0 noexit_min_ns=40.0 noexit_max_ns=60.0 kvmexit=unreadable hvmsr_ns=9000.0")
	assert.Contains(t, detail, "hvmsr_ns=9000.0 hvmsr_min_ns=8000.0 hvmsr_max_ns=12000.0")
	pass, detail = checkMSRCost(nil, func() (map[string]batchStats, error) {
		return map[string]batchStats{"noexit": {median: 50}}, nil
	})
	assert.True(t, pass, detail)
	assert.Contains(t, detail, "kvmexit=unreadable hvmsr=unreadable")
	pass, _ = checkMSRCost(nil, func() (map[string]batchStats, error) { return map[string]batchStats{}, nil })
	assert.False(t, pass, "not even the passed-through MSR")
	pass, detail = checkMSRCost(nil, func() (map[string]batchStats, error) { return nil, errors.New("no msr driver") })
	assert.False(t, pass)
	assert.Equal(t, "no msr driver", detail)
}

func TestHyperVSMP(t *testing.T) {
	fsys := fstest.MapFS{
		"sys/devices/system/cpu/online": {Data: []byte("0-1\n")},
		"proc/interrupts":               {Data: []byte("  0: 1 2 IO-APIC timer\nRES: 10 20 Rescheduling interrupts\nHYP: 3 4 Hypervisor callback interrupts\n")},
	}
	rounds := 0
	pass, detail := checkHyperVSMP(&env{root: fsys}, func(n int) error { rounds = n; return nil })
	assert.True(t, pass, detail)
	assert.Equal(t, tlbRounds, rounds)
	assert.Contains(t, detail, "RES: 10 20 Rescheduling interrupts | HYP: 3 4 Hypervisor callback interrupts")
	pass, detail = checkHyperVSMP(&env{root: fsys}, func(int) error { return errors.New("mmap: ENOMEM") })
	assert.False(t, pass)
	assert.Contains(t, detail, "ENOMEM")
	fsys["sys/devices/system/cpu/online"] = &fstest.MapFile{Data: []byte("0\n")}
	pass, detail = checkHyperVSMP(&env{root: fsys}, func(int) error { t.Fatal("ran on one CPU"); return nil })
	assert.False(t, pass)
	assert.Contains(t, detail, `needs two CPUs online, have "0"`)
}

func TestTimeBatches(t *testing.T) {
	calls := 0
	st, err := timeBatches(5, 100, time.Minute, func() error { calls++; return nil })
	assert.NoError(t, err)
	assert.Equal(t, 500, calls)
	assert.Equal(t, 500, st.reads)
	assert.LessOrEqual(t, st.lo, st.median)
	assert.LessOrEqual(t, st.median, st.hi)
	_, err = timeBatches(3, 10, time.Minute, func() error { return errors.New("EIO") })
	assert.EqualError(t, err, "EIO")
}

func TestMitigations(t *testing.T) {
	fsys := fstest.MapFS{
		"sys/devices/system/cpu/vulnerabilities/spectre_v2":           {Data: []byte("Mitigation: Retpolines\n")},
		"sys/devices/system/cpu/vulnerabilities/spec_rstack_overflow": {Data: []byte("Mitigation: Safe RET\n")},
	}
	pass, detail := checkMitigations(&env{root: fsys})
	assert.True(t, pass)
	assert.Equal(t, "spec_rstack_overflow: Mitigation: Safe RET | spectre_v2: Mitigation: Retpolines", detail)
	pass, _ = checkMitigations(&env{root: fstest.MapFS{}})
	assert.False(t, pass)
}
