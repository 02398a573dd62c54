// Command agent is the /init of the inner test guest's initramfs. It mounts
// the kernel filesystems, loads the initramfs's modules, runs the checks the
// kernel command line names (vmm.checks=...), reports each on the console as
// a "VMM-AGENT:" line, and ends the way vmm.action= says, so that the test
// host sees the result both on the console and in vmm's exit code.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "agent: must run as PID 1 (the guest's /init); it mounts, loads modules and powers off")
		os.Exit(2)
	}
	sys := linuxSystem{}
	run(os.Stdout, sys)
	// run only returns if every way to end the machine failed; init must
	// not exit (the kernel would panic and hide the real problem).
	sys.hang()
}

// system is what run needs from the machine; linuxSystem is the real one.
type system interface {
	mountAll() error
	loadModules() error
	cmdline() (string, error)
	release() string
	env() *env
	end(action string, failures int) error
}

// run is the agent's whole life: start line, setup, checks, summary, action.
func run(out io.Writer, sys system) {
	emit := func(s string) { _, _ = io.WriteString(out, s) }
	emit(startLine())

	var setupProblems []string
	if err := sys.mountAll(); err != nil {
		setupProblems = append(setupProblems, err.Error())
	}
	line, err := sys.cmdline()
	if err != nil {
		setupProblems = append(setupProblems, err.Error())
	}
	opts, problems := parseCmdline(line)
	setupProblems = append(setupProblems, problems...)

	e := sys.env()
	e.opts = opts
	e.moduleErr = sys.loadModules()
	if name := opts.params["vmm.console"]; name != "" {
		// The console is a module's (hvc0): it exists only now.
		if cs, ok := sys.(consoleSwitcher); !ok {
			setupProblems = append(setupProblems, "vmm.console: this system cannot switch consoles")
		} else if err := cs.useConsole(name); err != nil {
			setupProblems = append(setupProblems, err.Error())
		} else {
			emit(startLine())
		}
	}

	pass, fail := 0, 0
	if len(setupProblems) > 0 {
		emit(checkLine("setup", false, strings.Join(setupProblems, "; ")))
		fail++
	}
	p, f := newRegistry().run(e, opts.checks, func(o outcome) { emit(checkLine(o.name, o.pass, o.detail)) })
	pass += p
	fail += f
	emit(summaryLine(pass, fail))
	emit(actionLine(opts.action))
	if err := sys.end(opts.action, fail); err != nil {
		emit(fmt.Sprintf("%serror %s\n", linePrefix, jsonString(err.Error())))
	}
}

// errNotEnded is returned when the action's system call returned, which it
// must not on success.
var errNotEnded = errors.New("machine still running after action")
