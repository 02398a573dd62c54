package vmm

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConsoleWatch(t *testing.T) {
	var out bytes.Buffer
	w := newConsoleWatch(&out)
	var got []string
	w.On("Kernel panic - not syncing", func(l string) { got = append(got, l) })

	input := "boot\r\n[    1.0] Kernel pan"
	_, err := w.Write([]byte(input))
	require.NoError(t, err)
	require.Empty(t, got, "no match before the line completes")
	_, err = w.Write([]byte("ic - not syncing: VFS\r\nmore\n"))
	require.NoError(t, err)
	require.Equal(t, []string{"[    1.0] Kernel panic - not syncing: VFS"}, got)
	require.Equal(t, input+"ic - not syncing: VFS\r\nmore\n", out.String(), "output passes through unchanged")

	// A line longer than the bound is truncated for matching, not buffered without limit.
	_, err = w.Write([]byte(strings.Repeat("x", 3*maxWatchedLine)))
	require.NoError(t, err)
	require.LessOrEqual(t, len(w.line), maxWatchedLine)
}
