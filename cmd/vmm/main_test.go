package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/internal/testimage"
)

// TestBadInput: every bad flag or file gives exit 1 (2 for flag syntax) and
// exactly one line on stderr naming the problem, before any VM exists (the
// KVM device is a path that does not exist, so reaching KVM would say so).
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o644))
		return p
	}
	good := write("bzImage", testimage.BzImage64([]byte{0xf4}))
	text := write("notes.txt", []byte("this is not a kernel\n"))
	truncated := write("truncated", testimage.BzImage64([]byte{0xf4})[:700])
	bigInitrd := write("initrd", make([]byte, 8<<20))
	noKVM := "--kvm-device=" + filepath.Join(dir, "no-such-kvm")
	config := func(name, text string) string { return write(name, []byte(text)) }
	bigConfig := write("big.json", []byte(`{"cmdline": "`+strings.Repeat("a", 2<<20)+`"}`))
	log := filepath.Join(dir, "console.log")

	cases := []struct {
		name string
		args []string
		code int
		want string // substring of the one stderr line
	}{
		{"no command", nil, 2, "usage"},
		{"unknown command", []string{"start"}, 2, "unknown command"},
		{"unknown flag", []string{"run", "--bogus"}, 2, "bogus"},
		{"cpus not a number", []string{"run", "--cpus", "two"}, 2, "cpus"},
		{"timeout not a duration", []string{"run", "--timeout", "soon"}, 2, "timeout"},
		{"memory not a size", []string{"run", "--kernel", good, "--memory", "lots"}, 2, "--memory"},
		{"memory overflow", []string{"run", "--kernel", good, "--memory", "99999999999T"}, 2, "--memory"},
		{"stray argument", []string{"run", "--kernel", good, "extra"}, 2, "extra"},
		{"bad log level", []string{"run", "--log-level", "loud"}, 2, "--log-level"},
		{"no kernel", []string{"run"}, 1, "--kernel"},
		{"missing kernel", []string{"run", noKVM, "--kernel", filepath.Join(dir, "nope")}, 1, "no such file"},
		{"kernel is a directory", []string{"run", noKVM, "--kernel", dir}, 1, "not a regular file"},
		{"not a kernel", []string{"run", noKVM, "--kernel", text}, 1, "--kernel"},
		{"truncated bzImage", []string{"run", noKVM, "--kernel", truncated}, 1, "--kernel"},
		{"missing initrd", []string{"run", noKVM, "--kernel", good, "--initrd", filepath.Join(dir, "nope")}, 1, "--initrd"},
		{"initrd does not fit", []string{"run", noKVM, "--kernel", good, "--initrd", bigInitrd, "--memory", "4M"}, 1, "initrd"},
		{"memory zero", []string{"run", noKVM, "--kernel", good, "--memory", "0"}, 1, "--memory"},
		{"memory unaligned", []string{"run", noKVM, "--kernel", good, "--memory", "1000001K"}, 1, "--memory"},
		{"memory beyond host", []string{"run", noKVM, "--kernel", good, "--memory", "900G"}, 1, "--memory"},
		{"zero cpus", []string{"run", noKVM, "--kernel", good, "--cpus", "0"}, 1, "--cpus"},
		{"too many cpus", []string{"run", noKVM, "--kernel", good, "--cpus", "100000"}, 1, "--cpus"},
		{"firmware and kernel", []string{"run", noKVM, "--firmware", text, "--kernel", good}, 1, "mutually exclusive"},
		{"firmware not 64 KiB blocks", []string{"run", noKVM, "--firmware", text}, 1, "64 KiB"},
		{"console log over the firmware", []string{"run", noKVM, "--firmware", text, "--console-log", text}, 2, "same file"},
		{"cmdline too long", []string{"run", noKVM, "--kernel", good, "--cmdline", strings.Repeat("a", 4096)}, 1, "command line"},
		{"negative timeout", []string{"run", noKVM, "--kernel", good, "--timeout", "-1s"}, 1, "--timeout"},
		{"bad console", []string{"run", noKVM, "--kernel", good, "--console", "tty"}, 1, "--console"},
		{"console file in missing dir", []string{"run", noKVM, "--kernel", good, "--console", "file:" + filepath.Join(dir, "x", "y")}, 1, "--console"},
		{"no /dev/kvm", []string{"run", noKVM, "--kernel", good}, 1, "no-such-kvm: missing"},
		{"probe bad flag", []string{"probe", "--yaml"}, 2, "yaml"},
		// The CI flags (issue 6).
		{"expect bad regexp", []string{"run", noKVM, "--kernel", good, "--expect", "(unclosed"}, 2, "--expect"},
		{"fail bad regexp", []string{"run", noKVM, "--kernel", good, "--fail", "x{2,1}"}, 2, "--fail"},
		{"expect equals fail", []string{"run", noKVM, "--kernel", good, "--expect", "x", "--fail", "x"}, 2, "--expect and --fail"},
		{"seccomp not a bool", []string{"run", "--seccomp=maybe"}, 2, "seccomp"},
		{"console-log is a directory", []string{"run", noKVM, "--kernel", good, "--console-log", dir}, 1, "--console-log"},
		{"console-log in missing dir", []string{"run", noKVM, "--kernel", good, "--console-log", filepath.Join(dir, "x", "y")}, 1, "--console-log"},
		{"report is a directory", []string{"run", noKVM, "--kernel", good, "--report", dir}, 1, "--report"},
		{"report in missing dir", []string{"run", noKVM, "--kernel", good, "--report", filepath.Join(dir, "x", "r.json")}, 1, "--report"},
		{"report is the console log", []string{"run", noKVM, "--kernel", good, "--console-log", log, "--report", log}, 2, "--report"},
		{"console log is the kernel", []string{"run", noKVM, "--kernel", good, "--console-log", good}, 2, "same file"},
		{"console file is the report", []string{"run", noKVM, "--kernel", good, "--console", "file:" + log, "--report", log}, 2, "same file"},
		{"config missing", []string{"run", noKVM, "--config", filepath.Join(dir, "none.json")}, 1, "--config"},
		{"config is a directory", []string{"run", noKVM, "--config", dir}, 1, "not a regular file"},
		{"config unreadable", []string{"run", noKVM, "--config", "/proc/self/mem"}, 1, "not readable"},
		{"config too large", []string{"run", noKVM, "--config", bigConfig}, 1, "larger than"},
		{"config not JSON", []string{"run", noKVM, "--config", config("a.toml", "cpus = 2\n")}, 2, "--config"},
		{"config unknown key", []string{"run", noKVM, "--config", config("b.json", `{"kernel": "x", "memroy": "1G"}`)}, 2, `unknown key "memroy"`},
		{"config wrong type", []string{"run", noKVM, "--config", config("c.json", `{"cpus": "two"}`)}, 2, `key "cpus"`},
		{"config bad duration", []string{"run", noKVM, "--config", config("d.json", `{"timeout": "soon"}`)}, 2, `key "timeout"`},
		{"config bad bool", []string{"run", noKVM, "--config", config("e.json", `{"seccomp": "off"}`)}, 2, `key "seccomp"`},
		{"config names a config", []string{"run", noKVM, "--config", config("f.json", `{"config": "f.json"}`)}, 2, `unknown key "config"`},
		{"config cpus out of range", []string{"run", noKVM, "--config", config("g.json", `{"kernel": "`+good+`", "cpus": 0}`)}, 1, "--cpus"},
		{"config memory not a size", []string{"run", noKVM, "--config", config("h.json", `{"kernel": "`+good+`", "memory": "lots"}`)}, 2, "--memory"},
		{"config bad regexp", []string{"run", noKVM, "--config", config("i.json", `{"kernel": "`+good+`", "expect": "("}`)}, 2, "--expect"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(c.args, nil, &stdout, &stderr)
			require.Equal(t, c.code, code, "stderr: %s", stderr.String())
			msg := stderr.String()
			require.Contains(t, strings.ToLower(msg), strings.ToLower(c.want))
			if c.code == 1 || (len(c.args) > 0 && c.args[0] == "run") {
				require.Equal(t, 1, strings.Count(msg, "\n"), "one line: %q", msg)
				require.True(t, strings.HasPrefix(msg, "vmm run: "), msg)
			}
			require.Empty(t, stdout.String())
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"512": 512 << 20, "512M": 512 << 20, "2G": 2 << 30, "2GiB": 2 << 30, "64K": 64 << 10, "1T": 1 << 40, "4MB": 4 << 20,
	} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "M", "-1", "1.5G", "0x10", "99999999999999T"} {
		_, err := parseSize(in)
		require.Error(t, err, in)
	}
}

// TestRunWithoutKVM: `vmm run` without a usable KVM device exits 1 with
// exactly one line naming the device once, what is wrong and what to do.
func TestRunWithoutKVM(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "bzImage")
	require.NoError(t, os.WriteFile(kernel, testimage.BzImage64([]byte{0xf4}), 0o644))
	missing := filepath.Join(dir, "no-such-kvm")
	denied := filepath.Join(dir, "denied")
	require.NoError(t, os.WriteFile(denied, nil, 0))
	for _, c := range []struct{ name, dev, want string }{
		{"missing", missing, "vmm run: " + missing + ": missing (no such file or directory): " +
			"load kvm-intel or kvm-amd, or boot guests in the nested test host (make run, make e2e)\n"},
		{"permission denied", denied, "vmm run: " + denied + ": permission denied: " +
			"check its permissions, or add the user to the kvm group\n"},
		{"not KVM", "/dev/null", "vmm run: /dev/null: KVM_GET_API_VERSION: inappropriate ioctl for device\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := asUser(t, func() int {
				return run([]string{"run", "--kvm-device", c.dev, "--kernel", kernel}, nil, &stdout, &stderr)
			})
			require.Equal(t, 1, code)
			require.Equal(t, c.want, stderr.String())
			require.Equal(t, 1, strings.Count(stderr.String(), c.dev), "the device named once")
			require.NotContains(t, stderr.String(), "open ")
			require.Empty(t, stdout.String())
		})
	}
}

// TestProbeWithoutKVM: without a usable device the probe says what is wrong
// with it, in text and in JSON a script can branch on, and never reports
// the host's flavour of KVM as if a device were there.
func TestProbeWithoutKVM(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none")
	denied := filepath.Join(dir, "denied")
	require.NoError(t, os.WriteFile(denied, nil, 0))
	for _, c := range []struct {
		name, dev, status, virt, line string
	}{
		{"missing", missing, "missing", "missing",
			"KVM: " + missing + ": missing (no such file or directory): load kvm-intel or kvm-amd, or boot guests in the nested test host (make run, make e2e)"},
		{"permission denied", denied, "permission_denied", "unavailable",
			"KVM: " + denied + ": permission denied: check its permissions, or add the user to the kvm group"},
		{"not KVM", "/dev/null", "unusable", "unavailable",
			"KVM: /dev/null: KVM_GET_API_VERSION: inappropriate ioctl for device"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := asUser(t, func() int { return run([]string{"probe", "--device", c.dev}, nil, &stdout, &stderr) })
			require.Equal(t, 1, code)
			require.Empty(t, stderr.String())
			require.Equal(t, c.line+"\ncan boot a real kernel directly: false\n", stdout.String())

			stdout.Reset()
			code = asUser(t, func() int { return run([]string{"probe", "--json", "--device", c.dev}, nil, &stdout, &stderr) })
			require.Equal(t, 1, code)
			var r map[string]any
			require.NoError(t, json.Unmarshal(stdout.Bytes(), &r))
			require.Equal(t, c.status, r["device_status"])
			require.Equal(t, c.virt, r["virtualization"])
			require.Equal(t, false, r["can_boot_linux"])
			require.Equal(t, false, r["available"])
			// scripts/run-default.sh greps the indented output.
			require.Contains(t, stdout.String(), `"can_boot_linux": false`)
			require.Contains(t, stdout.String(), `"virtualization": "`+c.virt+`"`)
		})
	}
}

// asUser runs fn on a thread of its own that, when the test runs as root,
// has lost the capabilities that let root open any file (capabilities are
// per thread), so a device of mode 000 is denied as it is to a user. The
// thread ends with fn: its goroutine exits still locked to it.
func asUser(t *testing.T, fn func() int) int {
	t.Helper()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if os.Geteuid() == 0 {
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				done <- result{err: err}
				return
			}
			drop := uint32(1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH)
			data[0].Effective &^= drop
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				done <- result{err: err}
				return
			}
		}
		done <- result{code: fn()}
	}()
	r := <-done
	require.NoError(t, r.err, "dropping root's file capabilities")
	return r.code
}
