package acpi

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runLoader executes a table-loader script the way SeaBIOS does
// (romfile_loader_execute): allocate each file at the next aligned address of
// its zone, add the pointee's address to pointer fields, subtract the range's
// sum from checksum bytes. It returns the files by fw_cfg name and their
// addresses.
func runLoader(t *testing.T, script []byte, files map[string][]byte) (map[string][]byte, map[string]uint64, map[string]byte) {
	t.Helper()
	require.Zero(t, len(script)%loaderEntrySize)
	mem := map[string][]byte{}
	addrs := map[string]uint64{}
	zones := map[string]byte{}
	next := map[byte]uint64{zoneHigh: 0x7ffe0000, zoneFSeg: 0xf5000}
	str := func(b []byte) string { return strings.TrimRight(string(b[:loaderNameSize]), "\x00") }
	for off := 0; off < len(script); off += loaderEntrySize {
		e := script[off : off+loaderEntrySize]
		cmd, arg := binary.LittleEndian.Uint32(e), e[4:]
		switch cmd {
		case cmdAllocate:
			name := str(arg)
			data, ok := files[name]
			require.True(t, ok, "ALLOCATE of unknown file %q", name)
			align := uint64(binary.LittleEndian.Uint32(arg[loaderNameSize:]))
			zone := arg[loaderNameSize+4]
			require.Contains(t, next, zone)
			at := (next[zone] + align - 1) &^ (align - 1)
			next[zone] = at + uint64(len(data))
			mem[name], addrs[name], zones[name] = append([]byte(nil), data...), at, zone
		case cmdAddPointer:
			dst, src := str(arg), str(arg[loaderNameSize:])
			offset := int(binary.LittleEndian.Uint32(arg[2*loaderNameSize:]))
			size := int(arg[2*loaderNameSize+4])
			require.Contains(t, mem, dst)
			require.Contains(t, addrs, src)
			field := mem[dst][offset : offset+size]
			var v [8]byte
			copy(v[:], field)
			copy(field, binary.LittleEndian.AppendUint64(nil, binary.LittleEndian.Uint64(v[:])+addrs[src])[:size])
		case cmdAddChecksum:
			name := str(arg)
			offset := int(binary.LittleEndian.Uint32(arg[loaderNameSize:]))
			start := int(binary.LittleEndian.Uint32(arg[loaderNameSize+4:]))
			length := int(binary.LittleEndian.Uint32(arg[loaderNameSize+8:]))
			require.Contains(t, mem, name)
			mem[name][offset] -= sum(mem[name][start : start+length])
		default:
			t.Fatalf("unknown loader command %d", cmd)
		}
	}
	return mem, addrs, zones
}

// TestLoaderScript checks that firmware running the script ends up with the
// same bytes WriteTo's linking produces for the same addresses.
func TestLoaderScript(t *testing.T) {
	tables, err := Build(fullConfig(t))
	require.NoError(t, err)
	script, err := tables.LoaderScript()
	require.NoError(t, err)
	assert.Len(t, script, loaderEntrySize*(len(tables.Blobs)+len(tables.Pointers)+len(tables.Checksums)))

	files := map[string][]byte{}
	for _, b := range tables.Blobs {
		files[FileName(b.Name)] = b.Data
	}
	got, fwAddrs, zones := runLoader(t, script, files)
	require.Len(t, got, len(tables.Blobs))
	assert.Equal(t, byte(zoneFSeg), zones["etc/acpi/RSDP"], "RSDP in the F-segment")
	assert.Equal(t, byte(zoneHigh), zones["etc/acpi/DSDT"])

	addrs := map[string]uint64{}
	for _, b := range tables.Blobs {
		addrs[b.Name] = fwAddrs[FileName(b.Name)]
		assert.Zero(t, addrs[b.Name]%b.Align, "%s aligned", b.Name)
	}
	want, err := tables.Link(addrs)
	require.NoError(t, err)
	for _, b := range tables.Blobs {
		assert.True(t, bytes.Equal(want[b.Name], got[FileName(b.Name)]), "blob %s differs", b.Name)
	}
	// The firmware's RSDP points at the firmware's XSDT.
	rsdp := got["etc/acpi/RSDP"]
	assert.Equal(t, fwAddrs["etc/acpi/XSDT"], binary.LittleEndian.Uint64(rsdp[24:]))
	assert.Zero(t, sum(rsdp[:20]))
	assert.Zero(t, sum(rsdp))
}

func TestLoaderScriptErrors(t *testing.T) {
	long := &Tables{Blobs: []Blob{{Name: RSDPName, Data: make([]byte, 36), Align: 16}, {Name: strings.Repeat("X", 60), Data: []byte{1}, Align: 1}}}
	_, err := long.LoaderScript()
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = (&Tables{}).LoaderScript()
	assert.ErrorIs(t, err, ErrInvalid, "no RSDP")
}
