package main

import (
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/vmm"
)

func TestVirtioFlags(t *testing.T) {
	for _, tc := range []struct {
		args          []string
		console, dest string
		rng, virtio   bool
	}{
		{nil, "stdio", "stdio", false, false},
		{[]string{"--rng"}, "file:/x", "file:/x", true, false},
		{nil, "virtio", "stdio", false, true},
		{[]string{"--rng=true"}, "virtio:file:/tmp/c", "file:/tmp/c", true, true},
		{nil, "virtio:none", "none", false, true},
		{[]string{"--balloon"}, "stdio", "stdio", false, false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		v := registerVirtioFlags(fs)
		require.NoError(t, fs.Parse(tc.args))
		var cfg vmm.Config
		assert.Equal(t, tc.dest, v.apply(&cfg, tc.console), "%v %s", tc.args, tc.console)
		assert.Equal(t, tc.rng, cfg.RNG)
		assert.Equal(t, tc.virtio, cfg.VirtioConsole)
		assert.Equal(t, len(tc.args) > 0 && tc.args[0] == "--balloon", cfg.Balloon)
	}
}
