package main

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

func TestScenarioFromFlags(t *testing.T) {
	o, err := parseFlags([]string{"-cpus", "2", "-action", "panic", "-timeout", "30s", "--", "--report", "/tmp/r.json"}, io.Discard)
	require.NoError(t, err)
	s, err := o.scenario()
	require.NoError(t, err)
	require.Equal(t, demo, s.Name)
	require.True(t, s.Stream)
	require.Equal(t, "1m30s", s.Timeout)
	joined := strings.Join(s.Args, " ")
	require.True(t, strings.HasPrefix(joined, "run --kernel /guest/vmlinuz"), joined)
	require.Contains(t, joined, "vmm.action=panic")
	require.Contains(t, joined, "--cpus 2")
	require.True(t, strings.HasSuffix(joined, "--timeout 30s --report /tmp/r.json"), joined)

	o, err = parseFlags([]string{"-runner", "qemu", "-timeout", "30s"}, io.Discard)
	require.NoError(t, err)
	s, err = o.scenario()
	require.NoError(t, err)
	require.Equal(t, scenario.RunnerQEMU, s.RunnerName())
	require.Equal(t, "30s", s.Timeout)

	_, err = parseFlags([]string{"-runner", "qemu", "--", "--report", "x"}, io.Discard)
	require.Error(t, err)
	_, err = parseFlags([]string{"-timeout", "0s"}, io.Discard)
	require.Error(t, err)
	o, err = parseFlags([]string{"-runner", "bochs"}, io.Discard)
	require.NoError(t, err)
	_, err = o.scenario()
	require.ErrorIs(t, err, scenario.ErrInvalid)
}

func TestExitCode(t *testing.T) {
	out := testhost.NewOutcome()
	require.Equal(t, 1, exitCode(out, errors.New("boom"), io.Discard))
	out.Add(scenario.Result{Name: demo, Run: 1, Runner: "vmm", Exit: 3, WantExit: 0, Reason: "exit 3, want 0"}.Line())
	require.Equal(t, 3, exitCode(out, nil, io.Discard))
	killed := testhost.NewOutcome()
	killed.Add(scenario.Result{Name: demo, Run: 1, Runner: "vmm", Exit: scenario.ExitNone, Reason: "killed"}.Line())
	var msg strings.Builder
	require.Equal(t, 1, exitCode(killed, nil, &msg))
	require.Contains(t, msg.String(), "killed")
}
