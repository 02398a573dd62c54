package vmm

import (
	"bytes"
	"io"
	"sync"
)

// maxWatchedLine bounds how much of one console line is kept for matching; a
// guest that never sends a newline cannot grow it.
const maxWatchedLine = 4096

// consoleWatch passes console output through to out and calls onMatch with the
// first pattern that appears in a completed line.
type consoleWatch struct {
	mu       sync.Mutex
	out      io.Writer
	patterns []watchPattern
	line     []byte
}

type watchPattern struct {
	text    []byte
	onMatch func(line string)
}

func newConsoleWatch(out io.Writer) *consoleWatch {
	if out == nil {
		out = io.Discard
	}
	return &consoleWatch{out: out}
}

// On registers fn to run (once per matching line) when text appears in a line.
func (w *consoleWatch) On(text string, fn func(line string)) {
	w.patterns = append(w.patterns, watchPattern{text: []byte(text), onMatch: fn})
}

func (w *consoleWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	var matched []func()
	for _, b := range p {
		if b == '\n' {
			matched = append(matched, w.match()...)
			w.line = w.line[:0]
			continue
		}
		if len(w.line) < maxWatchedLine {
			w.line = append(w.line, b)
		}
	}
	w.mu.Unlock()
	n, err := w.out.Write(p)
	// Callbacks run after the output is written, so the matching line is
	// already in the console when the VM stops.
	for _, fn := range matched {
		fn()
	}
	return n, err
}

func (w *consoleWatch) match() []func() {
	var out []func()
	for _, p := range w.patterns {
		if bytes.Contains(w.line, p.text) {
			line, fn := string(bytes.TrimRight(w.line, "\r")), p.onMatch
			out = append(out, func() { fn(line) })
		}
	}
	return out
}
