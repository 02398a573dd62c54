package scenario

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Console markers. Every line the outer init prints for the host starts with one.
const (
	markerE2E = "E2E: "
	markerLog = "E2E-LOG "
	markerCon = "E2E-CON "
)

// Kind says what an E2E line reports.
type Kind int

const (
	// KindNone is a console line that is not part of the protocol.
	KindNone Kind = iota
	// KindKVMReady: the outer machine has /dev/kvm.
	KindKVMReady
	// KindKVMFailed: the KVM modules did not load; Reason says why.
	KindKVMFailed
	// KindError: the outer init could not run the suite; Reason says why.
	KindError
	// KindResult: one scenario run finished; Result holds it.
	KindResult
	// KindDone: all runs finished; Pass and Fail count them.
	KindDone
	// KindLog: a console line of a failed scenario run (Name, Text).
	KindLog
	// KindConsole: a live console line of a streamed scenario (Name, Text).
	KindConsole
	// KindHeartbeat: a run is still going (Name, ElapsedS, Lines, and its
	// last console line in Text). It shows the outer machine is alive and
	// where a slow guest is.
	KindHeartbeat
)

// NoFirstLine is FirstLineS for a run whose guest never printed its first line.
const NoFirstLine = -1

// ExitNone is Exit for a runner that did not exit on its own (killed, not started).
const ExitNone = -1

// Result is one scenario run.
type Result struct {
	Name     string
	Run      int
	Runner   string
	Pass     bool
	Exit     int
	WantExit int
	// FirstLineS is the seconds from runner start to "VMM-AGENT: start", or NoFirstLine.
	FirstLineS float64
	// MarkS is the seconds from runner start to the scenario's Mark, or
	// NoFirstLine (no mark, or never seen).
	MarkS float64
	// TotalS is the seconds from runner start to its exit.
	TotalS float64
	// Reason explains a failure; empty on success.
	Reason string
}

// Event is one parsed console line.
type Event struct {
	Kind   Kind
	Result Result
	// Reason is set for KindKVMFailed and KindError.
	Reason string
	// Pass and Fail are set for KindDone.
	Pass, Fail int
	// Name and Text are set for KindLog, KindConsole and KindHeartbeat.
	Name, Text string
	// ElapsedS and Lines are set for KindHeartbeat.
	ElapsedS float64
	Lines    int
}

// ErrMalformed is returned (wrapped) for a line that starts like a protocol
// line but cannot be decoded.
var ErrMalformed = errors.New("malformed E2E line")

// KVMReadyLine announces a working /dev/kvm.
func KVMReadyLine() string { return markerE2E + "kvm ready" }

// KVMFailedLine says why /dev/kvm is not usable.
func KVMFailedLine(reason string) string { return markerE2E + "kvm failed reason=" + quote(reason) }

// ErrorLine reports a failure that stops the whole suite.
func ErrorLine(reason string) string { return markerE2E + "error reason=" + quote(reason) }

// DoneLine closes the suite.
func DoneLine(pass, fail int) string {
	return fmt.Sprintf("%sdone pass=%d fail=%d", markerE2E, pass, fail)
}

// HeartbeatLine says run name is still going after elapsedS seconds, with
// lines console lines so far, the last of which is last.
func HeartbeatLine(name string, elapsedS float64, lines int, last string) string {
	return fmt.Sprintf("%sheartbeat scenario=%s elapsed_s=%.0f lines=%d last=%s", markerE2E, name, elapsedS, lines, quote(last))
}

// LogLine carries one console line of a failed run.
func LogLine(name, text string) string { return markerLog + name + ": " + text }

// ConsoleLine carries one live console line of a streamed run.
func ConsoleLine(name, text string) string { return markerCon + name + ": " + text }

// Line renders r as its E2E line; reason comes last because it is free text.
func (r Result) Line() string {
	result := Fail
	if r.Pass {
		result = Pass
	}
	return fmt.Sprintf("%sscenario=%s result=%s exit=%d want_exit=%d first_line_s=%.3f mark_s=%.3f total_s=%.3f run=%d runner=%s reason=%s",
		markerE2E, r.Name, result, r.Exit, r.WantExit, r.FirstLineS, r.MarkS, r.TotalS, r.Run, r.Runner, quote(r.Reason))
}

func quote(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		// Marshal of a string cannot fail; keep the line well-formed anyway.
		return `""`
	}
	return string(b)
}

// ParseLine decodes one console line. Lines without a marker give KindNone
// and no error; a marker may follow unrelated text (kernel messages share
// the console). Trailing carriage returns are ignored.
func ParseLine(line string) (Event, error) {
	line = strings.TrimRight(line, "\r\n")
	at, marker := -1, ""
	for _, m := range []string{markerE2E, markerLog, markerCon} {
		if i := strings.Index(line, m); i >= 0 && (at < 0 || i < at) {
			at, marker = i, m
		}
	}
	if at < 0 {
		return Event{}, nil
	}
	rest := line[at+len(marker):]
	switch marker {
	case markerLog, markerCon:
		name, text, ok := strings.Cut(rest, ": ")
		if !ok || !namePattern.MatchString(name) {
			return Event{}, fmt.Errorf("%w: %q", ErrMalformed, line)
		}
		kind := KindLog
		if marker == markerCon {
			kind = KindConsole
		}
		return Event{Kind: kind, Name: name, Text: text}, nil
	}
	switch {
	case rest == "kvm ready":
		return Event{Kind: KindKVMReady}, nil
	case strings.HasPrefix(rest, "kvm failed reason="):
		reason, err := unquote(strings.TrimPrefix(rest, "kvm failed reason="))
		if err != nil {
			return Event{}, fmt.Errorf("%w: %q: %w", ErrMalformed, line, err)
		}
		return Event{Kind: KindKVMFailed, Reason: reason}, nil
	case strings.HasPrefix(rest, "error reason="):
		reason, err := unquote(strings.TrimPrefix(rest, "error reason="))
		if err != nil {
			return Event{}, fmt.Errorf("%w: %q: %w", ErrMalformed, line, err)
		}
		return Event{Kind: KindError, Reason: reason}, nil
	case strings.HasPrefix(rest, "done "):
		f, err := fields(strings.TrimPrefix(rest, "done "))
		if err != nil {
			return Event{}, fmt.Errorf("%w: %q: %w", ErrMalformed, line, err)
		}
		ev := Event{Kind: KindDone}
		if ev.Pass, err = f.int("pass"); err == nil {
			ev.Fail, err = f.int("fail")
		}
		if err != nil {
			return Event{}, fmt.Errorf("%w: %q: %w", ErrMalformed, line, err)
		}
		return ev, nil
	case strings.HasPrefix(rest, "heartbeat "):
		ev, err := parseHeartbeat(strings.TrimPrefix(rest, "heartbeat "))
		if err != nil {
			return Event{}, fmt.Errorf("%w: %q: %w", ErrMalformed, line, err)
		}
		return ev, nil
	case strings.HasPrefix(rest, "scenario="):
		r, err := parseResult(rest)
		if err != nil {
			return Event{}, fmt.Errorf("%w: %q: %w", ErrMalformed, line, err)
		}
		return Event{Kind: KindResult, Result: r}, nil
	}
	return Event{}, fmt.Errorf("%w: %q", ErrMalformed, line)
}

func parseResult(rest string) (Result, error) {
	head, reasonText, ok := strings.Cut(rest, " reason=")
	if !ok {
		return Result{}, errors.New("no reason field")
	}
	reason, err := unquote(reasonText)
	if err != nil {
		return Result{}, err
	}
	f, err := fields(head)
	if err != nil {
		return Result{}, err
	}
	r := Result{Name: f["scenario"], Runner: f["runner"], Reason: reason}
	if !namePattern.MatchString(r.Name) {
		return Result{}, fmt.Errorf("bad scenario name %q", r.Name)
	}
	switch f["result"] {
	case Pass:
		r.Pass = true
	case Fail:
	default:
		return Result{}, fmt.Errorf("bad result %q", f["result"])
	}
	for _, p := range []struct {
		key string
		dst *int
	}{{"exit", &r.Exit}, {"want_exit", &r.WantExit}, {"run", &r.Run}} {
		if *p.dst, err = f.int(p.key); err != nil {
			return Result{}, err
		}
	}
	if r.FirstLineS, err = f.float("first_line_s"); err != nil {
		return Result{}, err
	}
	if r.TotalS, err = f.float("total_s"); err != nil {
		return Result{}, err
	}
	if r.MarkS, err = f.float("mark_s"); err != nil {
		return Result{}, err
	}
	return r, nil
}

func parseHeartbeat(rest string) (Event, error) {
	head, lastText, ok := strings.Cut(rest, " last=")
	if !ok {
		return Event{}, errors.New("no last field")
	}
	last, err := unquote(lastText)
	if err != nil {
		return Event{}, err
	}
	f, err := fields(head)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Kind: KindHeartbeat, Name: f["scenario"], Text: last}
	if !namePattern.MatchString(ev.Name) {
		return Event{}, fmt.Errorf("bad scenario name %q", ev.Name)
	}
	if ev.ElapsedS, err = f.float("elapsed_s"); err != nil {
		return Event{}, err
	}
	if ev.Lines, err = f.int("lines"); err != nil {
		return Event{}, err
	}
	return ev, nil
}

type fieldMap map[string]string

func fields(s string) (fieldMap, error) {
	f := fieldMap{}
	for _, tok := range strings.Fields(s) {
		k, v, ok := strings.Cut(tok, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("field %q is not key=value", tok)
		}
		f[k] = v
	}
	return f, nil
}

func (f fieldMap) int(key string) (int, error) {
	v, ok := f[key]
	if !ok {
		return 0, fmt.Errorf("missing field %s", key)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("field %s: %w", key, err)
	}
	return n, nil
}

func (f fieldMap) float(key string) (float64, error) {
	v, ok := f[key]
	if !ok {
		return 0, fmt.Errorf("missing field %s", key)
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("field %s: %w", key, err)
	}
	return n, nil
}

func unquote(s string) (string, error) {
	var out string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return "", fmt.Errorf("reason is not a JSON string: %w", err)
	}
	return out, nil
}
