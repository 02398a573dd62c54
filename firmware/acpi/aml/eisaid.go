package aml

import (
	"encoding/binary"
	"fmt"
)

// ParseEISAID compresses a seven-character EISA/PNP id such as "PNP0A03" into
// the 32-bit integer the ASL EISAID() macro produces: three letters of five
// bits each and four hex digits, stored big-endian and read as a little-endian
// dword.
func ParseEISAID(id string) (uint32, error) {
	if len(id) != 7 {
		return 0, fmt.Errorf("%w: EISA id %q must have 7 characters", ErrBadName, id)
	}
	var mfg uint16
	for i := range 3 {
		c := id[i]
		if c < 'A' || c > 'Z' {
			return 0, fmt.Errorf("%w: EISA id %q: %q is not an upper-case letter", ErrBadName, id, c)
		}
		mfg = mfg<<5 | uint16(c-'@')
	}
	var prod uint16
	for i := 3; i < 7; i++ {
		c := id[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: EISA id %q: %q is not an upper-case hex digit", ErrBadName, id, c)
		}
		prod = prod<<4 | uint16(d)
	}
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:], mfg)
	binary.BigEndian.PutUint16(b[2:], prod)
	return binary.LittleEndian.Uint32(b[:]), nil
}

// EISAID is the integer form of a PNP id, as ASL's EISAID("PNP0501"). The id is
// a VMM constant; an invalid one is a programming error and panics.
func EISAID(id string) Term {
	v, err := ParseEISAID(id)
	if err != nil {
		panic(err)
	}
	return Int(v)
}
