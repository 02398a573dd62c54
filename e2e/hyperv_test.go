package e2e

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
	"github.com/vmmdev/vmm/vmm"
)

func TestCompareHyperV(t *testing.T) {
	line := func(lines string) string {
		return `E2E-CON hyperv VMM-AGENT: check=hyperv result=pass detail="detected; Hyper-V lines: [` + lines + `]"`
	}
	vmm := []string{"noise", line("privilege flags low 0xae7f, high 0x30 | Host Build 10.0.14393.0-0-0 | Using IPI hypercalls | " +
		"Using enlightened APIC (xapic mode)")}
	qemu := []string{line("Using IPI hypercalls | Using enlightened APIC (xapic mode) | privilege flags low 0xbe7f, high 0x8030 | " +
		"Host Build 10.0.14393.0-0-0")}
	require.NoError(t, compareHyperV(map[string][]string{"hyperv": vmm, "hyperv-qemu": qemu}))
	noAPIC := []string{line("Using IPI hypercalls | privilege flags low 0xbe7f")}
	err := compareHyperV(map[string][]string{"hyperv": noAPIC, "hyperv-qemu": noAPIC})
	require.ErrorContains(t, err, "vapic not in use")

	qemu = []string{line("privilege flags low 0xbe7f | Host Build 10.0.14393.0-0-0")}
	err = compareHyperV(map[string][]string{"hyperv": vmm, "hyperv-qemu": qemu})
	require.ErrorContains(t, err, "Using IPI hypercalls")

	err = compareHyperV(map[string][]string{"hyperv": vmm})
	require.ErrorContains(t, err, "qemu: false")
	lines, ok := hypervLines([]string{`VMM-AGENT: check=hyperv result=pass detail="unterminated`})
	require.False(t, ok)
	require.Nil(t, lines)
}

func TestHyperVScenarios(t *testing.T) {
	list, err := hypervScenarios()
	require.NoError(t, err)
	require.Len(t, list, 7)
	require.Contains(t, list[0].Args, "all")
	require.Equal(t, 3, list[1].WantExit)
	require.Equal(t, hypervSMP, list[2].Name)
	require.True(t, list[2].Report)
	require.Contains(t, list[2].Args, "2")
	require.Equal(t, scenario.Pass, list[2].WantChecks["hyperv-smp"])
	require.Equal(t, vmbusScenario, list[3].Name)
	require.Contains(t, list[3].Args, "--vmbus")
	require.Equal(t, scenario.Pass, list[3].WantChecks["vmbus"])
	kt := list[4]
	require.Equal(t, kernelTimersScenario, kt.Name)
	require.True(t, kt.Report)
	last := -1
	for i, a := range kt.Args {
		if a == "--hyperv" {
			last = i
		}
	}
	require.Equal(t, "all,kernel-timers", kt.Args[last+1], "the last --hyperv wins")
	require.Equal(t, "vmbus-panic", list[5].Name)
	require.Equal(t, 3, list[5].WantExit)
	require.Contains(t, list[6].Args, testhost.QEMUHyperVCPU)
	require.Equal(t, []string{"from hyperv: guest crash (Hyper-V crash MSRs) P0="}, consoleWants("hyperv-panic"))
}

func TestCheckSMPReport(t *testing.T) {
	good := `{"exit_code": 0, "hyperv": {"features": "all", "msrs": {}, "hypercalls": {
	  "HvSendSyntheticClusterIpi": {"calls": 5, "statuses": {"SUCCESS": 5}},
	  "HvFlushVirtualAddressList": {"calls": 7, "statuses": {"SUCCESS": 7}}},
	  "vps": [
	    {"vp": 0, "synic": true, "sints_raised": 0, "timers": [{"timer": 0, "mode": "direct", "periodic": false, "expired": 9, "delivered": 9}]},
	    {"vp": 1, "synic": true, "sints_raised": 0, "timers": [{"timer": 0, "mode": "direct", "periodic": false, "expired": 4, "delivered": 4}]}]}}`
	console := func(doc string) []string {
		var out []string
		for _, l := range strings.Split(doc, "\n") {
			out = append(out, scenario.ReportPrefix+l)
		}
		return out
	}
	require.NoError(t, checkSMPReport(console(good)))

	noIPI := strings.Replace(good, `"HvSendSyntheticClusterIpi"`, `"HvNotifyLongSpinWait"`, 1)
	require.ErrorContains(t, checkSMPReport(console(noIPI)), "HvSendSyntheticClusterIpi/HvSendSyntheticClusterIpiEx: 0 calls")
	failedFlush := strings.Replace(good, `"statuses": {"SUCCESS": 7}`, `"statuses": {"SUCCESS": 6, "INVALID_PARAMETER": 1}`, 1)
	require.ErrorContains(t, checkSMPReport(console(failedFlush)), "7 calls, 6 successful")
	noTimer := strings.Replace(good, `"expired": 4, "delivered": 4`, `"expired": 4, "delivered": 0`, 1)
	require.ErrorContains(t, checkSMPReport(console(noTimer)), "vCPU 1: no direct-mode timer delivered")
	oneVP := strings.Replace(good, `,
	    {"vp": 1, "synic": true, "sints_raised": 0, "timers": [{"timer": 0, "mode": "direct", "periodic": false, "expired": 4, "delivered": 4}]}`, "", 1)
	require.ErrorContains(t, checkSMPReport(console(oneVP)), "1 vCPUs in the summary, want 2")
	message := strings.Replace(good, `"mode": "direct", "periodic": false, "expired": 4`, `"mode": "message", "periodic": false, "expired": 4`, 1)
	require.ErrorContains(t, checkSMPReport(console(message)), "vCPU 1: no direct-mode timer delivered")
	require.ErrorContains(t, checkSMPReport(nil), "want one report")
	kernel := strings.Replace(noTimer, `"features": "all",`, `"features": "all,kernel-timers", "timers": "kernel",`, 1)
	require.NotEqual(t, noTimer, kernel)
	require.NoError(t, checkSMPReport(console(kernel)), "KVM's timers are not in the report")
}

func TestCheckVMBusReport(t *testing.T) {
	good := `{"exit_code": 0, "hyperv": {"features": "all", "vmbus": {
	  "bus": {"connected": true, "version": "5.3", "channels": [
	    {"class": "57164f39-9115-4e78-ab55-382f3bd5422d", "open": true},
	    {"class": "0e0b6031-5213-4934-818b-38d90ced39db", "open": true},
	    {"class": "9527e630-d0ae-497b-adce-e80ab0175caf", "open": true},
	    {"class": "a9a0f4e7-5a45-4d96-b827-8a841e8c03e6", "open": true}]},
	  "heartbeat": {"state": "ready"}, "shutdown": {"state": "ready"}, "timesync": {"state": "ready", "answered": 1}}}}`
	console := func(doc string) []string {
		var out []string
		for _, l := range strings.Split(doc, "\n") {
			out = append(out, scenario.ReportPrefix+l)
		}
		return out
	}
	require.NoError(t, checkVMBusReport(console(good)))
	for _, bad := range []string{
		strings.Replace(good, `"5.3"`, `"4.1"`, 1),
		strings.Replace(good, `"open": true}]`, `"open": false}]`, 1),
		strings.Replace(good, `"heartbeat": {"state": "ready"}`, `"heartbeat": {"state": "negotiating"}`, 1),
		strings.Replace(good, `, "vmbus": {`, `, "other": {`, 1),
		strings.Replace(good, `"answered": 1`, `"answered": 0`, 1),
	} {
		require.Error(t, checkVMBusReport(console(bad)), bad)
	}

	kernel := strings.Replace(good, `"features": "all",`,
		`"features": "all,kernel-timers", "timers": "kernel", "vps": [{"vp": 0, "synic": true, "sints_raised": 3}],`, 1)
	require.NoError(t, checkKernelTimersReport(console(kernel)))
	require.ErrorContains(t, checkKernelTimersReport(console(good)), "want KVM's")
	require.ErrorContains(t, checkKernelTimersReport(console(strings.Replace(kernel, `"sints_raised": 3`,
		`"sints_raised": 3, "timers": [{"timer": 0, "mode": "direct", "expired": 1, "delivered": 1}]`, 1))), "vmm counted timers")
	require.ErrorContains(t, checkKernelTimersReport(console(strings.Replace(kernel, `"features": "all,kernel-timers",`,
		`"features": "all,kernel-timers", "msrs": {"STIMER0_CONFIG": {"reads": 0, "writes": 2}},`, 1))), "reached vmm 2 times")
	require.Error(t, checkKernelTimersReport(console(strings.Replace(kernel, `"5.3"`, `"4.1"`, 1))), "VMBus checked too")
}

func TestVMBusICScenario(t *testing.T) {
	s, err := vmbusICScenarioSpec()
	require.NoError(t, err)
	require.NoError(t, s.Validate())
	require.True(t, s.TermOnMark)
	require.Equal(t, 0, s.WantExit)
	require.Contains(t, s.Args, "--vmbus")
	require.Contains(t, s.Args, kvpKey+"="+kvpValue)

	good := `{"exit_code": 0, "stop": {"reason": "poweroff"}, "hyperv": {"vmbus": {
	  "bus": {"never_opened": [], "waiting": []},
	  "heartbeat": {"beats": 7}, "shutdown": {"requested": true, "accepted": true},
	  "kvp": {"state": "ready", "pushed": 1, "auto": {"OSName": "Debian GNU/Linux", "OSBuildNumber": "6.1.0-28-amd64",
	    "NetworkAddressIPv4": "10.0.2.15"}}}}}`
	console := func(doc string) []string {
		var out []string
		for _, l := range strings.Split(doc, "\n") {
			out = append(out, scenario.ReportPrefix+l)
		}
		return out
	}
	summary, err := checkVMBusICReport(console(good))
	require.NoError(t, err)
	require.Contains(t, summary, "7 heartbeats")
	for _, bad := range []string{
		strings.Replace(good, `"poweroff"`, `"interrupted"`, 1),
		strings.Replace(good, `"accepted": true`, `"accepted": false`, 1),
		strings.Replace(good, `"beats": 7`, `"beats": 0`, 1),
		strings.Replace(good, `10.0.2.15`, `10.0.2.16`, 1),
		strings.Replace(good, `"Debian GNU/Linux"`, `"Linux"`, 1),
		strings.Replace(good, `"pushed": 1`, `"pushed": 0`, 1),
		strings.Replace(good, `"never_opened": []`, `"never_opened": ["x"]`, 1),
	} {
		_, err := checkVMBusICReport(console(bad))
		require.Error(t, err, bad)
	}
}

func TestVMBusHeartbeatScenario(t *testing.T) {
	s, err := vmbusHeartbeatScenarioSpec()
	require.NoError(t, err)
	require.NoError(t, s.Validate())
	require.Equal(t, vmm.ExitHeartbeat, s.WantExit)
	require.True(t, s.Report)
	require.Contains(t, strings.Join(s.Args, " "), "--vmbus --heartbeat-timeout 3s")
	require.Equal(t, scenario.Pass, s.WantChecks["heartbeat-stop"])

	good := `{"exit_code": 10, "stop": {"reason": "heartbeat-lost", "detail": "no heartbeat for 4s (after 5 beats; channel closed)"},
	  "hyperv": {"vmbus": {"heartbeat": {"state": "closed", "beats": 5}}}}`
	console := func(doc string) []string {
		var out []string
		for _, l := range strings.Split(doc, "\n") {
			out = append(out, scenario.ReportPrefix+l)
		}
		return out
	}
	summary, err := checkHeartbeatReport(console(good))
	require.NoError(t, err)
	require.Contains(t, summary, "heartbeat-lost: no heartbeat for 4s")
	for _, bad := range []string{
		strings.Replace(good, `"exit_code": 10`, `"exit_code": 4`, 1),
		strings.Replace(good, `"heartbeat-lost"`, `"timeout"`, 1),
		strings.Replace(good, `"beats": 5`, `"beats": 0`, 1),
		strings.Replace(good, `"state": "closed"`, `"state": "ready"`, 1),
		strings.Replace(good, `no heartbeat for`, `something`, 1),
	} {
		_, err := checkHeartbeatReport(console(bad))
		require.Error(t, err, bad)
	}
	_, err = checkHeartbeatReport(nil)
	require.Error(t, err)
}
