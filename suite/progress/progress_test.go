package progress

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/suite"
	"github.com/vmmdev/vmm/suite/result"
)

func TestPlain(t *testing.T) {
	var buf bytes.Buffer
	p := NewPlain(&buf, 2)
	p.Started(suite.Case{Name: "a"})
	p.Finished(result.Case{Name: "a", Verdict: result.Pass, WallMS: 1234})
	p.Finished(result.Case{Name: "b", Verdict: result.Fail, WallMS: 50, Detail: "exit 4, expected 0 (timeout)"})
	p.Close()
	require.Equal(t, "PASS  [1/2] a (1.2s)\nFAIL  [2/2] b (0.1s): exit 4, expected 0 (timeout)\n", buf.String())
}

func TestLive(t *testing.T) {
	var buf bytes.Buffer
	l := NewLive(&buf, 3)
	l.Started(suite.Case{Name: "a"})
	l.Started(suite.Case{Name: "b"})
	l.Finished(result.Case{Name: "a", Verdict: result.Pass})
	l.Finished(result.Case{Name: "b", Verdict: result.Error, Detail: "vmm run failed"})
	l.Finished(result.Case{Name: "c", Verdict: result.Skipped})
	l.Close()
	out := buf.String()
	require.Contains(t, out, "ERROR [2/3] b (0.0s): vmm run failed\n", "a case that did not pass gets its line")
	require.NotContains(t, out, "] a (", "passing cases only move the bar")
	require.True(t, strings.Contains(out, "running 0, passed 1, failed 1"), out)
	require.Contains(t, out, "3/3")
}
