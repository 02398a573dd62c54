package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/vmm"
)

// TestExitCodeTables: the usage text, the README and docs/design.md list
// every exit code of vmm run and no other, so the code stays their one
// source.
func TestExitCodeTables(t *testing.T) {
	want := map[string]bool{"2k+1": true}
	for _, c := range vmm.ExitCodes() {
		want[strconv.Itoa(c)] = true
	}
	row := regexp.MustCompile(`(?m)^\| (\d+|2k\+1) \|`)
	for _, doc := range []string{"../../README.md", "../../docs/design.md"} {
		data, err := os.ReadFile(doc)
		require.NoError(t, err)
		text := string(data)
		i := strings.Index(text, "| code | meaning |")
		require.GreaterOrEqual(t, i, 0, "%s has no exit-code table", doc)
		end := strings.Index(text[i:], "\n\n")
		require.Greater(t, end, 0)
		got := map[string]bool{}
		for _, m := range row.FindAllStringSubmatch(text[i:i+end], -1) {
			got[m[1]] = true
		}
		require.Equal(t, want, got, "%s's exit-code table", doc)
	}
	i := strings.Index(usage, "exit codes of vmm run:")
	require.GreaterOrEqual(t, i, 0)
	got := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?:^|\s{2,}|\n)(\d+|2k\+1) `).FindAllStringSubmatch(usage[i:], -1) {
		got[m[1]] = true
	}
	require.Equal(t, want, got, "the usage text's exit codes")
}
