package runner

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCaseDir(t *testing.T) {
	require.Equal(t, "/o/agent/cpus=2/hyperv=all,vpindex=off", CaseDir("/o", "agent/cpus=2/hyperv=all,vpindex=off"))
	require.Equal(t, "/o/g/disk=../x.img/___", CaseDir("/o", "g/disk=../x.img/.."), "no component climbs out")
	require.Equal(t, "/o/g/cmdline=console_ttyS0_quiet", CaseDir("/o", "g/cmdline=console ttyS0 quiet"))
}

func TestDefaultJobs(t *testing.T) {
	require.Equal(t, 8, DefaultJobs(8, 0, 1<<30), "memory unknown: one per CPU")
	require.Equal(t, 3, DefaultJobs(8, 3<<30+5, 1<<30), "memory bounds it")
	require.Equal(t, 1, DefaultJobs(8, 1<<20, 1<<30), "at least one")
	require.Equal(t, 1, DefaultJobs(0, 0, 0))
}
