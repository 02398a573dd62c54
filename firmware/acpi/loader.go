package acpi

import (
	"encoding/binary"
	"fmt"
)

// QEMU's fw_cfg table-loader interface (docs/specs/fw_cfg and
// hw/acpi/bios-linker-loader.c): firmware reads the file "etc/table-loader",
// an array of 128-byte commands, and runs them against the fw_cfg files
// holding the blobs.
const (
	// LoaderFile is the fw_cfg file holding LoaderScript's output.
	LoaderFile = "etc/table-loader"
	// FilePrefix prefixes a blob's name to make its fw_cfg file name.
	FilePrefix = "etc/acpi/"

	loaderEntrySize = 128
	loaderNameSize  = 56

	cmdAllocate    = 1
	cmdAddPointer  = 2
	cmdAddChecksum = 3

	zoneHigh = 1 // anywhere in 32-bit memory
	zoneFSeg = 2 // the F-segment, where the OS scans for the RSDP
)

// FileName is the fw_cfg file name that serves the blob called name.
func FileName(name string) string { return FilePrefix + name }

// LoaderScript encodes the commands that make firmware allocate every blob
// (served as FileName(blob.Name)), patch the pointers and compute the
// checksums: the fw_cfg form of what WriteTo does.
func (t *Tables) LoaderScript() ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	out := make([]byte, 0, loaderEntrySize*(len(t.Blobs)+len(t.Pointers)+len(t.Checksums)))
	// entry appends a zeroed command and returns its argument area to fill
	// in before the next call.
	entry := func(cmd uint32) []byte {
		out = binary.LittleEndian.AppendUint32(out, cmd)
		out = append(out, make([]byte, loaderEntrySize-4)...)
		return out[len(out)-loaderEntrySize+4:]
	}
	name := func(dst []byte, blob string) error {
		f := FileName(blob)
		if len(f) >= loaderNameSize {
			return fmt.Errorf("%w: fw_cfg file name %q longer than %d bytes", ErrInvalid, f, loaderNameSize-1)
		}
		copy(dst[:loaderNameSize], f)
		return nil
	}
	for _, b := range t.Blobs {
		e := entry(cmdAllocate)
		if err := name(e, b.Name); err != nil {
			return nil, err
		}
		if b.Align > 0xffffffff {
			return nil, fmt.Errorf("%w: blob %s alignment %d", ErrInvalid, b.Name, b.Align)
		}
		binary.LittleEndian.PutUint32(e[loaderNameSize:], uint32(b.Align))
		e[loaderNameSize+4] = zoneHigh
		if b.Low {
			e[loaderNameSize+4] = zoneFSeg
		}
	}
	for _, p := range t.Pointers {
		e := entry(cmdAddPointer)
		if err := name(e, p.Blob); err != nil {
			return nil, err
		}
		if err := name(e[loaderNameSize:], p.Target); err != nil {
			return nil, err
		}
		binary.LittleEndian.PutUint32(e[2*loaderNameSize:], uint32(p.Offset))
		e[2*loaderNameSize+4] = byte(p.Size)
	}
	for _, c := range t.Checksums {
		e := entry(cmdAddChecksum)
		if err := name(e, c.Blob); err != nil {
			return nil, err
		}
		binary.LittleEndian.PutUint32(e[loaderNameSize:], uint32(c.Offset))
		binary.LittleEndian.PutUint32(e[loaderNameSize+4:], uint32(c.Start))
		binary.LittleEndian.PutUint32(e[loaderNameSize+8:], uint32(c.Length))
	}
	return out, nil
}
