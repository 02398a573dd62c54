// Package conmatch watches a guest's console output for the --expect and
// --fail regular expressions of `vmm run`. Console output is guest data: the
// matcher keeps a bounded line buffer and never panics on any input.
package conmatch

import (
	"bytes"
	"regexp"
	"sync"
)

// MaxLine bounds how much of one console line is kept for matching; bytes
// past it are dropped until the next newline, so a guest that never sends a
// newline cannot grow the buffer.
const MaxLine = 4096

// Kind says which pattern matched.
type Kind int

const (
	// Expect: the --expect pattern matched.
	Expect Kind = iota + 1
	// Fail: the --fail pattern matched.
	Fail
)

func (k Kind) String() string {
	switch k {
	case Expect:
		return "expect"
	case Fail:
		return "fail"
	}
	return "none"
}

// Match is the first match of a run.
type Match struct {
	Kind Kind
	// Line is the console line that matched, without its line ending; for a
	// line still being written it is the part seen so far.
	Line string
}

// Matcher is an io.Writer that observes console output. Patterns are matched
// against each line as it grows, so a prompt without a newline ("login: ")
// matches too; a pattern anchored with $ may therefore match a prefix of a
// longer line. Fail is checked before Expect on the same text. Only the first
// match is reported.
type Matcher struct {
	expect, fail *regexp.Regexp
	onMatch      func(Match)

	mu      sync.Mutex
	line    []byte
	dirty   bool // line changed since it was last matched
	matched bool
}

// New returns a Matcher calling onMatch once, for the first match. Either
// pattern may be nil.
func New(expect, fail *regexp.Regexp, onMatch func(Match)) *Matcher {
	return &Matcher{expect: expect, fail: fail, onMatch: onMatch}
}

// Write observes p. It never fails and never blocks on anything but its own
// lock; onMatch runs after the lock is released.
func (m *Matcher) Write(p []byte) (int, error) {
	if m == nil || (m.expect == nil && m.fail == nil) {
		return len(p), nil
	}
	m.mu.Lock()
	var hit *Match
	for _, b := range p {
		if m.matched {
			break
		}
		if b == '\n' {
			hit = m.check()
			m.line, m.dirty = m.line[:0], false
			continue
		}
		if len(m.line) < MaxLine {
			m.line = append(m.line, b)
			m.dirty = true
		}
	}
	if !m.matched && m.dirty && len(m.line) > 0 {
		hit = m.check()
		m.dirty = false
	}
	m.mu.Unlock()
	if hit != nil && m.onMatch != nil {
		m.onMatch(*hit)
	}
	return len(p), nil
}

// check matches the current line; called with mu held.
func (m *Matcher) check() *Match {
	if m.matched {
		return nil
	}
	text := bytes.TrimRight(m.line, "\r")
	for _, c := range []struct {
		re   *regexp.Regexp
		kind Kind
	}{{m.fail, Fail}, {m.expect, Expect}} {
		if c.re != nil && c.re.Match(text) {
			m.matched = true
			return &Match{Kind: c.kind, Line: string(text)}
		}
	}
	return nil
}
