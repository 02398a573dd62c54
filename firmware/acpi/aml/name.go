package aml

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadName is returned for a name path that is not valid ASL.
var ErrBadName = errors.New("aml: invalid name")

// Name string prefixes (ACPI 6.5 §20.2.2).
const (
	rootChar         = 0x5c // '\'
	parentPrefixChar = 0x5e // '^'
	dualNamePrefix   = 0x2e
	multiNamePrefix  = 0x2f
	nullName         = 0x00
)

// Path is a parsed ACPI name path: an optional root prefix or parent
// prefixes followed by zero or more four-character name segments.
type Path struct {
	root    bool
	parents int
	segs    [][4]byte
}

// ParsePath parses an ASL name path such as "\_SB.PCI0", "^^FOO", "_S5" or
// "\". Segments shorter than four characters are padded with '_' as ASL does.
func ParsePath(s string) (Path, error) {
	var p Path
	rest := s
	if strings.HasPrefix(rest, `\`) {
		p.root = true
		rest = rest[1:]
	} else {
		for strings.HasPrefix(rest, "^") {
			p.parents++
			rest = rest[1:]
		}
	}
	if rest == "" {
		if p.parents > 0 {
			return Path{}, fmt.Errorf("%w: %q: parent prefix without a name", ErrBadName, s)
		}
		if !p.root {
			return Path{}, fmt.Errorf("%w: empty name", ErrBadName)
		}
		return p, nil
	}
	for _, seg := range strings.Split(rest, ".") {
		ns, err := nameSeg(seg)
		if err != nil {
			return Path{}, fmt.Errorf("%w: %q: %w", ErrBadName, s, err)
		}
		p.segs = append(p.segs, ns)
	}
	if len(p.segs) > 255 {
		return Path{}, fmt.Errorf("%w: %q: more than 255 segments", ErrBadName, s)
	}
	return p, nil
}

// MustPath is ParsePath for names fixed in the VMM's source; an invalid one is a
// programming error and panics.
func MustPath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

func nameSeg(s string) ([4]byte, error) {
	var seg [4]byte
	if len(s) < 1 || len(s) > 4 {
		return seg, fmt.Errorf("segment %q must have 1 to 4 characters", s)
	}
	for i := range 4 {
		c := byte('_')
		if i < len(s) {
			c = s[i]
		}
		lead := c == '_' || (c >= 'A' && c <= 'Z')
		if !lead && (i == 0 || c < '0' || c > '9') {
			return seg, fmt.Errorf("segment %q has invalid character %q", s, c)
		}
		seg[i] = c
	}
	return seg, nil
}

// AML encodes the path as a NameString.
func (p Path) AML() []byte {
	var b []byte
	if p.root {
		b = append(b, rootChar)
	}
	for range p.parents {
		b = append(b, parentPrefixChar)
	}
	switch len(p.segs) {
	case 0:
		b = append(b, nullName)
	case 1:
	case 2:
		b = append(b, dualNamePrefix)
	default:
		b = append(b, multiNamePrefix, byte(len(p.segs)))
	}
	for _, s := range p.segs {
		b = append(b, s[:]...)
	}
	return b
}

// String renders the path in ASL form with padded segments.
func (p Path) String() string {
	var sb strings.Builder
	if p.root {
		sb.WriteByte('\\')
	}
	sb.WriteString(strings.Repeat("^", p.parents))
	for i, s := range p.segs {
		if i > 0 {
			sb.WriteByte('.')
		}
		sb.Write(s[:])
	}
	return sb.String()
}
