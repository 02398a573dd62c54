package acpi

import (
	"encoding/binary"
	"testing"

	"github.com/vmmdev/vmm/layout"
)

func TestPCFADT(t *testing.T) {
	tables, err := Build(Config{CPUs: 1, PM: &PMBlock{Base: 0x600}})
	if err != nil {
		t.Fatal(err)
	}
	f, ok := tables.Blob("FACP")
	if !ok {
		t.Fatal("no FACP")
	}
	b := f.Data
	if binary.LittleEndian.Uint32(b[fadtFlags:])&flagHWReducedACPI != 0 {
		t.Fatal("a PC FADT must not be hardware-reduced")
	}
	for _, c := range []struct {
		off, xoff, lenOff int
		port              uint32
		n                 byte
	}{{fadtPM1aEvtBlk, fadtXPM1aEvtBlk, fadtPM1EvtLen, 0x600, 4}, {fadtPM1aCntBlk, fadtXPM1aCntBlk, fadtPM1CntLen, 0x604, 2},
		{fadtPMTmrBlk, fadtXPMTmrBlk, fadtPMTmrLen, 0x608, 4}} {
		if got := binary.LittleEndian.Uint32(b[c.off:]); got != c.port || b[c.lenOff] != c.n {
			t.Errorf("block at %d: port %#x len %d", c.off, got, b[c.lenOff])
		}
		if b[c.xoff] != gasSystemIO || uint32(binary.LittleEndian.Uint64(b[c.xoff+4:])) != c.port {
			t.Errorf("X block at %d disagrees", c.xoff)
		}
	}
	if binary.LittleEndian.Uint64(b[fadtSleepControl+4:]) != 0 {
		t.Error("a PC FADT names hardware-reduced sleep registers")
	}
	if binary.LittleEndian.Uint16(b[fadtSCIInt:]) != layout.SCIIRQ {
		t.Error("SCI")
	}
	facs, ok := tables.Blob("FACS")
	if !ok || string(facs.Data[:4]) != "FACS" || len(facs.Data) != facsLength || facs.Align < 64 {
		t.Fatalf("FACS blob %v", ok)
	}
	found := false
	for _, p := range tables.Pointers {
		found = found || (p.Blob == "FACP" && p.Offset == fadtFirmwareCtrl && p.Target == "FACS" && p.Size == 4)
		if p.Blob == "FACP" && p.Offset == fadtXFirmwareCtl {
			t.Error("X_FIRMWARE_CTRL set: SeaBIOS reads FIRMWARE_CTRL, and ACPI wants only one of the two")
		}
	}
	if !found {
		t.Fatal("no FIRMWARE_CTRL pointer to the FACS")
	}
	// Placed directly, the pointer resolves and the FADT's checksum holds.
	mem := make(memBuf, 0x20000)
	if _, err := tables.WriteTo(mem, 0, 0x20000); err != nil {
		t.Fatal(err)
	}
	addrs, err := tables.Place(0, 0x20000)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := binary.LittleEndian.Uint32(mem[addrs["FACP"]+fadtFirmwareCtrl:]), addrs["FACS"]; uint64(got) != want || want == 0 {
		t.Errorf("FIRMWARE_CTRL %#x, FACS at %#x", got, want)
	}

	reduced, err := Build(Config{CPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := reduced.Blob("FACS"); ok {
		t.Fatal("hardware-reduced tables carry a FACS")
	}
}

// memBuf is guest memory starting at address 0.
type memBuf []byte

func (m memBuf) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }
