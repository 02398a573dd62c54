package scenario

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseValidList(t *testing.T) {
	data := []byte(`[
	 {"name": "boot-1cpu", "args": ["run", "--kernel", "/guest/vmlinuz"], "want_exit": 0,
	  "want_checks": {"boot": "pass"}, "timeout": "90s"},
	 {"name": "ref", "runner": "qemu", "args": ["-M", "microvm"], "want_exit": 3, "repeat": 2, "bench": true}
	]`)
	list, err := Parse(data)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, RunnerVMM, list[0].RunnerName())
	require.Equal(t, RunnerQEMU, list[1].RunnerName())
	d, err := list[0].Deadline()
	require.NoError(t, err)
	require.Equal(t, 90*time.Second, d)
	d, err = list[1].Deadline()
	require.NoError(t, err)
	require.Equal(t, DefaultTimeout, d)
	require.Equal(t, 1, list[0].Runs())
	require.Equal(t, 2, list[1].Runs())
}

func TestParseRejects(t *testing.T) {
	for name, data := range map[string]string{
		"not json":       `{`,
		"bad name":       `[{"name": "a b", "args": ["x"]}]`,
		"empty name":     `[{"name": "", "args": ["x"]}]`,
		"no args":        `[{"name": "a"}]`,
		"unknown runner": `[{"name": "a", "runner": "bochs", "args": ["x"]}]`,
		"bad timeout":    `[{"name": "a", "args": ["x"], "timeout": "soon"}]`,
		"zero timeout":   `[{"name": "a", "args": ["x"], "timeout": "0s"}]`,
		"bad want":       `[{"name": "a", "args": ["x"], "want_checks": {"boot": "ok"}}]`,
		"neg repeat":     `[{"name": "a", "args": ["x"], "repeat": -1}]`,
		"long mark":      `[{"name": "a", "args": ["x"], "mark": "` + strings.Repeat("m", maxMarkBytes+1) + `"}]`,
		"duplicate":      `[{"name": "a", "args": ["x"]}, {"name": "a", "args": ["y"]}]`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(data))
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	in := []Scenario{{Name: "a", Args: []string{"run"}, WantExit: 5, WantChecks: map[string]string{"cpus": Fail}, Stream: true, Mark: "GRUB menu"}}
	data, err := Encode(in)
	require.NoError(t, err)
	out, err := Parse(data)
	require.NoError(t, err)
	require.Equal(t, in, out)

	_, err = Encode([]Scenario{{Name: "bad name"}})
	require.ErrorIs(t, err, ErrInvalid)
}

func TestScheduleInterleavesBench(t *testing.T) {
	list := []Scenario{
		{Name: "vmm-bench", Bench: true, Repeat: 3},
		{Name: "boot", Repeat: 2},
		{Name: "qemu-bench", Bench: true, Repeat: 2},
		{Name: "panic"},
	}
	var got []string
	for _, r := range Schedule(list) {
		got = append(got, fmt.Sprintf("%s#%d", r.Scenario.Name, r.Index))
	}
	require.Equal(t, []string{
		"boot#1", "boot#2", "panic#1",
		"vmm-bench#1", "qemu-bench#1", "vmm-bench#2", "qemu-bench#2", "vmm-bench#3",
	}, got)
}

func TestBatchesRunParallelScenariosTogether(t *testing.T) {
	list := []Scenario{
		{Name: "boot", Repeat: 2},
		{Name: "density", Repeat: 3, Parallel: true},
		{Name: "after", Parallel: true},
		{Name: "bench", Bench: true, Repeat: 2},
	}
	var got [][]string
	for _, b := range Batches(Schedule(list)) {
		var names []string
		for _, r := range b {
			names = append(names, fmt.Sprintf("%s#%d", r.Scenario.Name, r.Index))
		}
		got = append(got, names)
	}
	require.Equal(t, [][]string{{"boot#1"}, {"boot#2"}, {"density#1", "density#2", "density#3"}, {"after#1"},
		{"bench#1"}, {"bench#2"}}, got)

	ok := Scenario{Name: "p", Args: []string{"run"}, Repeat: 2, Parallel: true}
	require.NoError(t, ok.Validate())
	for _, bad := range []func(*Scenario){
		func(s *Scenario) { s.Bench = true },
		func(s *Scenario) { s.Tap = &Tap{Name: "tap0"} },
		func(s *Scenario) { s.Disks = []Disk{{Path: "/tmp/d.img"}} },
	} {
		s := ok
		bad(&s)
		require.ErrorIs(t, s.Validate(), ErrInvalid)
	}
}

func TestReports(t *testing.T) {
	ok := Scenario{Name: "r", Args: []string{"run"}, Report: true, Stream: true}
	require.NoError(t, ok.Validate())
	noStream := ok
	noStream.Stream = false
	require.ErrorIs(t, noStream.Validate(), ErrInvalid)
	qemu := ok
	qemu.Runner = RunnerQEMU
	require.ErrorIs(t, qemu.Validate(), ErrInvalid)

	type rep struct {
		Exit int `json:"exit_code"`
	}
	console := []string{"VMM-AGENT: start", ReportPrefix + "{", ReportPrefix + `"exit_code": 3`, ReportPrefix + "}",
		"noise", ReportPrefix + `{"exit_code": 0}`}
	reps, err := ParseReports[rep](console)
	require.NoError(t, err)
	require.Equal(t, []rep{{3}, {0}}, reps)
	_, err = ParseReports[rep]([]string{ReportPrefix + "{"})
	require.ErrorContains(t, err, "decoding report 1")
	reps, err = ParseReports[rep](nil)
	require.NoError(t, err)
	require.Empty(t, reps)
}

func TestConcurrentGroups(t *testing.T) {
	a := Scenario{Name: "a", Args: []string{"run"}, Concurrent: "g", Files: map[string]string{"/tmp/a/user-data": "x"}}
	b := Scenario{Name: "b", Args: []string{"run"}, Concurrent: "g", Files: map[string]string{"/tmp/b/user-data": "y"}}
	list := []Scenario{{Name: "first", Args: []string{"run"}}, a, {Name: "mid", Args: []string{"run"}, Repeat: 2}, b,
		{Name: "bench", Args: []string{"run"}, Bench: true}}
	data, err := json.Marshal(list)
	require.NoError(t, err)
	back, err := Parse(data)
	require.NoError(t, err)
	var got [][]string
	for _, batch := range Batches(Schedule(back)) {
		var names []string
		for _, r := range batch {
			names = append(names, fmt.Sprintf("%s#%d", r.Scenario.Name, r.Index))
		}
		got = append(got, names)
	}
	require.Equal(t, [][]string{{"first#1"}, {"a#1", "b#1"}, {"mid#1"}, {"mid#2"}, {"bench#1"}}, got)

	bad := map[string][]Scenario{
		"alone":      {a},
		"same file":  {a, {Name: "b", Args: []string{"run"}, Concurrent: "g", Files: map[string]string{"/tmp/a/user-data": "y"}}},
		"nested dir": {a, {Name: "b", Args: []string{"run"}, Concurrent: "g", Disks: []Disk{{Path: "/tmp/a", Size: 512}}}},
		"repeat":     {a, {Name: "b", Args: []string{"run"}, Concurrent: "g", Repeat: 2}},
		"bench":      {a, {Name: "b", Args: []string{"run"}, Concurrent: "g", Bench: true}},
		"tap":        {a, {Name: "b", Args: []string{"run"}, Concurrent: "g", Tap: &Tap{Name: "t0", Addr: "10.0.2.1/24", Port: 1}}},
		"bad name":   {{Name: "a", Args: []string{"run"}, Concurrent: "g g"}, {Name: "b", Args: []string{"run"}, Concurrent: "g g"}},
	}
	for why, l := range bad {
		data, err := json.Marshal(l)
		require.NoError(t, err)
		_, err = Parse(data)
		require.ErrorIs(t, err, ErrInvalid, why)
	}
}
