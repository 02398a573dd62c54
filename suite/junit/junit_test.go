package junit

import (
	"bytes"
	"encoding/xml"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/suite/result"
)

func TestWriteReadBack(t *testing.T) {
	three, six := 3, 6
	r := result.Run{Version: result.Version, Suite: "agent", File: "agent.toml", Shards: []string{"1/2", "2/2"},
		SuiteCases: 4, WallMS: 12345, StartedUnixNS: 1_700_000_000_000_000_000, Cases: []result.Case{
			{Name: "g/cpus=1", Guest: "g", Verdict: result.Pass, WallMS: 1500, Exit: &three, ExpectedExit: 3, Dir: "/out/g/cpus=1"},
			{Name: "g/cpus=2", Guest: "g", Verdict: result.Fail, WallMS: 250, Exit: &six, Detail: "exit 6, expected 0 (fail-matched: oops)",
				ConsoleTail: "line 1\nKernel <oops> & \x01 \"bad\"\n"},
			{Name: "h", Guest: "h", Verdict: result.Error, Detail: "vmm run failed (exit 1), expected exit 0", ConsoleTail: "vmm run: no /dev/kvm"},
			{Name: "i", Guest: "i", Verdict: result.Skipped, Detail: "vmm test was interrupted before it started"},
		}}
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, r))
	require.Contains(t, buf.String(), xml.Header)

	var doc TestSuites
	require.NoError(t, xml.Unmarshal(buf.Bytes(), &doc))
	require.Equal(t, 4, doc.Tests)
	require.Equal(t, 1, doc.Failures)
	require.Equal(t, 1, doc.Errors)
	require.Equal(t, 1, doc.Skipped)
	require.Equal(t, "12.345", doc.Time)
	require.Len(t, doc.Suites, 1)
	s := doc.Suites[0]
	require.Equal(t, "agent", s.Name)
	require.Equal(t, "2023-11-14T22:13:20", s.Timestamp)
	require.Contains(t, s.Properties, Property{"shards", "1/2,2/2"})
	require.Len(t, s.Cases, 4)

	pass := s.Cases[0]
	require.Equal(t, "g/cpus=1", pass.Name)
	require.Equal(t, "agent.g", pass.Classname)
	require.Equal(t, "1.500", pass.Time)
	require.Nil(t, pass.Failure)
	require.Nil(t, pass.Error)
	require.Contains(t, pass.SystemOut, "/out/g/cpus=1")

	fail := s.Cases[1]
	require.NotNil(t, fail.Failure)
	require.Equal(t, "exit 6, expected 0 (fail-matched: oops)", fail.Failure.Message)
	// The console's tail survives XML, with the one character XML cannot
	// carry replaced.
	require.Equal(t, "line 1\nKernel <oops> & \uFFFD \"bad\"\n", fail.Failure.Text)

	require.NotNil(t, s.Cases[2].Error)
	require.Equal(t, "vmm run: no /dev/kvm", s.Cases[2].Error.Text)
	require.NotNil(t, s.Cases[3].Skipped)
}
