package scenario

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResultLineRoundTrip(t *testing.T) {
	for _, r := range []Result{
		{Name: "boot-1cpu", Run: 1, Runner: RunnerVMM, Pass: true, Exit: 0, WantExit: 0, FirstLineS: 12.5, MarkS: 3.25, TotalS: 14.25},
		{Name: "hang", Run: 3, Runner: RunnerQEMU, Exit: ExitNone, WantExit: 4, FirstLineS: NoFirstLine, MarkS: NoFirstLine, TotalS: 40,
			Reason: "exit -1, want 4; check \"boot\" = fail reason=x \n second line"},
	} {
		line := r.Line()
		require.NotContains(t, line, "\n")
		ev, err := ParseLine(line)
		require.NoError(t, err, line)
		require.Equal(t, KindResult, ev.Kind)
		require.Equal(t, r, ev.Result)
	}
}

func TestParseLineKinds(t *testing.T) {
	ev, err := ParseLine("[    3.100000] random: crng init done\r\n")
	require.NoError(t, err)
	require.Equal(t, KindNone, ev.Kind)

	ev, err = ParseLine(KVMReadyLine() + "\r")
	require.NoError(t, err)
	require.Equal(t, KindKVMReady, ev.Kind)

	ev, err = ParseLine(KVMFailedLine(`finit_module kvm-amd.ko: "no such device"`))
	require.NoError(t, err)
	require.Equal(t, Event{Kind: KindKVMFailed, Reason: `finit_module kvm-amd.ko: "no such device"`}, ev)

	ev, err = ParseLine(ErrorLine("reading /scenarios.json: ENOENT"))
	require.NoError(t, err)
	require.Equal(t, Event{Kind: KindError, Reason: "reading /scenarios.json: ENOENT"}, ev)

	ev, err = ParseLine(DoneLine(4, 1))
	require.NoError(t, err)
	require.Equal(t, Event{Kind: KindDone, Pass: 4, Fail: 1}, ev)

	// A marker after kernel noise on the same console line still counts.
	ev, err = ParseLine("[  1.0] kvm: something" + LogLine("panic", "[  0.500] Kernel panic - E2E: x"))
	require.NoError(t, err)
	require.Equal(t, Event{Kind: KindLog, Name: "panic", Text: "[  0.500] Kernel panic - E2E: x"}, ev)

	ev, err = ParseLine(HeartbeatLine("boot-1cpu", 30.4, 12, `[  3.0] "x" y`))
	require.NoError(t, err)
	require.Equal(t, Event{Kind: KindHeartbeat, Name: "boot-1cpu", ElapsedS: 30, Lines: 12, Text: `[  3.0] "x" y`}, ev)

	ev, err = ParseLine(ConsoleLine("demo", "VMM-AGENT: start"))
	require.NoError(t, err)
	require.Equal(t, Event{Kind: KindConsole, Name: "demo", Text: "VMM-AGENT: start"}, ev)
}

func TestParseLineMalformed(t *testing.T) {
	for _, line := range []string{
		"E2E: ",
		"E2E: kvm failed reason=unquoted",
		"E2E: done pass=x fail=0",
		"E2E: done pass=1",
		"E2E: scenario=a result=pass exit=0",
		"E2E: scenario=a result=maybe exit=0 want_exit=0 first_line_s=1 mark_s=-1 total_s=1 run=1 runner=vmm reason=\"\"",
		"E2E: scenario=a result=pass exit=0 want_exit=0 first_line_s=one mark_s=-1 total_s=1 run=1 runner=vmm reason=\"\"",
		"E2E: scenario=a b result=pass exit=0 want_exit=0 first_line_s=1 mark_s=-1 total_s=1 run=1 runner=vmm reason=\"\"",
		"E2E: heartbeat scenario=a elapsed_s=1 lines=x last=\"\"",
		"E2E: heartbeat scenario=a elapsed_s=1 lines=1",
		"E2E-LOG no-colon",
		"E2E-CON bad name: x",
	} {
		_, err := ParseLine(line)
		require.ErrorIs(t, err, ErrMalformed, line)
	}
}

func TestAgentLines(t *testing.T) {
	require.True(t, IsAgentStart("VMM-AGENT: start\r\n"))
	require.True(t, IsAgentStart("[  2.1] x VMM-AGENT: start"))
	require.False(t, IsAgentStart("VMM-AGENT: started"))

	c, ok := ParseAgentCheck(`VMM-AGENT: check=clocksource result=pass detail="tsc"` + "\r")
	require.True(t, ok)
	require.Equal(t, AgentCheck{Name: "clocksource", Result: Pass}, c)

	c, ok = ParseAgentCheck("VMM-AGENT: check=cpus result=fail\r")
	require.True(t, ok)
	require.Equal(t, AgentCheck{Name: "cpus", Result: Fail}, c)

	for _, line := range []string{
		"VMM-AGENT: summary pass=1 fail=0",
		"VMM-AGENT: check=boot result=passed detail=\"\"",
		"VMM-AGENT: check=a b result=pass",
		"VMM-AGENT: check=",
	} {
		_, ok := ParseAgentCheck(line)
		require.False(t, ok, line)
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add(Result{Name: "a", Run: 1, Runner: "vmm", Pass: true, Reason: "x"}.Line())
	f.Add(KVMFailedLine("why"))
	f.Add(DoneLine(1, 2))
	f.Add(HeartbeatLine("a", 1, 2, "x"))
	f.Add(LogLine("a", "b"))
	f.Add("E2E: scenario=")
	f.Fuzz(func(t *testing.T, line string) {
		ev, err := ParseLine(line)
		if err != nil || ev.Kind != KindResult {
			return
		}
		// Whatever parses as a result must survive a round trip.
		again, err := ParseLine(ev.Result.Line())
		if err != nil {
			t.Fatalf("re-parsing %q: %v", ev.Result.Line(), err)
		}
		if again.Result.Name != ev.Result.Name || again.Result.Reason != ev.Result.Reason || again.Result.Exit != ev.Result.Exit {
			t.Fatalf("round trip changed %+v to %+v", ev.Result, again.Result)
		}
	})
}

func FuzzParseAgentCheck(f *testing.F) {
	f.Add(`VMM-AGENT: check=boot result=pass detail="6.1.0"`)
	f.Add("VMM-AGENT: check=x result=")
	f.Fuzz(func(t *testing.T, line string) {
		c, ok := ParseAgentCheck(line)
		if ok && c.Result != Pass && c.Result != Fail {
			t.Fatalf("accepted result %q", c.Result)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`[{"name": "a", "args": ["run"], "timeout": "1s", "want_checks": {"boot": "pass"}}]`))
	f.Add([]byte(`[{"name": "a", "args": [], "repeat": 9}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := Parse(data)
		if err != nil {
			return
		}
		for _, s := range list {
			if _, err := s.Deadline(); err != nil {
				t.Fatalf("validated scenario has bad deadline: %v", err)
			}
		}
		_ = Schedule(list)
	})
}
