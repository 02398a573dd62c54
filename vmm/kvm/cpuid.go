package kvm

import (
	"fmt"
	"unsafe"
)

// CPUIDFlagSignificantIndex marks an entry whose Index (ECX input) selects
// among several sub-leaves (KVM_CPUID_FLAG_SIGNIFCANT_INDEX).
const CPUIDFlagSignificantIndex uint32 = 1 << 0

// CPUIDEntry is struct kvm_cpuid_entry2 (40 bytes).
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUID is a set of CPUID leaves as exchanged with KVM_GET_SUPPORTED_CPUID
// and KVM_SET_CPUID2. It is marshalled to struct kvm_cpuid2 at the ioctl.
type CPUID struct {
	Entries []CPUIDEntry
}

// matches reports whether e answers CPUID(function, index).
func (e *CPUIDEntry) matches(function, index uint32) bool {
	if e.Function != function {
		return false
	}
	return e.Flags&CPUIDFlagSignificantIndex == 0 || e.Index == index
}

// Get returns the entry answering CPUID(function, index), or nil. The index is
// compared only for entries flagged CPUIDFlagSignificantIndex. The pointer
// aliases c.Entries, so callers may edit the leaf in place.
func (c *CPUID) Get(function, index uint32) *CPUIDEntry {
	for i := range c.Entries {
		if c.Entries[i].matches(function, index) {
			return &c.Entries[i]
		}
	}
	return nil
}

// Set replaces the entry for (e.Function, e.Index) or appends e.
func (c *CPUID) Set(e CPUIDEntry) {
	for i := range c.Entries {
		old := &c.Entries[i]
		if old.Function != e.Function {
			continue
		}
		sig := old.Flags&CPUIDFlagSignificantIndex != 0 || e.Flags&CPUIDFlagSignificantIndex != 0
		if !sig || old.Index == e.Index {
			*old = e
			return
		}
	}
	c.Entries = append(c.Entries, e)
}

// cpuid2Words is the size of one kvm_cpuid_entry2 in uint32 words.
const cpuid2Words = int(unsafe.Sizeof(CPUIDEntry{}) / 4)

// cpuid2HeaderWords is the size of the kvm_cpuid2 header in uint32 words.
const cpuid2HeaderWords = int(unsafe.Sizeof(kvmCPUID2{}) / 4)

// newCPUID2Buf returns a zeroed struct kvm_cpuid2 with room for n entries and
// nent = n. A []uint32 gives the 4-byte alignment every field needs.
func newCPUID2Buf(n int) []uint32 {
	buf := make([]uint32, cpuid2HeaderWords+n*cpuid2Words)
	buf[0] = uint32(n)
	return buf
}

// encodeCPUID2 marshals c into struct kvm_cpuid2.
func encodeCPUID2(c *CPUID) []uint32 {
	buf := newCPUID2Buf(len(c.Entries))
	if len(c.Entries) > 0 {
		copy(cpuid2Entries(buf, len(c.Entries)), c.Entries)
	}
	return buf
}

// decodeCPUID2 copies the entries out of a struct kvm_cpuid2 buffer,
// checking nent against the buffer rather than trusting it.
func decodeCPUID2(buf []uint32) (*CPUID, error) {
	if len(buf) < cpuid2HeaderWords {
		return nil, fmt.Errorf("kvm_cpuid2: %d words is shorter than the header", len(buf))
	}
	capacity := (len(buf) - cpuid2HeaderWords) / cpuid2Words
	n := buf[0]
	if uint64(n) > uint64(capacity) {
		return nil, fmt.Errorf("kvm_cpuid2: nent %d exceeds buffer of %d entries", n, capacity)
	}
	out := &CPUID{Entries: make([]CPUIDEntry, n)}
	if n > 0 {
		copy(out.Entries, cpuid2Entries(buf, int(n)))
	}
	return out, nil
}

// cpuid2Entries views the first n entries of a kvm_cpuid2 buffer; the caller
// guarantees the buffer holds them.
func cpuid2Entries(buf []uint32, n int) []CPUIDEntry {
	return unsafe.Slice((*CPUIDEntry)(unsafe.Pointer(&buf[cpuid2HeaderWords])), n)
}
