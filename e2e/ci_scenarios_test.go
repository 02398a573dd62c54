package e2e

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCIScenarios(t *testing.T) {
	list, err := Scenarios()
	require.NoError(t, err)
	want := map[string]struct {
		exit int
		flag string
	}{"expect-summary": {0, "--expect"}, "fail-panic": {6, "--fail"}}
	for _, s := range list {
		w, ok := want[s.Name]
		if !ok {
			continue
		}
		delete(want, s.Name)
		require.Equal(t, w.exit, s.WantExit, s.Name)
		i := slices.Index(s.Args, w.flag)
		require.Positive(t, i, s.Name)
		require.Less(t, i+1, len(s.Args), s.Name)
		require.Contains(t, s.Args, "--timeout", s.Name)
	}
	require.Empty(t, want, "scenarios missing from Scenarios()")
}
