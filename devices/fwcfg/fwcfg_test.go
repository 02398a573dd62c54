package fwcfg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// fakeMem is guest RAM of a given size at address 0.
type fakeMem struct{ b []byte }

var errOutside = errors.New("outside RAM")

func (m *fakeMem) ReadAt(p []byte, gpa int64) (int, error) {
	if gpa < 0 || uint64(gpa)+uint64(len(p)) > uint64(len(m.b)) {
		return 0, errOutside
	}
	return copy(p, m.b[gpa:]), nil
}

func (m *fakeMem) WriteAt(p []byte, gpa int64) (int, error) {
	if gpa < 0 || uint64(gpa)+uint64(len(p)) > uint64(len(m.b)) {
		return 0, errOutside
	}
	return copy(m.b[gpa:], p), nil
}

func selectKey(d *Device, key uint16) {
	d.Write(offSelector, binary.LittleEndian.AppendUint16(nil, key))
}

func readData(d *Device, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		b := []byte{0}
		d.Read(offData, b)
		out[i] = b[0]
	}
	return out
}

func TestSignatureAndID(t *testing.T) {
	d := New(&fakeMem{make([]byte, 4096)})
	selectKey(d, Signature)
	if got := readData(d, 4); string(got) != "QEMU" {
		t.Fatalf("signature %q", got)
	}
	selectKey(d, ID)
	if got := binary.LittleEndian.Uint32(readData(d, 4)); got != IDTraditional|IDDMA {
		t.Fatalf("id %#x", got)
	}
	sig := make([]byte, 8)
	d.Read(offDMA, sig)
	if string(sig) != "QEMU CFG" {
		t.Fatalf("DMA register reads %q", sig)
	}
}

func TestSelectorResetsOffsetAndPastEndReadsZero(t *testing.T) {
	d := New(&fakeMem{make([]byte, 4096)})
	if err := d.AddUint16(NBCPUs, 3); err != nil {
		t.Fatal(err)
	}
	selectKey(d, NBCPUs)
	if got := readData(d, 4); !bytes.Equal(got, []byte{3, 0, 0, 0}) {
		t.Fatalf("read past end %v", got)
	}
	selectKey(d, NBCPUs)
	if got := readData(d, 1); got[0] != 3 {
		t.Fatalf("reselect did not rewind: %v", got)
	}
	// The legacy write bit in the selector still selects the item.
	selectKey(d, NBCPUs|writeBit)
	if got := readData(d, 1); got[0] != 3 {
		t.Fatalf("selector with write bit: %v", got)
	}
	selectKey(d, 0x1234)
	if got := readData(d, 2); !bytes.Equal(got, []byte{0, 0}) {
		t.Fatalf("absent item reads %v", got)
	}
	// Data port writes are ignored.
	selectKey(d, NBCPUs)
	d.Write(offData, []byte{9})
	selectKey(d, NBCPUs)
	if got := readData(d, 1); got[0] != 3 {
		t.Fatalf("data port write changed the item: %v", got)
	}
}

func TestAddRejects(t *testing.T) {
	d := New(&fakeMem{nil})
	if err := d.AddItem(FileDir, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("FileDir: %v", err)
	}
	if err := d.AddItem(FirstFile+1, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("file key: %v", err)
	}
	if err := d.AddFile("", nil, false); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty name: %v", err)
	}
	if err := d.AddFile(string(make([]byte, FileNameSize)), nil, false); !errors.Is(err, ErrInvalid) {
		t.Fatalf("long name: %v", err)
	}
	if err := d.AddFile("a", nil, false); err != nil {
		t.Fatal(err)
	}
	if err := d.AddFile("a", nil, false); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestFileDirectory(t *testing.T) {
	d := New(&fakeMem{nil})
	for _, f := range []struct{ name, data string }{{"zeta", "zz"}, {"etc/e820", "0123456789"}, {"bootorder", ""}} {
		if err := d.AddFile(f.name, []byte(f.data), false); err != nil {
			t.Fatal(err)
		}
	}
	selectKey(d, FileDir)
	dir := readData(d, 4+3*64)
	if n := binary.BigEndian.Uint32(dir); n != 3 {
		t.Fatalf("count %d", n)
	}
	want := []struct {
		name string
		size uint32
		key  uint16
	}{{"bootorder", 0, FirstFile + 2}, {"etc/e820", 10, FirstFile + 1}, {"zeta", 2, FirstFile}}
	for i, w := range want {
		e := dir[4+64*i:]
		name := string(bytes.TrimRight(e[8:64], "\x00"))
		if name != w.name || binary.BigEndian.Uint32(e) != w.size || binary.BigEndian.Uint16(e[4:]) != w.key || e[6] != 0 || e[7] != 0 {
			t.Errorf("entry %d: name %q size %d key %#x", i, name, binary.BigEndian.Uint32(e), binary.BigEndian.Uint16(e[4:]))
		}
	}
	selectKey(d, FirstFile+1)
	if got := readData(d, 10); string(got) != "0123456789" {
		t.Fatalf("file by key: %q", got)
	}
}

// descriptor writes a DMA descriptor at at.
func descriptor(m *fakeMem, at uint64, control, length uint32, addr uint64) {
	binary.BigEndian.PutUint32(m.b[at:], control)
	binary.BigEndian.PutUint32(m.b[at+4:], length)
	binary.BigEndian.PutUint64(m.b[at+8:], addr)
}

func status(m *fakeMem, at uint64) uint32 { return binary.BigEndian.Uint32(m.b[at:]) }

// dma starts the transfer the way SeaBIOS does: high half, then low half.
func dma(d *Device, at uint64) {
	d.Write(offDMA, binary.BigEndian.AppendUint32(nil, uint32(at>>32)))
	d.Write(offDMA+4, binary.BigEndian.AppendUint32(nil, uint32(at)))
}

func TestDMAReadSelectSkip(t *testing.T) {
	m := &fakeMem{make([]byte, 8192)}
	d := New(m)
	if err := d.AddFile("f", []byte("hello, firmware"), false); err != nil {
		t.Fatal(err)
	}
	// Select and skip 7 bytes, then read 8 (and 4 more past the end: zeros).
	descriptor(m, 0x100, uint32(FirstFile)<<16|DMASelect|DMASkip, 7, 0)
	dma(d, 0x100)
	if s := status(m, 0x100); s != 0 {
		t.Fatalf("skip status %#x", s)
	}
	copy(m.b[0x1000:], "XXXXXXXXXXXXXXXX")
	descriptor(m, 0x100, DMARead, 12, 0x1000)
	// The 8-byte register write also starts a transfer.
	d.Write(offDMA, binary.BigEndian.AppendUint64(nil, 0x100))
	if s := status(m, 0x100); s != 0 {
		t.Fatalf("read status %#x", s)
	}
	if got := string(m.b[0x1000:0x1010]); got != "firmware\x00\x00\x00\x00XXXX" {
		t.Fatalf("read %q", got)
	}
	// A control word with no operation does nothing and succeeds.
	descriptor(m, 0x100, 0, 4, 0x1000)
	dma(d, 0x100)
	if s := status(m, 0x100); s != 0 {
		t.Fatalf("no-op status %#x", s)
	}
}

func TestDMAWrite(t *testing.T) {
	m := &fakeMem{make([]byte, 8192)}
	d := New(m)
	if err := d.AddFile("ro", []byte("read-only"), false); err != nil {
		t.Fatal(err)
	}
	if err := d.AddFile("rw", []byte("12345678"), true); err != nil {
		t.Fatal(err)
	}
	copy(m.b[0x1000:], "abcdefghijkl")
	descriptor(m, 0x100, uint32(FirstFile)<<16|DMASelect|DMAWrite, 4, 0x1000)
	dma(d, 0x100)
	if s := status(m, 0x100); s != DMAError {
		t.Fatalf("write to read-only item: status %#x", s)
	}
	if got, _ := d.File("ro"); string(got) != "read-only" {
		t.Fatalf("read-only item changed: %q", got)
	}
	descriptor(m, 0x100, uint32(FirstFile+1)<<16|DMASelect|DMAWrite, 4, 0x1000)
	dma(d, 0x100)
	if s := status(m, 0x100); s != 0 {
		t.Fatalf("write status %#x", s)
	}
	if got, _ := d.File("rw"); string(got) != "abcd5678" {
		t.Fatalf("written item %q", got)
	}
	// A write longer than what is left of the item fails as a whole.
	descriptor(m, 0x100, DMAWrite, 8, 0x1000)
	dma(d, 0x100)
	if s := status(m, 0x100); s != DMAError {
		t.Fatalf("overlong write: status %#x", s)
	}
	if got, _ := d.File("rw"); string(got) != "abcd5678" {
		t.Fatalf("overlong write changed the item: %q", got)
	}
}

func TestDMAHostile(t *testing.T) {
	m := &fakeMem{make([]byte, 8192)}
	d := New(m)
	if err := d.AddFile("f", bytes.Repeat([]byte{0xaa}, 100), false); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		control uint32
		length  uint32
		addr    uint64
	}{
		{"read to outside RAM", uint32(FirstFile)<<16 | DMASelect | DMARead, 16, 1 << 40},
		{"read straddling the end of RAM", uint32(FirstFile)<<16 | DMASelect | DMARead, 64, 8192 - 8},
		{"oversized read zero-fill", uint32(FirstFile)<<16 | DMASelect | DMARead, 0xffffffff, 0x1000},
		{"read at a wrapping address", uint32(FirstFile)<<16 | DMASelect | DMARead, 16, 0xfffffffffffffff8},
		{"write to absent item", 0x1234<<16 | DMASelect | DMAWrite, 16, 0x1000},
		{"read of absent item outside RAM", 0x1234<<16 | DMASelect | DMARead, 16, 1 << 40},
	}
	for _, c := range cases {
		descriptor(m, 0x100, c.control, c.length, c.addr)
		dma(d, 0x100)
		if s := status(m, 0x100); s != DMAError {
			t.Errorf("%s: status %#x, want the error bit", c.name, s)
		}
	}
	// A descriptor outside RAM: nothing to read or report into; RAM untouched.
	before := append([]byte(nil), m.b...)
	dma(d, 1<<40)
	dma(d, 8192-2)
	d.Write(offDMA, binary.BigEndian.AppendUint64(nil, ^uint64(0)))
	if !bytes.Equal(before, m.b) {
		t.Fatal("a descriptor outside RAM changed memory")
	}
}
