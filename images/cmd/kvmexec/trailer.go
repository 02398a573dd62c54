package main

import (
	"bytes"
	"io"
	"sync"
)

// A go test binary ends its output with one line, "PASS" or "FAIL" (led
// by ^V in test2json mode), that go test and test2json read as the
// package's result. kvmexec joins two runs of a binary into one output, so
// it holds back each run's last line, drops it when it is that result
// line, and writes one result line for both at the end.

// marker is test2json's framing byte (package testing's chatty prefix).
const marker = 0x16

// isResultLine reports whether line (without its newline) is a test
// binary's closing PASS or FAIL line, or the "no tests to run" warning that
// precedes it when every test of a run was sent to the other one.
func isResultLine(line []byte) bool {
	line = bytes.TrimPrefix(line, []byte{marker})
	switch string(line) {
	case "PASS", "FAIL", "testing: warning: no tests to run":
		return true
	}
	return false
}

// holdBack writes through to w everything but the trailing result lines
// of a run. Safe for one writer at a time per Write, as exec gives it.
type holdBack struct {
	mu   sync.Mutex
	w    io.Writer
	held [][]byte // complete lines that may be the run's closing lines
	part []byte   // an unterminated last line
	err  error
}

func (h *holdBack) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			h.part = append(h.part, p...)
			break
		}
		line := append(h.part, p[:i+1]...)
		h.part = nil
		p = p[i+1:]
		if isResultLine(line[:len(line)-1]) {
			h.held = append(h.held, line)
			continue
		}
		h.flushHeld()
		h.write(line)
	}
	return n, h.err
}

// flushHeld writes held lines that turned out not to close the output.
func (h *holdBack) flushHeld() {
	for _, l := range h.held {
		h.write(l)
	}
	h.held = nil
}

func (h *holdBack) write(b []byte) {
	if h.err == nil {
		_, h.err = h.w.Write(b)
	}
}

// close ends the run's output: an unterminated last line is written, the
// held result lines are dropped, and it reports whether the run's own
// closing line said FAIL.
func (h *holdBack) close() (saidFail bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.part) > 0 {
		h.flushHeld()
		h.write(append(h.part, '\n'))
		h.part = nil
	}
	for _, l := range h.held {
		if string(bytes.TrimPrefix(bytes.TrimSuffix(l, []byte("\n")), []byte{marker})) == "FAIL" {
			saidFail = true
		}
	}
	h.held = nil
	return saidFail, h.err
}
