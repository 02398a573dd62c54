package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/kvmtest"
)

func TestIfNestedSkipsWhereKVMIsLocal(t *testing.T) {
	t.Setenv(kvmtest.EnvWhere, string(kvmtest.Local))
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"-if-nested"}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "not needed")
}

func TestUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run([]string{"extra"}, &out, &errOut))
	require.Equal(t, 2, run([]string{"-bogus"}, &out, &errOut))
	t.Setenv(kvmtest.EnvWhere, "cloud")
	require.Equal(t, 2, run([]string{"-if-nested"}, &out, &errOut))
}
