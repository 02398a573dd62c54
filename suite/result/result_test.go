package result

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/suite"
)

func shardRun(shard string, names ...string) Run {
	r := Run{Version: Version, Suite: "s", File: "s.toml", SuiteCases: 4, Shards: []string{shard},
		StartedUnixNS: 1_000_000_000, WallMS: 500}
	for _, n := range names {
		r.Cases = append(r.Cases, Case{Name: n, Verdict: Pass})
	}
	return r
}

func TestMerge(t *testing.T) {
	a := shardRun("2/2", "d", "b")
	b := shardRun("1/2", "c", "a")
	b.StartedUnixNS += 2e9 // started two seconds later, ran 0.5 s
	b.Cases[0].Verdict = Fail
	m, err := Merge([]Run{a, b})
	require.NoError(t, err)
	require.Equal(t, []string{"1/2", "2/2"}, m.Shards)
	var names []string
	for _, c := range m.Cases {
		names = append(names, c.Name)
	}
	require.Equal(t, []string{"a", "b", "c", "d"}, names)
	require.Equal(t, a.StartedUnixNS, m.StartedUnixNS)
	require.InDelta(t, 2500, m.WallMS, 0.001)
	require.False(t, m.OK())
	require.Equal(t, Counts{Pass: 3, Fail: 1}, m.Counts())

	_, err = Merge([]Run{a})
	require.ErrorIs(t, err, ErrIncomplete)
	_, err = Merge([]Run{a, a})
	require.ErrorIs(t, err, ErrDuplicate)
	other := shardRun("1/2", "x")
	other.Suite = "t"
	_, err = Merge([]Run{a, other})
	require.ErrorIs(t, err, ErrMismatch)
	dupCase := shardRun("1/2", "b", "a")
	_, err = Merge([]Run{a, dupCase})
	require.ErrorIs(t, err, ErrDuplicate)
	_, err = Merge(nil)
	require.ErrorIs(t, err, ErrIncomplete)
}

func TestJSONRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "r.json")
	r := shardRun("1/1", "a")
	code := 0
	ms := 12.5
	r.Cases[0].Exit, r.Cases[0].MatchMS = &code, &ms
	r.Cases[0].Ablation = &suite.Ablation{Base: "all", Off: "vpindex", AlsoOff: []string{"synic"}}
	require.NoError(t, WriteJSON(p, r))
	got, err := ReadJSON(p)
	require.NoError(t, err)
	require.Equal(t, r, got)
	require.NoError(t, os.WriteFile(p, []byte("[]"), 0o644))
	_, err = ReadJSON(p)
	require.ErrorIs(t, err, ErrFormat)
}

func TestCollect(t *testing.T) {
	dir := t.TempDir()
	report := `{"version": 1, "exit_code": 6, "stop": {"reason": "fail-matched", "detail": "FAILED: x"},
		"timing": {"wall_ms": 120, "match_ms": 100, "first_console_byte_ms": 2},
		"hyperv": {"features": "all", "msrs": {"HV_X64_MSR_GUEST_OS_ID": {"reads": 0, "writes": 1}, "HV_X64_MSR_HYPERCALL": {"reads": 1, "writes": 1}},
		           "hypercalls": {"HvFlushVirtualAddressSpace": {"calls": 3, "statuses": {"success": 3}}}, "vps": []}}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, suite.ReportFile), []byte(report), 0o644))
	console := "[    0.1] clocksource: Switched to clocksource hyperv_clocksource_tsc_page\n" +
		`VMM-AGENT: check=hyperv-clock result=pass clocksource=hyperv_clocksource_tsc_page clockevents=["Hyper-V clockevent" "Hyper-V clockevent"] clock_gettime=20.1ns` + "\n" +
		"FAILED: x\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, suite.ConsoleLog), []byte(console), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, VMMLog), []byte("vmm run: something\n"), 0o644))
	six := 6
	c := suite.Case{Name: "g/x", Guest: "g", Exit: 0, Args: []string{"--cpus=1"}}
	r := Collect(c, dir, Outcome{Exit: &six})
	require.Equal(t, Fail, r.Verdict)
	require.Equal(t, "exit 6, expected 0 (fail-matched: FAILED: x)", r.Detail)
	require.Equal(t, "hyperv_clocksource_tsc_page", r.Clocksource)
	require.Equal(t, "Hyper-V clockevent", r.Clockevent)
	require.Equal(t, &HyperVUse{Features: "all", MSRs: []string{"HV_X64_MSR_GUEST_OS_ID", "HV_X64_MSR_HYPERCALL"},
		Hypercalls: []string{"HvFlushVirtualAddressSpace"}}, r.HyperV)
	require.Equal(t, 120.0, r.GuestMS)
	require.Contains(t, r.ConsoleTail, "FAILED: x")
	require.Contains(t, r.ConsoleTail, "vmm run: something")

	c.Exit = 6
	r = Collect(c, dir, Outcome{Exit: &six})
	require.Equal(t, Pass, r.Verdict)
	require.Empty(t, r.ConsoleTail, "only for cases that did not pass")

	one := 1
	require.Equal(t, Error, Collect(suite.Case{}, t.TempDir(), Outcome{Exit: &one}).Verdict)
	require.Equal(t, Error, Collect(suite.Case{}, t.TempDir(), Outcome{}).Verdict)
	require.Equal(t, Interrupted, Collect(suite.Case{}, t.TempDir(), Outcome{Interrupted: true}).Verdict)
}

func TestLastLines(t *testing.T) {
	var s string
	for i := range 100 {
		s += string(rune('a'+i%26)) + "\n"
	}
	got := lastLines(s, 1<<10, 3)
	require.Equal(t, "t\nu\nv", got)
	require.Equal(t, "bc", lastLines("aaaa\nbc", 4, 10), "a cut line is dropped")
}

// TestClocksAgentLines: the agent's lines as a quiet guest prints them (its
// detail quoted, names inside escaped).
func TestClocksAgentLines(t *testing.T) {
	hv := `VMM-AGENT: check=hyperv-clock result=pass detail="clocksource=hyperv_clocksource_tsc_page clockevents=[\"Hyper-V clockevent\" \"Hyper-V clockevent\"] clock_gettime=2976.8ns backwards=0"`
	cs, ce := clocks(hv + "\n")
	require.Equal(t, "hyperv_clocksource_tsc_page", cs)
	require.Equal(t, "Hyper-V clockevent", ce)
	cs, ce = clocks(`VMM-AGENT: check=clocksource result=fail detail="current=kvm-clock available=[kvm-clock] dmesg: tsc: Marking TSC unstable"` + "\n" +
		`VMM-AGENT: check=no-hyperv result=pass detail="no Hyper-V detection, clocksource or clockevent"` + "\n")
	require.Equal(t, "kvm-clock", cs)
	require.Empty(t, ce)
	_, ce = clocks(`detail="clocksource=tsc clockevents=[\"lapic\" \"lapic-deadline\"]"`)
	require.Equal(t, "lapic, lapic-deadline", ce)
}
