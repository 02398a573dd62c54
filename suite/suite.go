// Package suite reads `vmm test` suite files (TOML) and expands them into
// named cases, each a complete `vmm run` command line with an expected exit
// code; it also picks the shard a case belongs to. It runs nothing: the
// runner (package suite/runner) does.
//
// Every key of a guest, of [defaults], of an axis or of a [match."GLOB"]
// table is a `vmm run` flag name (described by a Schema that cmd/vmm builds
// from its own flag set), so every flag is reachable and a suite never needs
// a second schema. Each case's command line is checked by a Checker, which
// cmd/vmm backs with `vmm run`'s own parsing and validation, before any case
// starts.
package suite

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalid marks every error of a bad suite (syntax, unknown key, a value
// `vmm run` refuses, unreadable file); errors.As gives the *Error.
var ErrInvalid = errors.New("invalid suite")

// Error is a bad suite: where and what. It prints as one line,
// FILE:LINE: KEY: message.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted TOML key; "" when none applies
	Err  error
}

func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	if e.Key != "" {
		s += ": " + e.Key
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes every *Error match ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Kind is the TOML type a flag takes.
type Kind int

const (
	// String flags take a TOML string (sizes, durations, patterns, paths).
	String Kind = iota
	// Int flags take a TOML integer.
	Int
	// Bool flags take true or false.
	Bool
	// List flags may be repeated: a string or an array of strings.
	List
)

// Flag describes one `vmm run` flag for suites.
type Flag struct {
	Kind Kind
	// Rel, if set, resolves a value written in the suite against dir, the
	// suite file's directory: paths in a suite are relative to the file,
	// not to where vmm test runs.
	Rel func(dir, value string) string
}

// Schema maps `vmm run` flag names to their description.
type Schema map[string]Flag

// Flags the runner sets for every case, which a suite may not set.
const (
	FlagConsoleLog  = "console-log"
	FlagReport      = "report"
	FlagHyperVTrace = "hyperv-trace"
	FlagConfig      = "config"
)

// Owned lists the flags the runner owns.
func Owned() []string { return []string{FlagConsoleLog, FlagReport, FlagHyperVTrace, FlagConfig} }

// Checker checks one case's full `vmm run` command line (its flags and
// those the runner adds) as `vmm run` would, without starting anything. Its
// error is one line; when it names a flag (--memory), the suite error points
// at the key that set it.
type Checker func(args []string) error

// DefaultTimeout is a case's --timeout when the suite sets none: a suite
// must end even when a guest hangs. `timeout = "0"` turns it off.
const DefaultTimeout = 5 * time.Minute

// Suite is a loaded, expanded and checked suite file.
type Suite struct {
	// Name is the suite's name (its file name without .toml unless set).
	Name string
	// File is the suite file as given.
	File string
	// Cases in expansion order: guests in file order, then the axes'
	// product in file order.
	Cases []Case
}

// Case is one `vmm run` of the suite.
type Case struct {
	// Name is unique in the suite: the guest, then axis=label per axis.
	Name  string
	Guest string
	// Axes are the axis values that made this case, in axis order.
	Axes []AxisValue
	// Args are the `vmm run` flags, as --name=value, sorted by name
	// (repeated flags in their order); the runner adds the owned flags.
	Args []string
	// Exit is the exit code of `vmm run` this case expects.
	Exit int
	// Timeout is the case's --timeout (0: none); the runner kills a child
	// that outlives it by a grace period.
	Timeout time.Duration
	// HyperV says whether the case turns Hyper-V on (the runner then asks
	// for a Hyper-V trace).
	HyperV bool
	// Ablation is set for cases of a hyperv = "ablate:..." axis.
	Ablation *Ablation
}

// AxisValue is one axis's value in a case.
type AxisValue struct {
	Axis  string `json:"axis"`
	Label string `json:"label"`
}

// Ablation says which Hyper-V switch a case of an ablation axis turned off.
type Ablation struct {
	// Base is the switch list being ablated (e.g. "all").
	Base string `json:"base"`
	// Off is the switch turned off; "" for the baseline with every switch on.
	Off string `json:"off,omitempty"`
	// AlsoOff are switches that had to go with Off (they need it).
	AlsoOff []string `json:"also_off,omitempty"`
}
