package conmatch

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type recorder struct{ got []Match }

func (r *recorder) on(m Match) { r.got = append(r.got, m) }

func feed(t *testing.T, m *Matcher, chunks ...string) {
	t.Helper()
	for _, c := range chunks {
		n, err := m.Write([]byte(c))
		require.NoError(t, err)
		require.Equal(t, len(c), n)
	}
}

func TestExpectAcrossByteWrites(t *testing.T) {
	var r recorder
	m := New(regexp.MustCompile(`summary pass=\d+ fail=0`), nil, r.on)
	for _, b := range []byte("booting\r\nVMM-AGENT: summary pass=3 fail=0\r\nmore\n") {
		feed(t, m, string([]byte{b}))
	}
	require.Equal(t, []Match{{Kind: Expect, Line: "VMM-AGENT: summary pass=3 fail=0"}}, r.got)
}

func TestFailWinsOnTheSameLine(t *testing.T) {
	var r recorder
	m := New(regexp.MustCompile(`panic`), regexp.MustCompile(`Kernel panic`), r.on)
	feed(t, m, "Kernel panic - not syncing\n")
	require.Equal(t, []Match{{Kind: Fail, Line: "Kernel panic - not syncing"}}, r.got)
}

func TestFirstMatchOnly(t *testing.T) {
	var r recorder
	m := New(regexp.MustCompile(`ok`), regexp.MustCompile(`bad`), r.on)
	feed(t, m, "ok\nbad\nok\n")
	require.Len(t, r.got, 1)
	require.Equal(t, Expect, r.got[0].Kind)
}

func TestPartialLineMatches(t *testing.T) {
	var r recorder
	m := New(regexp.MustCompile(`^login: $`), nil, r.on)
	feed(t, m, "Debian\n", "log", "in: ")
	require.Equal(t, []Match{{Kind: Expect, Line: "login: "}}, r.got)
}

func TestNoMatchAcrossLines(t *testing.T) {
	var r recorder
	m := New(regexp.MustCompile(`ab`), nil, r.on)
	feed(t, m, "a\nb\n", "a\r\n", "b")
	require.Empty(t, r.got)
}

func TestLineIsBounded(t *testing.T) {
	var r recorder
	m := New(regexp.MustCompile(`TAIL`), nil, r.on)
	feed(t, m, strings.Repeat("x", 3*MaxLine), "TAIL")
	require.Empty(t, r.got, "text past MaxLine is dropped")
	require.LessOrEqual(t, cap(m.line), 2*MaxLine)
	feed(t, m, "\nTAIL\n")
	require.Equal(t, []Match{{Kind: Expect, Line: "TAIL"}}, r.got)
}

func TestNoPatterns(t *testing.T) {
	var m *Matcher
	n, err := m.Write([]byte("x"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	called := false
	m = New(nil, nil, func(Match) { called = true })
	feed(t, m, "anything\n")
	require.False(t, called)
	require.Equal(t, "none", Kind(0).String())
	require.Equal(t, "fail", Fail.String())
}

func FuzzMatcher(f *testing.F) {
	f.Add([]byte("VMM-AGENT: summary pass=3 fail=0\r\n"), uint8(3))
	f.Add([]byte("Kernel panic - not syncing: VFS\n"), uint8(1))
	f.Add([]byte("\x00\xff\n\n\r\rlogin: "), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		var r recorder
		m := New(regexp.MustCompile(`pass=\d+ fail=0`), regexp.MustCompile(`(?i)panic`), r.on)
		step := int(split)%17 + 1
		for i := 0; i < len(data); i += step {
			if _, err := m.Write(data[i:min(i+step, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		if len(r.got) > 1 {
			t.Fatalf("%d matches reported", len(r.got))
		}
		if len(m.line) > MaxLine {
			t.Fatalf("line buffer %d > %d", len(m.line), MaxLine)
		}
		for _, g := range r.got {
			if len(g.Line) > MaxLine {
				t.Fatalf("line %d bytes", len(g.Line))
			}
		}
	})
}
