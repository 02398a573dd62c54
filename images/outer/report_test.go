package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestRunEmitsReport(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	r, rec := newTestRunner(t)
	s := scenario.Scenario{Name: "rep", Args: []string{"report"}, Report: true, Stream: true}
	res := r.run(context.Background(), scenario.Run{Scenario: s, Index: 2})
	require.True(t, res.Pass, res.Reason)
	var console []string
	for _, ev := range rec.events(t) {
		if ev.Kind == scenario.KindConsole && ev.Name == "rep" {
			console = append(console, ev.Text)
		}
	}
	type rep struct {
		ExitCode int `json:"exit_code"`
		HyperV   struct {
			VPs []int `json:"vps"`
		} `json:"hyperv"`
	}
	reps, err := scenario.ParseReports[rep](console)
	require.NoError(t, err)
	require.Len(t, reps, 1)
	require.Equal(t, []int{1, 2}, reps[0].HyperV.VPs)
	_, err = os.Stat(filepath.Join(os.Getenv("TMPDIR"), "vmm-report-rep-2.json"))
	require.ErrorIs(t, err, os.ErrNotExist, "the report file is removed once printed")

	// A run that wrote no report prints a log line and no report lines.
	rec.lines = nil
	s = scenario.Scenario{Name: "norep", Args: []string{"exit"}, WantExit: 7, Report: true, Stream: true}
	res = r.run(context.Background(), scenario.Run{Scenario: s, Index: 1})
	require.True(t, res.Pass, res.Reason)
	var logs []string
	for _, ev := range rec.events(t) {
		if ev.Kind == scenario.KindLog {
			logs = append(logs, ev.Text)
		}
	}
	require.Len(t, logs, 1)
	require.Contains(t, logs[0], "no report")
}
