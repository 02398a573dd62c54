// Package acpi builds the ACPI tables the VMM hands a guest: RSDP, XSDT, FADT
// (hardware-reduced), DSDT, MADT and optional extras such as MCFG.
//
// The tables have one source of truth, Tables: independent blobs plus the
// pointer fields and checksum fields that link them, the same model as QEMU's
// fw_cfg table-loader (ALLOCATE / ADD_POINTER / ADD_CHECKSUM). WriteTo places
// the blobs at fixed guest-physical addresses for direct kernel boot;
// LoaderScript hands the same blobs to firmware that places them itself.
package acpi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Sentinel errors callers can branch on.
var (
	// ErrTooLarge is returned when the blobs do not fit the area given to WriteTo.
	ErrTooLarge = errors.New("acpi: tables do not fit")
	// ErrInvalid is returned for a Tables value whose pointers or checksums
	// do not match its blobs, or a Config that cannot be described.
	ErrInvalid = errors.New("acpi: invalid tables")
)

// Blob is one independently placed piece of memory: an ACPI table or the RSDP.
type Blob struct {
	// Name identifies the blob to pointers and checksums and names its fw_cfg
	// file; it is the table's signature ("RSDP", "FACP", "DSDT", ...).
	Name string
	// Data is the blob's content with pointer fields holding offsets into
	// their targets (usually 0) and checksum fields zero.
	Data []byte
	// Align is the guest-physical alignment the blob needs (a power of two).
	Align uint64
	// Low marks a blob the OS looks for in the BIOS area below 1 MiB (the
	// RSDP); firmware allocates it in the F-segment.
	Low bool
}

// Pointer is a field in one blob that holds the guest-physical address of
// another: the field's initial little-endian value is an offset into Target,
// and Target's address is added to it.
type Pointer struct {
	Blob   string // blob holding the field
	Offset int    // of the field within Blob
	Size   int    // 4 or 8 bytes
	Target string // blob pointed to
}

// Checksum is a byte in a blob set so that Data[Start:Start+Length] sums to
// zero. It lies inside that range and is zero until computed.
type Checksum struct {
	Blob          string
	Offset        int
	Start, Length int
}

// Tables is a complete set of blobs. Checksums are computed in order, after
// all pointers are patched (the RSDP's first checksum before its extended one).
type Tables struct {
	Blobs     []Blob
	Pointers  []Pointer
	Checksums []Checksum
}

// RSDPName is the Name of the RSDP blob.
const RSDPName = "RSDP"

// Blob returns the blob called name.
func (t *Tables) Blob(name string) (Blob, bool) {
	for _, b := range t.Blobs {
		if b.Name == name {
			return b, true
		}
	}
	return Blob{}, false
}

// Validate checks that every pointer and checksum lies inside its blob and
// names blobs that exist.
func (t *Tables) Validate() error {
	sizes := make(map[string]int, len(t.Blobs))
	for _, b := range t.Blobs {
		if b.Name == "" {
			return fmt.Errorf("%w: blob without a name", ErrInvalid)
		}
		if _, dup := sizes[b.Name]; dup {
			return fmt.Errorf("%w: two blobs named %q", ErrInvalid, b.Name)
		}
		if b.Align == 0 || b.Align&(b.Align-1) != 0 {
			return fmt.Errorf("%w: blob %q: alignment %d is not a power of two", ErrInvalid, b.Name, b.Align)
		}
		sizes[b.Name] = len(b.Data)
	}
	if _, ok := sizes[RSDPName]; !ok {
		return fmt.Errorf("%w: no %s blob", ErrInvalid, RSDPName)
	}
	for _, p := range t.Pointers {
		n, ok := sizes[p.Blob]
		if _, tok := sizes[p.Target]; !ok || !tok {
			return fmt.Errorf("%w: pointer %s+%d -> %s names a missing blob", ErrInvalid, p.Blob, p.Offset, p.Target)
		}
		if p.Size != 4 && p.Size != 8 {
			return fmt.Errorf("%w: pointer %s+%d has size %d, want 4 or 8", ErrInvalid, p.Blob, p.Offset, p.Size)
		}
		if p.Offset < 0 || p.Offset > n-p.Size {
			return fmt.Errorf("%w: pointer %s+%d outside its %d-byte blob", ErrInvalid, p.Blob, p.Offset, n)
		}
	}
	for _, c := range t.Checksums {
		n, ok := sizes[c.Blob]
		if !ok {
			return fmt.Errorf("%w: checksum in missing blob %q", ErrInvalid, c.Blob)
		}
		if c.Start < 0 || c.Length < 0 || c.Start > n-c.Length || c.Offset < c.Start || c.Offset >= c.Start+c.Length {
			return fmt.Errorf("%w: checksum %s+%d over [%d, +%d) outside its %d-byte blob or range",
				ErrInvalid, c.Blob, c.Offset, c.Start, c.Length, n)
		}
	}
	return nil
}

// Place assigns each blob an address: in order, from base, each aligned. It
// fails with ErrTooLarge if the last one ends past limit.
func (t *Tables) Place(base, limit uint64) (map[string]uint64, error) {
	addrs := make(map[string]uint64, len(t.Blobs))
	next := base
	for _, b := range t.Blobs {
		at := (next + b.Align - 1) &^ (b.Align - 1)
		if at < next || at > limit || uint64(len(b.Data)) > limit-at {
			return nil, fmt.Errorf("%w: blob %s (%d bytes) past %#x in [%#x, %#x)", ErrTooLarge, b.Name, len(b.Data), next, base, limit)
		}
		addrs[b.Name] = at
		next = at + uint64(len(b.Data))
	}
	return addrs, nil
}

// Link returns copies of the blobs with pointers patched for the given
// addresses and checksums computed: what ends up in guest memory.
func (t *Tables) Link(addrs map[string]uint64) (map[string][]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(t.Blobs))
	for _, b := range t.Blobs {
		if _, ok := addrs[b.Name]; !ok {
			return nil, fmt.Errorf("%w: blob %s has no address", ErrInvalid, b.Name)
		}
		out[b.Name] = append([]byte(nil), b.Data...)
	}
	for _, p := range t.Pointers {
		field := out[p.Blob][p.Offset : p.Offset+p.Size]
		if p.Size == 4 {
			v := uint64(binary.LittleEndian.Uint32(field)) + addrs[p.Target]
			if v > 0xffffffff {
				return nil, fmt.Errorf("%w: 32-bit pointer %s+%d cannot hold %s at %#x", ErrTooLarge, p.Blob, p.Offset, p.Target, v)
			}
			binary.LittleEndian.PutUint32(field, uint32(v))
			continue
		}
		binary.LittleEndian.PutUint64(field, binary.LittleEndian.Uint64(field)+addrs[p.Target])
	}
	for _, c := range t.Checksums {
		data := out[c.Blob]
		data[c.Offset] = 0
		data[c.Offset] = checksum(data[c.Start : c.Start+c.Length])
	}
	return out, nil
}

// WriteTo places the blobs from base (below limit), links them and writes
// them into guest memory; it returns the RSDP's guest-physical address.
func (t *Tables) WriteTo(mem io.WriterAt, base, limit uint64) (rsdp uint64, err error) {
	if err := t.Validate(); err != nil {
		return 0, err
	}
	addrs, err := t.Place(base, limit)
	if err != nil {
		return 0, err
	}
	linked, err := t.Link(addrs)
	if err != nil {
		return 0, err
	}
	for _, b := range t.Blobs {
		if _, err := mem.WriteAt(linked[b.Name], int64(addrs[b.Name])); err != nil {
			return 0, fmt.Errorf("acpi: writing %s (%d bytes) at %#x: %w", b.Name, len(b.Data), addrs[b.Name], err)
		}
	}
	return addrs[RSDPName], nil
}

// checksum returns the byte that makes b, whose checksum byte is zero, sum to zero.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}
