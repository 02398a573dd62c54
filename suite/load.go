package suite

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// maxFile bounds a suite file: it is user input.
const maxFile = 1 << 20

// Keys of a suite file that are not flags.
const (
	keyName     = "name"
	keyDefaults = "defaults"
	keyGuests   = "guests"
	keyAxes     = "axes"
	keyMatch    = "match"
	keyExit     = "exit"
	keyLabel    = "label"
	keyValue    = "value"
)

// origin is where a value came from, for errors: its dotted key and the
// TOML primitive, through which the decoder tells the line.
type origin struct {
	key  string
	prim toml.Primitive
	ok   bool
}

// failing is decoded into to make the TOML decoder report a key's position.
type failing struct{ err error }

func (f failing) UnmarshalTOML(any) error { return f.err }

// loader holds what errors need: the file name and the decoder's metadata.
type loader struct {
	file, dir string
	md        toml.MetaData
	schema    Schema
}

// errAt is err at the key of o, with its line when the decoder knows it.
func (l *loader) errAt(o origin, err error) error {
	e := &Error{File: l.file, Key: o.key, Err: err}
	if o.ok {
		var pe toml.ParseError
		if errors.As(l.md.PrimitiveDecode(o.prim, failing{err}), &pe) {
			e.Line = pe.Position.Line
		}
	}
	return e
}

func (l *loader) errf(o origin, format string, args ...any) error {
	return l.errAt(o, fmt.Errorf(format, args...))
}

// Load reads, expands and checks the suite file at path. Every error is an
// *Error (errors.Is(err, ErrInvalid)), one line naming file, line and key.
func Load(path string, schema Schema, check Checker) (*Suite, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	return Parse(path, data, schema, check)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, unwrapPath(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("not readable: %w", unwrapPath(err))
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("larger than %d KiB", maxFile>>10)
	}
	return data, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse is Load on the file's contents; path names it in errors and
// relative paths in it are resolved against its directory.
func Parse(path string, data []byte, schema Schema, check Checker) (*Suite, error) {
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	l := &loader{file: path, dir: dir, schema: schema}
	var top map[string]toml.Primitive
	l.md, err = toml.Decode(string(data), &top)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Line: pe.Position.Line, Key: pe.LastKey, Err: errors.New(pe.Message)}
		}
		return nil, &Error{File: path, Err: err}
	}
	d, err := l.decode(top)
	if err != nil {
		return nil, err
	}
	s := &Suite{Name: d.name, File: path}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if s.Cases, err = l.expand(d, check); err != nil {
		return nil, err
	}
	// A safety net: every key must have been looked at above (axis value
	// tables are read whole, as values).
	for _, k := range l.md.Undecoded() {
		if !slices.Contains(k, keyAxes) {
			return nil, &Error{File: path, Key: k.String(), Err: errors.New("unknown key")}
		}
	}
	return s, nil
}

// entry is one flag's values from one table.
type entry struct {
	values []string
	at     origin
}

// layer is one table's settings: flags and the expected exit code.
type layer struct {
	flags  map[string]entry
	exit   *int
	exitAt origin
}

// axisValue is one value of an axis.
type axisValue struct {
	label    string
	values   []string
	ablation *Ablation
	at       origin
}

type axis struct {
	name   string
	values []axisValue
	at     origin
}

type guest struct {
	name string
	at   origin
	set  layer
	axes []axis
}

type match struct {
	glob string
	at   origin
	set  layer
}

type decoded struct {
	name     string
	defaults layer
	guests   []guest
	axes     []axis
	matches  []match
}

// keysUnder lists the direct children of prefix in file order.
func (l *loader) keysUnder(prefix ...string) []string {
	var out []string
	for _, k := range l.md.Keys() {
		if len(k) == len(prefix)+1 && equalKey(k[:len(prefix)], prefix) {
			out = append(out, k[len(k)-1])
		}
	}
	return out
}

func equalKey(a toml.Key, b []string) bool {
	for i := range b {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func dotted(parts ...string) string { return toml.Key(parts).String() }

// table decodes prim, found at key, as a table of primitives.
func (l *loader) table(key []string, prim toml.Primitive) (map[string]toml.Primitive, error) {
	var m map[string]toml.Primitive
	if err := l.md.PrimitiveDecode(prim, &m); err != nil {
		return nil, l.errf(origin{dotted(key...), prim, true}, "want a table")
	}
	return m, nil
}

func (l *loader) decode(top map[string]toml.Primitive) (decoded, error) {
	var d decoded
	for _, k := range l.keysUnder() {
		at := origin{dotted(k), top[k], true}
		switch k {
		case keyName:
			if err := l.md.PrimitiveDecode(top[k], &d.name); err != nil {
				return d, l.errf(at, "want a string")
			}
		case keyDefaults, keyGuests, keyAxes, keyMatch:
		default:
			return d, l.errf(at, "unknown key (a suite has name, defaults, guests, axes and match)")
		}
	}
	var err error
	if p, ok := top[keyDefaults]; ok {
		if d.defaults, _, err = l.layer([]string{keyDefaults}, p, false); err != nil {
			return d, err
		}
	}
	if p, ok := top[keyAxes]; ok {
		if d.axes, err = l.axes([]string{keyAxes}, p); err != nil {
			return d, err
		}
	}
	if p, ok := top[keyGuests]; ok {
		guests, err := l.table([]string{keyGuests}, p)
		if err != nil {
			return d, err
		}
		for _, name := range l.keysUnder(keyGuests) {
			key := []string{keyGuests, name}
			g := guest{name: name, at: origin{dotted(key...), guests[name], true}}
			var rest map[string]toml.Primitive
			if g.set, rest, err = l.layer(key, guests[name], true); err != nil {
				return d, err
			}
			if p, ok := rest[keyAxes]; ok {
				if g.axes, err = l.axes(append(key, keyAxes), p); err != nil {
					return d, err
				}
			}
			d.guests = append(d.guests, g)
		}
	}
	if len(d.guests) == 0 {
		return d, &Error{File: l.file, Key: keyGuests, Err: errors.New("no guests: add a [guests.NAME] table")}
	}
	if p, ok := top[keyMatch]; ok {
		matches, err := l.table([]string{keyMatch}, p)
		if err != nil {
			return d, err
		}
		for _, glob := range l.keysUnder(keyMatch) {
			key := []string{keyMatch, glob}
			m := match{glob: glob, at: origin{dotted(key...), matches[glob], true}}
			if m.set, _, err = l.layer(key, matches[glob], false); err != nil {
				return d, err
			}
			d.matches = append(d.matches, m)
		}
	}
	return d, nil
}

// layer decodes a table of flags and "exit"; with axes, an "axes" table is
// allowed too and returned undecoded in rest.
func (l *loader) layer(key []string, prim toml.Primitive, axes bool) (layer, map[string]toml.Primitive, error) {
	out := layer{flags: map[string]entry{}}
	m, err := l.table(key, prim)
	if err != nil {
		return out, nil, err
	}
	rest := map[string]toml.Primitive{}
	for _, k := range l.keysUnder(key...) {
		at := origin{dotted(append(key, k)...), m[k], true}
		switch {
		case k == keyExit:
			var code int64
			if err := l.md.PrimitiveDecode(m[k], &code); err != nil || code < 0 || code > 255 {
				return out, nil, l.errf(at, "want an exit code, an integer from 0 to 255")
			}
			c := int(code)
			out.exit, out.exitAt = &c, at
		case k == keyAxes && axes:
			rest[k] = m[k]
		default:
			if err := l.flagKey(k, at); err != nil {
				return out, nil, err
			}
			v, err := l.flagValues(k, m[k], at)
			if err != nil {
				return out, nil, err
			}
			out.flags[k] = entry{values: v, at: at}
		}
	}
	return out, rest, nil
}

// flagKey checks that k is a flag a suite may set.
func (l *loader) flagKey(k string, at origin) error {
	for _, o := range Owned() {
		if k == o {
			return l.errf(at, "set by vmm test for every case (each case's directory has its console log, report and Hyper-V trace)")
		}
	}
	if _, ok := l.schema[k]; !ok {
		return l.errf(at, "unknown key: not a vmm run flag (vmm run -h lists them) nor exit")
	}
	return nil
}

// flagValues turns a TOML value into the flag's text values.
func (l *loader) flagValues(name string, prim toml.Primitive, at origin) ([]string, error) {
	var v any
	if err := l.md.PrimitiveDecode(prim, &v); err != nil {
		return nil, l.errAt(at, err)
	}
	return l.texts(name, v, at)
}

func (l *loader) texts(name string, v any, at origin) ([]string, error) {
	spec := l.schema[name]
	var out []string
	switch spec.Kind {
	case Int:
		n, ok := v.(int64)
		if !ok {
			return nil, l.errf(at, "want an integer, got %s", typeName(v))
		}
		out = []string{strconv.FormatInt(n, 10)}
	case Bool:
		b, ok := v.(bool)
		if !ok {
			return nil, l.errf(at, "want true or false, got %s", typeName(v))
		}
		out = []string{strconv.FormatBool(b)}
	case String:
		s, ok := v.(string)
		if !ok {
			return nil, l.errf(at, "want a string, got %s", typeName(v))
		}
		out = []string{s}
	case List:
		switch x := v.(type) {
		case string:
			out = []string{x}
		case []any:
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, l.errf(at, "want strings in the array, got %s", typeName(e))
				}
				out = append(out, s)
			}
		default:
			return nil, l.errf(at, "want a string or an array of strings, got %s", typeName(v))
		}
	}
	if spec.Rel != nil {
		for i := range out {
			p, err := expandEnv(out[i])
			if err != nil {
				return nil, l.errAt(at, err)
			}
			out[i] = spec.Rel(l.dir, p)
		}
	}
	return out, nil
}

// expandEnv expands $NAME and ${NAME} in a path: where `make images` or a
// CI job put a kernel differs between machines. Only paths are expanded
// (a $ in a pattern is an anchor); an unset variable is an error, not "".
func expandEnv(s string) (string, error) {
	var missing string
	out := os.Expand(s, func(name string) string {
		v, ok := os.LookupEnv(name)
		if !ok && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", fmt.Errorf("environment variable %s is not set", missing)
	}
	return out, nil
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

// axes decodes an axes table: flag name = array of values.
func (l *loader) axes(key []string, prim toml.Primitive) ([]axis, error) {
	m, err := l.table(key, prim)
	if err != nil {
		return nil, err
	}
	var out []axis
	for _, name := range l.keysUnder(key...) {
		at := origin{dotted(append(key, name)...), m[name], true}
		if err := l.flagKey(name, at); err != nil {
			return nil, err
		}
		var elems []toml.Primitive
		if err := l.md.PrimitiveDecode(m[name], &elems); err != nil {
			return nil, l.errf(at, "want an array of values")
		}
		a := axis{name: name, at: at}
		labels := map[string]bool{}
		for _, p := range elems {
			vals, err := l.axisValues(name, p, at)
			if err != nil {
				return nil, err
			}
			for _, v := range vals {
				if labels[v.label] {
					return nil, l.errf(at, "two values labelled %q: give one a label ({label = \"...\", value = ...})", v.label)
				}
				labels[v.label] = true
				a.values = append(a.values, v)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// axisValues decodes one element of an axis: a value, {label, value}, or
// for hyperv an "ablate:LIST" that stands for several values.
func (l *loader) axisValues(name string, prim toml.Primitive, at origin) ([]axisValue, error) {
	var v any
	if err := l.md.PrimitiveDecode(prim, &v); err != nil {
		return nil, l.errAt(at, err)
	}
	label := ""
	if t, ok := v.(map[string]any); ok {
		for k := range t {
			if k != keyLabel && k != keyValue {
				return nil, l.errf(at, "unknown key %q in an axis value (it has label and value)", k)
			}
		}
		s, ok := t[keyLabel].(string)
		if !ok || s == "" {
			return nil, l.errf(at, "an axis value table needs label = \"...\"")
		}
		label = s
		if v, ok = t[keyValue]; !ok {
			return nil, l.errf(at, "an axis value table needs value = ...")
		}
	}
	if s, ok := v.(string); ok && name == flagHyperV && strings.HasPrefix(s, ablatePrefix) {
		vals, err := ablate(strings.TrimPrefix(s, ablatePrefix))
		if err != nil {
			return nil, l.errAt(at, err)
		}
		for i := range vals {
			vals[i].at = at
		}
		return vals, nil
	}
	texts, err := l.texts(name, v, at)
	if err != nil {
		return nil, err
	}
	if label == "" {
		label = defaultLabel(v)
	}
	return []axisValue{{label: label, values: texts, at: at}}, nil
}

// defaultLabel is a value as written in the suite (before paths are
// resolved), so case names do not depend on where the suite lives.
func defaultLabel(v any) string {
	switch x := v.(type) {
	case []any:
		s := make([]string, len(x))
		for i, e := range x {
			s[i] = fmt.Sprint(e)
		}
		return strings.Join(s, "+")
	}
	return fmt.Sprint(v)
}
