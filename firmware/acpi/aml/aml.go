// Package aml encodes ACPI Machine Language byte code (ACPI 6.5 chapter 20)
// for the DSDT and SSDTs the VMM hands a guest: names, integers, strings,
// buffers, packages, scopes, devices, methods and resource templates.
//
// Every encoder is a Term; terms compose into larger terms. Names are given as
// ASL strings ("\_SB.PCI0", "_S5"); they are constants of the VMM, so an
// invalid one is a programming error and panics at construction. Use
// ParsePath to check a name that does not come from the VMM's source.
package aml

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Term is anything that encodes to AML byte code.
type Term interface {
	AML() []byte
}

// ErrTooLong is returned when a package length does not fit PkgLength's 28 bits.
var ErrTooLong = errors.New("aml: package too long")

// MaxPkgLength is the largest value a PkgLength can encode.
const MaxPkgLength = 1<<28 - 1

// Opcodes (ACPI 6.5 §20.3).
const (
	zeroOp       = 0x00
	oneOp        = 0x01
	nameOp       = 0x08
	bytePrefix   = 0x0a
	wordPrefix   = 0x0b
	dwordPrefix  = 0x0c
	stringPrefix = 0x0d
	qwordPrefix  = 0x0e
	scopeOp      = 0x10
	bufferOp     = 0x11
	packageOp    = 0x12
	varPackageOp = 0x13
	methodOp     = 0x14
	extOpPrefix  = 0x5b
	deviceOp     = 0x82 // after extOpPrefix
	local0Op     = 0x60
	arg0Op       = 0x68
	storeOp      = 0x70
	andOp        = 0x7b
	orOp         = 0x7d
	notifyOp     = 0x86
	ifOp         = 0xa0
	elseOp       = 0xa1
	landOp       = 0x90
	lequalOp     = 0x93
	lnotOp       = 0x92
	returnOp     = 0xa4
	onesOp       = 0xff
)

// PkgLength encodes the PkgLength of a package whose contents after the
// PkgLength take bodyLen bytes. The encoded value counts its own bytes, so the
// encoding is the shortest of 1 to 4 bytes that can hold bodyLen plus itself.
func PkgLength(bodyLen int) ([]byte, error) {
	if bodyLen < 0 {
		return nil, fmt.Errorf("%w: negative length %d", ErrTooLong, bodyLen)
	}
	if bodyLen+1 <= 0x3f {
		return []byte{byte(bodyLen + 1)}, nil
	}
	for n := 2; n <= 4; n++ {
		total := bodyLen + n
		if total < 1<<(4+8*(n-1)) {
			b := make([]byte, n)
			b[0] = byte(n-1)<<6 | byte(total&0x0f)
			total >>= 4
			for i := 1; i < n; i++ {
				b[i] = byte(total)
				total >>= 8
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLong, bodyLen, MaxPkgLength-4)
}

// pkg prefixes body with its PkgLength. A body over 256 MiB cannot come from
// the VMM's own tables (they live in a 64 KiB window), so it panics.
func pkg(body []byte) []byte {
	l, err := PkgLength(len(body))
	if err != nil {
		panic(err)
	}
	return append(l, body...)
}

func concat(terms []Term) []byte {
	var b []byte
	for _, t := range terms {
		b = append(b, t.AML()...)
	}
	return b
}

// Raw is a term whose encoding is given verbatim.
type Raw []byte

// AML returns the bytes.
func (r Raw) AML() []byte { return append([]byte(nil), r...) }

// Int is an integer constant encoded in the shortest form: ZeroOp, OneOp,
// OnesOp (all 64 bits set) or a Byte/Word/DWord/QWord prefix.
type Int uint64

// Zero, One and Ones are the constant objects of the same names.
const (
	Zero Int = 0
	One  Int = 1
	Ones Int = ^Int(0)
)

// AML encodes the integer.
func (v Int) AML() []byte {
	switch {
	case v == 0:
		return []byte{zeroOp}
	case v == 1:
		return []byte{oneOp}
	case v == Ones:
		return []byte{onesOp}
	case v <= 0xff:
		return []byte{bytePrefix, byte(v)}
	case v <= 0xffff:
		return binary.LittleEndian.AppendUint16([]byte{wordPrefix}, uint16(v))
	case v <= 0xffffffff:
		return binary.LittleEndian.AppendUint32([]byte{dwordPrefix}, uint32(v))
	}
	return binary.LittleEndian.AppendUint64([]byte{qwordPrefix}, uint64(v))
}

// String is an ASCII string constant. It may not contain NUL or bytes above 0x7f.
type String string

// AML encodes the string; an invalid character is a programming error and panics.
func (s String) AML() []byte {
	for i := range len(s) {
		if s[i] == 0 || s[i] > 0x7f {
			panic(fmt.Sprintf("aml: string %q: character %#x is not ASCII", string(s), s[i]))
		}
	}
	b := append([]byte{stringPrefix}, s...)
	return append(b, 0)
}

// Buffer is a buffer object initialised with the given bytes.
type Buffer []byte

// AML encodes Buffer(n){bytes}.
func (b Buffer) AML() []byte {
	body := Int(len(b)).AML()
	body = append(body, b...)
	return append([]byte{bufferOp}, pkg(body)...)
}

// Package is a package of data objects (integers, strings, buffers, name
// references, nested packages).
func Package(elems ...Term) Term { return pkgTerm(elems) }

type pkgTerm []Term

func (p pkgTerm) AML() []byte {
	if len(p) <= 0xff {
		body := append([]byte{byte(len(p))}, concat(p)...)
		return append([]byte{packageOp}, pkg(body)...)
	}
	body := append(Int(len(p)).AML(), concat(p)...)
	return append([]byte{varPackageOp}, pkg(body)...)
}

// NamePath is a reference to a named object, e.g. a link device in a _PRT
// entry or a method argument.
func NamePath(name string) Term { return MustPath(name) }

// Name declares a named object: Name(name, value).
func Name(name string, value Term) Term {
	return Raw(append(append([]byte{nameOp}, MustPath(name).AML()...), value.AML()...))
}

// Scope opens an existing namespace scope: Scope(name){terms}.
func Scope(name string, terms ...Term) Term {
	return scoped{op: []byte{scopeOp}, name: MustPath(name), terms: terms}
}

// Device declares a device: Device(name){terms}.
func Device(name string, terms ...Term) Term {
	return scoped{op: []byte{extOpPrefix, deviceOp}, name: MustPath(name), terms: terms}
}

type scoped struct {
	op    []byte
	name  Path
	terms []Term
}

func (s scoped) AML() []byte {
	body := append(s.name.AML(), concat(s.terms)...)
	return append(append([]byte(nil), s.op...), pkg(body)...)
}

// Method declares a control method with args arguments (0-7), serialized or
// not, at sync level 0: Method(name, args, Serialized|NotSerialized){terms}.
func Method(name string, args int, serialized bool, terms ...Term) Term {
	if args < 0 || args > 7 {
		panic(fmt.Sprintf("aml: method %s: %d arguments, at most 7", name, args))
	}
	flags := byte(args)
	if serialized {
		flags |= 1 << 3
	}
	body := append(MustPath(name).AML(), flags)
	body = append(body, concat(terms)...)
	return Raw(append([]byte{methodOp}, pkg(body)...))
}

// Return returns value from a method.
func Return(value Term) Term { return Raw(append([]byte{returnOp}, value.AML()...)) }

// Arg is a method argument, Arg0 to Arg6.
type Arg uint8

// AML encodes ArgN; an index above 6 is a programming error and panics.
func (a Arg) AML() []byte {
	if a > 6 {
		panic(fmt.Sprintf("aml: Arg%d does not exist", a))
	}
	return []byte{arg0Op + byte(a)}
}

// Local is a method local variable, Local0 to Local7.
type Local uint8

// AML encodes LocalN; an index above 7 is a programming error and panics.
func (l Local) AML() []byte {
	if l > 7 {
		panic(fmt.Sprintf("aml: Local%d does not exist", l))
	}
	return []byte{local0Op + byte(l)}
}

// Store copies src into dst: Store(src, dst).
func Store(src, dst Term) Term {
	return Raw(append(append([]byte{storeOp}, src.AML()...), dst.AML()...))
}

// And is the bitwise And(a, b, target); pass nil for no target.
func And(a, b, target Term) Term { return binop(andOp, a, b, target) }

// Or is the bitwise Or(a, b, target); pass nil for no target.
func Or(a, b, target Term) Term { return binop(orOp, a, b, target) }

func binop(op byte, a, b, target Term) Term {
	out := append([]byte{op}, a.AML()...)
	out = append(out, b.AML()...)
	if target == nil {
		return Raw(append(out, nullName))
	}
	return Raw(append(out, target.AML()...))
}

// LEqual is the logical comparison a == b.
func LEqual(a, b Term) Term {
	return Raw(append(append([]byte{lequalOp}, a.AML()...), b.AML()...))
}

// LAnd is the logical a && b.
func LAnd(a, b Term) Term {
	return Raw(append(append([]byte{landOp}, a.AML()...), b.AML()...))
}

// LNot is the logical !a.
func LNot(a Term) Term { return Raw(append([]byte{lnotOp}, a.AML()...)) }

// If runs terms when predicate is non-zero.
func If(predicate Term, terms ...Term) Term {
	body := append(predicate.AML(), concat(terms)...)
	return Raw(append([]byte{ifOp}, pkg(body)...))
}

// Else runs terms when the immediately preceding If did not.
func Else(terms ...Term) Term {
	return Raw(append([]byte{elseOp}, pkg(concat(terms))...))
}

// Notify sends value to the notify handlers of object.
func Notify(object, value Term) Term {
	return Raw(append(append([]byte{notifyOp}, object.AML()...), value.AML()...))
}

// Terms concatenates terms into one, for building a term list piecewise.
func Terms(terms ...Term) Term { return Raw(concat(terms)) }
