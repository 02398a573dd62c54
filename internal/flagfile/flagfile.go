// Package flagfile applies a JSON configuration file to a flag.FlagSet: the
// file's keys are the flag names, so the file and the command line share one
// schema, one set of defaults and one validation. Values must have the JSON
// type of their flag (bool flags take true/false, integer flags integers,
// every other flag a string). The file is user input: it is bounded by the
// caller and parsed without panics.
package flagfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"reflect"
	"slices"
	"strconv"
)

// Sentinel errors, for errors.Is.
var (
	// ErrSyntax: the file is not one JSON object.
	ErrSyntax = errors.New("not a JSON object")
	// ErrUnknownKey: a key names no flag (or one the file may not set).
	ErrUnknownKey = errors.New("unknown key")
	// ErrBadValue: a value has the wrong JSON type or the flag rejected it.
	ErrBadValue = errors.New("bad value")
)

// Apply sets the flags of fs named by the keys of the JSON object in data,
// in key order, except those in skip (flags given on the command line, which
// win over the file). Keys in deny (such as the flag naming the file itself)
// are unknown keys.
func Apply(fs *flag.FlagSet, data []byte, skip map[string]bool, deny ...string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		return fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	if obj == nil {
		return fmt.Errorf("%w: got null", ErrSyntax)
	}
	if _, err := dec.Token(); err == nil {
		return fmt.Errorf("%w: data after the object", ErrSyntax)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || slices.Contains(deny, k) {
			return fmt.Errorf("%w %q", ErrUnknownKey, k)
		}
		s, err := text(f, obj[k])
		if err != nil {
			return fmt.Errorf("key %q: %w: %w", k, ErrBadValue, err)
		}
		if skip[k] {
			continue
		}
		if err := fs.Set(k, s); err != nil {
			return fmt.Errorf("key %q: %w: %w", k, ErrBadValue, err)
		}
	}
	return nil
}

type boolFlag interface{ IsBoolFlag() bool }

// The JSON types of flags (KindOf).
const (
	KindBool    = "bool"
	KindInteger = "integer"
	KindString  = "string"
)

// KindOf says which JSON type a flag takes: KindBool, KindInteger or
// KindString (vmm test's suite files map them to TOML types).
func KindOf(f *flag.Flag) string {
	if b, ok := f.Value.(boolFlag); ok && b.IsBoolFlag() {
		return KindBool
	}
	if g, ok := f.Value.(flag.Getter); ok {
		switch reflect.ValueOf(g.Get()).Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return KindInteger
		case reflect.Int64:
			if _, isDuration := g.Get().(interface{ Seconds() float64 }); !isDuration {
				return KindInteger
			}
		}
	}
	return KindString
}

// text turns a JSON value into the flag's text form, checking its type.
func text(f *flag.Flag, raw json.RawMessage) (string, error) {
	want := KindOf(f)
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", err
	}
	switch x := v.(type) {
	case bool:
		if want == KindBool {
			return strconv.FormatBool(x), nil
		}
	case json.Number:
		if want == KindInteger {
			if _, err := strconv.ParseInt(x.String(), 10, 64); err != nil {
				if _, uerr := strconv.ParseUint(x.String(), 10, 64); uerr != nil {
					return "", fmt.Errorf("%s is not an integer", x)
				}
			}
			return x.String(), nil
		}
	case string:
		if want == KindString {
			return x, nil
		}
	}
	return "", fmt.Errorf("want a JSON %s, got %s", want, describe(v))
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "an object"
}
