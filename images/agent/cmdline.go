package main

import (
	"fmt"
	"strconv"
	"strings"
)

// Actions the agent can end with (vmm.action=...).
const (
	actionPoweroff = "poweroff"
	actionReboot   = "reboot"
	actionPanic    = "panic"
	actionHang     = "hang"
)

// defaultChecks run when the command line names none.
const defaultChecks = "boot"

// options is what the kernel command line asks of the agent.
type options struct {
	checks     []string
	action     string
	expectCPUs int // 0: compare with the present CPUs instead
	// params holds the other vmm.* parameters, for the checks that read
	// their own (vmm.disk, vmm.net, ...); nil when there are none.
	params map[string]string
}

// parseCmdline reads the vmm.* parameters from /proc/cmdline. Problems do
// not stop the agent: they come back as messages to report as a failed
// "cmdline" check, so a typo in a test shows up as a failure, not a hang.
func parseCmdline(s string) (options, []string) {
	o := options{action: actionPoweroff}
	checks := defaultChecks
	var problems []string
	for _, p := range splitCmdline(s) {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "vmm.checks":
			checks = v
		case "vmm.action":
			switch v {
			case actionPoweroff, actionReboot, actionPanic, actionHang:
				o.action = v
			default:
				problems = append(problems, fmt.Sprintf("unknown vmm.action %q", v))
			}
		case "vmm.expect_cpus":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 4096 {
				problems = append(problems, fmt.Sprintf("bad vmm.expect_cpus %q", v))
				continue
			}
			o.expectCPUs = n
		default:
			if strings.HasPrefix(k, "vmm.") {
				if o.params == nil {
					o.params = map[string]string{}
				}
				o.params[k] = v
			}
		}
	}
	seen := map[string]bool{}
	for _, c := range strings.Split(checks, ",") {
		if c = strings.TrimSpace(c); c != "" && !seen[c] {
			seen[c] = true
			o.checks = append(o.checks, c)
		}
	}
	return o, problems
}

// splitCmdline splits like the kernel does: on spaces, except inside double
// quotes, which are removed.
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			have = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}
