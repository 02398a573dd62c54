package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/vmmdev/vmm/internal/kvmtest"
)

// testArgs is a go test binary's command line, with the flags kvmexec
// rewrites pulled out. go test passes flags as -test.name=value; a value
// in the next argument is accepted too.
type testArgs struct {
	rest    []string // every other argument, in order
	run     string   // -test.run
	skip    string   // -test.skip
	hasRun  bool
	hasSkip bool
	// local says the binary must run here whatever it contains: it was
	// asked to list, fuzz or benchmark, none of which needs KVM.
	local bool
}

// valued are the test flags that take a value; their value may follow as
// the next argument.
var valued = map[string]bool{
	"run": true, "skip": true, "list": true, "fuzz": true, "bench": true, "testlogfile": true,
}

func parseTestArgs(args []string) testArgs {
	var a testArgs
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		name = strings.TrimPrefix(name, "test.")
		if !strings.HasPrefix(arg, "-") || !valued[name] {
			a.rest = append(a.rest, arg)
			continue
		}
		if !hasValue && i+1 < len(args) {
			i++
			value = args[i]
		}
		switch name {
		case "run":
			a.run, a.hasRun = value, true
		case "skip":
			a.skip, a.hasSkip = value, true
		case "testlogfile":
			// Dropped: the log is go test's cache key, and a result that
			// depends on the nested host must not be cached from half a run.
		case "list", "fuzz", "bench":
			a.local = a.local || value != ""
			a.rest = append(a.rest, "-test."+name+"="+value)
		}
	}
	return a
}

// listArgs lists the top-level tests the run pattern selects.
func (a testArgs) listArgs() []string {
	top := "."
	if a.hasRun {
		if first, _ := splitPattern(a.run); first != "" {
			top = first
		}
	}
	return []string{"-test.list=" + top}
}

// localArgs runs everything but the host KVM tests.
func (a testArgs) localArgs() ([]string, error) {
	args := a.base()
	if a.hasRun {
		args = append(args, "-test.run="+a.run)
	}
	skip := "^" + kvmtest.TestPrefix
	if a.hasSkip && a.skip != "" {
		if strings.Contains(a.skip, "/") {
			return nil, fmt.Errorf("-test.skip=%q: kvmexec cannot add its own pattern to one with levels", a.skip)
		}
		skip = skip + "|" + a.skip
	}
	return append(args, "-test.skip="+skip), nil
}

// nestedArgs runs only the named host KVM tests, and the sub-tests of them
// that the run pattern selects.
func (a testArgs) nestedArgs(tests []string) []string {
	args := a.base()
	quoted := make([]string, len(tests))
	for i, t := range tests {
		quoted[i] = regexp.QuoteMeta(t)
	}
	run := "^(" + strings.Join(quoted, "|") + ")$"
	if a.hasRun {
		if _, sub := splitPattern(a.run); sub != "" {
			run += "/" + sub
		}
	}
	args = append(args, "-test.run="+run)
	if a.hasSkip {
		args = append(args, "-test.skip="+a.skip)
	}
	return args
}

// base is the command line without the rewritten flags.
func (a testArgs) base() []string {
	return append([]string(nil), a.rest...)
}

// splitPattern splits a -test.run pattern at its first unbracketed slash
// (as package testing does) into the top-level part and the rest.
func splitPattern(p string) (top, sub string) {
	depth := 0
	for i, r := range p {
		switch r {
		case '[':
			depth++
		case ']':
			if depth > 0 {
				depth--
			}
		case '/':
			if depth == 0 {
				return p[:i], p[i+1:]
			}
		}
	}
	return p, ""
}

// kvmTests picks the host KVM tests out of -test.list's output.
func kvmTests(list string) []string {
	var tests []string
	for _, line := range strings.Split(list, "\n") {
		name := strings.TrimSpace(line)
		if strings.HasPrefix(name, kvmtest.TestPrefix) && !strings.ContainsAny(name, " \t") {
			tests = append(tests, name)
		}
	}
	return tests
}
