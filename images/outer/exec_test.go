package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestCmdlineParam(t *testing.T) {
	require.Equal(t, "/images", cmdlineParam("console=ttyS0 vmm.images=/images quiet", scenario.ImagesParam))
	require.Equal(t, "/tmp/j/job.json", cmdlineParam("console=ttyS0 quiet vmm.exec=/tmp/j/job.json panic=-1\n", scenario.ExecParam))
	require.Equal(t, "", cmdlineParam("console=ttyS0 vmm.execx=1 quiet", scenario.ExecParam))
}

// execRun runs a job through execJob (no chroot) and returns its result,
// its output and the protocol lines it emitted.
func execRun(t *testing.T, job scenario.Job, beat time.Duration) (scenario.Result, string, []string) {
	t.Helper()
	var mu sync.Mutex
	var lines []string
	r := &runner{beat: beat, emit: func(l string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, l)
	}}
	var out bytes.Buffer
	res := r.execJob(context.Background(), job, &out)
	mu.Lock()
	defer mu.Unlock()
	return res, out.String(), lines
}

func TestExecJobStatusAndOutput(t *testing.T) {
	dir := t.TempDir()
	sh, err := filepath.Abs("/bin/sh")
	require.NoError(t, err)
	job := scenario.Job{Args: []string{sh, "-c", `printf 'out \026PASS\n'; echo "$V $VMM_IN_NESTED_HOST" >&2; pwd; exit 3`},
		Dir: dir, Env: []string{"V=from-env"}}
	res, out, _ := execRun(t, job, 0)
	require.Equal(t, "out \x16PASS\nfrom-env 1\n"+dir+"\n", out, "output byte for byte, stderr too, in the job's directory, told where it runs")
	require.Equal(t, 3, res.Exit)
	require.False(t, res.Pass)
	require.Equal(t, "exit status 3", res.Reason)
	require.Equal(t, scenario.RunnerExec, res.Runner)

	job.Args = []string{sh, "-c", "true"}
	res, _, _ = execRun(t, job, 0)
	require.True(t, res.Pass, res.Reason)
	require.Equal(t, 0, res.Exit)
	// The line the host parses carries the status.
	ev, err := scenario.ParseLine(res.Line())
	require.NoError(t, err)
	require.Equal(t, scenario.KindResult, ev.Kind)
	require.Equal(t, 0, ev.Result.Exit)
}

// TestExecJobHangs: a program that outlives its timeout is killed with its
// whole process group, the reason says so, and heartbeats kept coming.
func TestExecJobHangs(t *testing.T) {
	job := scenario.Job{Args: []string{"/bin/sh", "-c", "echo started; sleep 600 & wait"}, Dir: "/", TimeoutS: 0.5}
	start := time.Now()
	res, out, lines := execRun(t, job, 100*time.Millisecond)
	require.Less(t, time.Since(start), 30*time.Second)
	require.Equal(t, "started\n", out)
	require.False(t, res.Pass)
	require.Contains(t, res.Reason, "killed after the job's timeout")
	require.Equal(t, scenario.ExitNone, res.Exit)
	var beats int
	for _, l := range lines {
		if ev, err := scenario.ParseLine(l); err == nil && ev.Kind == scenario.KindHeartbeat {
			beats++
			require.Equal(t, execScenario, ev.Name)
		}
	}
	require.Positive(t, beats)
}

// TestExecJobUnreachable: a working directory or program the machine cannot
// reach gives a reason naming it, not a hang.
func TestExecJobUnreachable(t *testing.T) {
	res, _, _ := execRun(t, scenario.Job{Args: []string{"/bin/true"}, Dir: "/nonexistent/pkg"}, 0)
	require.False(t, res.Pass)
	require.Contains(t, res.Reason, "/nonexistent/pkg")
	res, _, _ = execRun(t, scenario.Job{Args: []string{"/nonexistent/x.test"}, Dir: "/"}, 0)
	require.False(t, res.Pass)
	require.True(t, strings.Contains(res.Reason, "/nonexistent/x.test"), res.Reason)
}
