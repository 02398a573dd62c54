// Package fakeram is guest RAM for device tests: a byte slice from GPA 0
// whose Slice fails past its end, as vmm's guest memory does past RAM.
package fakeram

import "fmt"

// RAM is guest RAM at [0, len(RAM)).
type RAM []byte

// Slice returns the n bytes at gpa, capped so that an append cannot reach
// past them.
func (m RAM) Slice(gpa, n uint64) ([]byte, error) {
	if gpa > uint64(len(m)) || n > uint64(len(m))-gpa {
		return nil, fmt.Errorf("[%#x, +%#x): outside fake guest memory", gpa, n)
	}
	return m[gpa : gpa+n : gpa+n], nil
}
