package flagfile

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type vals struct {
	name    string
	cpus    int
	mem     uint64
	timeout time.Duration
	on      bool
	config  string
}

func newSet() (*flag.FlagSet, *vals) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	v := &vals{}
	fs.StringVar(&v.name, "name", "def", "")
	fs.IntVar(&v.cpus, "cpus", 1, "")
	fs.Uint64Var(&v.mem, "mem", 0, "")
	fs.DurationVar(&v.timeout, "timeout", 0, "")
	fs.BoolVar(&v.on, "on", true, "")
	fs.StringVar(&v.config, "config", "", "")
	return fs, v
}

func TestApply(t *testing.T) {
	fs, v := newSet()
	err := Apply(fs, []byte(`{"name": "x", "cpus": 4, "mem": 18446744073709551615, "timeout": "90s", "on": false}`), nil, "config")
	require.NoError(t, err)
	require.Equal(t, vals{name: "x", cpus: 4, mem: 1<<64 - 1, timeout: 90 * time.Second, on: false}, *v)
}

func TestCommandLineWins(t *testing.T) {
	fs, v := newSet()
	require.NoError(t, fs.Parse([]string{"-cpus", "8"}))
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	require.NoError(t, Apply(fs, []byte(`{"cpus": 2, "name": "file"}`), set))
	require.Equal(t, 8, v.cpus)
	require.Equal(t, "file", v.name)
}

func TestApplyErrors(t *testing.T) {
	cases := []struct {
		name, data string
		err        error
		msg        string
	}{
		{"not json", `cpus = 2`, ErrSyntax, ""},
		{"array", `[1]`, ErrSyntax, ""},
		{"null", `null`, ErrSyntax, ""},
		{"trailing", `{} {}`, ErrSyntax, ""},
		{"unknown key", `{"cpus": 1, "memroy": "1G"}`, ErrUnknownKey, `"memroy"`},
		{"denied key", `{"config": "other.json"}`, ErrUnknownKey, `"config"`},
		{"string for int", `{"cpus": "2"}`, ErrBadValue, `key "cpus": bad value: want a JSON integer, got a string`},
		{"float for int", `{"cpus": 1.5}`, ErrBadValue, `"cpus"`},
		{"int overflow", `{"cpus": 1e400}`, ErrBadValue, `"cpus"`},
		{"number for string", `{"name": 3}`, ErrBadValue, `"name"`},
		{"string for bool", `{"on": "yes"}`, ErrBadValue, `"on"`},
		{"null value", `{"name": null}`, ErrBadValue, `got null`},
		{"object value", `{"name": {}}`, ErrBadValue, `an object`},
		{"flag rejects", `{"timeout": "soon"}`, ErrBadValue, `"timeout"`},
		{"negative uint", `{"mem": -1}`, ErrBadValue, `"mem"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs, _ := newSet()
			err := Apply(fs, []byte(c.data), nil, "config")
			require.ErrorIs(t, err, c.err)
			require.Contains(t, err.Error(), c.msg)
		})
	}
}

func FuzzApply(f *testing.F) {
	f.Add([]byte(`{"name": "x", "cpus": 4, "timeout": "90s", "on": false}`))
	f.Add([]byte(`{"cpus": 1e999}`))
	f.Add([]byte(`{"mem": -0, "name": "\u0000"}`))
	f.Add([]byte(`[{"a":1}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, _ := newSet()
		_ = Apply(fs, data, map[string]bool{"on": true}, "config")
	})
}
