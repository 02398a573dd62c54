package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHyperVFlagErrors(t *testing.T) {
	dir := t.TempDir()
	kernel := kernelFile(t, []byte{0xf4})
	noKVM := "--kvm-device=" + filepath.Join(dir, "no-such-kvm")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--hyperv", "bogus"}, 2, `unknown switch "bogus"`},
		{[]string{"--hyperv", "stimer"}, 2, "stimer needs synic"},
		{[]string{"--hyperv", "spinlocks=5"}, 2, "below the minimum"},
		{[]string{"--hyperv-trace", filepath.Join(dir, "t")}, 2, "--hyperv-trace needs --hyperv"},
		{[]string{"--vmbus"}, 2, "--vmbus needs --hyperv with synic"},
		{[]string{"--vmbus", "--hyperv", "vpindex,time"}, 2, "--vmbus needs --hyperv with synic"},
		{[]string{"--hyperv", "all", "--hyperv-trace", filepath.Join(dir, "no", "such", "dir")}, 1, "--hyperv-trace"},
		{[]string{"--kvp", "novalue"}, 2, `"novalue" is not KEY=VALUE`},
		{[]string{"--kvp", "=v"}, 2, "empty key"},
		{[]string{"--kvp", "k=" + strings.Repeat("v", 2048)}, 2, "value of 2048 bytes"},
		{[]string{"--kvp", "k=v"}, 1, "--kvp needs --vmbus"},
		{[]string{"--heartbeat-timeout", "10s"}, 1, "--heartbeat-timeout needs --vmbus"},
		{[]string{"--hyperv", "all", "--vmbus", "--heartbeat-timeout", "2s"}, 1, "less than 3s"},
		{[]string{"--shutdown-timeout", "-1s"}, 1, "--shutdown-timeout: negative"},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"run", noKVM, "--kernel", kernel}, c.args...)
		code := run(args, nil, &stdout, &stderr)
		require.Equal(t, c.code, code, "%v: %s", c.args, stderr.String())
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		require.Len(t, lines, 1, "%v", c.args)
		require.Contains(t, lines[0], c.want)
	}
}

// TestKVMHyperVCrashReport: a guest that reports a crash through the Hyper-V
// crash MSRs ends vmm with exit 3, P0-P4 in the stop detail and the report's
// Hyper-V summary, and every access in the trace.
func TestKVMHyperVCrashReport(t *testing.T) {
	code := newAsm().
		emit(0xb9).emit(le32(0x40000100)...). // mov ecx, CRASH_P0
		emit(0xb8).emit(le32(0xab)...).       // mov eax, 0xab
		emit(0x31, 0xd2).                     // xor edx, edx
		emit(0x0f, 0x30).                     // wrmsr
		emit(0xb9).emit(le32(0x40000105)...). // mov ecx, CRASH_CTL
		emit(0x31, 0xc0).                     // xor eax, eax
		emit(0xba).emit(le32(0x80000000)...). // mov edx, 1<<31 (CRASH_NOTIFY)
		emit(0x0f, 0x30).                     // wrmsr
		debugExit(0x7f).bytes()
	trace := filepath.Join(t.TempDir(), "trace.jsonl")
	r := runVMM(t, code, "--timeout", "20s", "--hyperv", "crash", "--hyperv-trace", trace)
	require.Equal(t, 3, r.code, r.stderr)
	require.Equal(t, "panic", r.report.Stop.Reason)
	require.Equal(t, "hyperv", r.report.Stop.Source)
	require.Contains(t, r.report.Stop.Detail, "P0=0xab P1=0x0")
	hv, err := json.Marshal(r.report.HyperV)
	require.NoError(t, err)
	var sum struct {
		Crash []string `json:"crash"`
		MSRs  map[string]struct {
			Writes int `json:"writes"`
		} `json:"msrs"`
	}
	require.NoError(t, json.Unmarshal(hv, &sum), string(hv))
	require.Equal(t, []string{"0xab", "0x0", "0x0", "0x0", "0x0"}, sum.Crash)
	require.Equal(t, 1, sum.MSRs["CRASH_CTL"].Writes)
	data, err := os.ReadFile(trace)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	require.Len(t, lines, 2, string(data))
	require.Contains(t, lines[0], `"name":"CRASH_P0"`)
	require.Contains(t, lines[1], `"name":"CRASH_CTL","value":"0x8000000000000000"`)
}
