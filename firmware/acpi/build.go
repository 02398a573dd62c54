package acpi

import (
	"encoding/binary"
	"fmt"

	"github.com/vmmdev/vmm/firmware/acpi/aml"
)

// Identity written into every table header.
const (
	OEMID           = "VMMDEV"
	creatorID       = "VMMD"
	oemRevision     = 1
	creatorRevision = 1
	headerSize      = 36
)

// MaxCPUs is the most CPUs the tables describe with 8-bit xAPIC ids: 0xff is
// the broadcast id and the IOAPIC takes the id after the last CPU.
const MaxCPUs = 254

// SDT is a System Description Table before placement: the 36-byte header is
// generated from Signature and Revision; Body is everything after it.
type SDT struct {
	Signature string
	Revision  byte
	Body      []byte
}

// Bytes returns the table with its header: length filled in, checksum zero.
func (s SDT) Bytes() ([]byte, error) {
	if len(s.Signature) != 4 {
		return nil, fmt.Errorf("%w: signature %q must have 4 characters", ErrInvalid, s.Signature)
	}
	n := headerSize + len(s.Body)
	if n > 0xffffffff {
		return nil, fmt.Errorf("%w: table %s is %d bytes", ErrTooLarge, s.Signature, n)
	}
	b := make([]byte, headerSize, n)
	copy(b[0:4], s.Signature)
	binary.LittleEndian.PutUint32(b[4:], uint32(n))
	b[8] = s.Revision
	copy(b[10:16], OEMID)
	copy(b[16:24], fmt.Sprintf("%-8s", "VMM"+s.Signature))
	binary.LittleEndian.PutUint32(b[24:], oemRevision)
	copy(b[28:32], creatorID)
	binary.LittleEndian.PutUint32(b[32:], creatorRevision)
	return append(b, s.Body...), nil
}

// Config describes the machine the tables present.
type Config struct {
	// CPUs is the number of vCPUs; APIC ids and ACPI processor UIDs are 0..CPUs-1.
	CPUs int
	// Devices are extra AML terms placed in the DSDT's \_SB scope, e.g. a PCI
	// root bridge built with package aml.
	Devices []aml.Term
	// Extra are further tables the XSDT lists (MCFG, HPET, SSDT, ...).
	Extra []SDT
	// PM, when set, describes a PC with an ACPI PM block (firmware mode,
	// where the firmware uses the 8259 and leaves it running: a
	// hardware-reduced FADT would tell the OS there is none, and it would
	// never mask it). Nil gives hardware-reduced ACPI.
	PM *PMBlock
}

// Build makes the tables for cfg, ready for WriteTo or LoaderScript.
func Build(cfg Config) (*Tables, error) {
	if cfg.CPUs < 1 || cfg.CPUs > MaxCPUs {
		return nil, fmt.Errorf("%w: %d CPUs, want 1 to %d", ErrInvalid, cfg.CPUs, MaxCPUs)
	}
	t := &Tables{}
	// The RSDP goes first so that WriteTo at a 16-byte aligned base puts it
	// where the OS's scan of the BIOS area starts.
	t.Blobs = append(t.Blobs, Blob{Name: RSDPName, Data: rsdp(), Align: 16, Low: true})
	t.Pointers = append(t.Pointers, Pointer{Blob: RSDPName, Offset: rsdpXSDTOffset, Size: 8, Target: "XSDT"})
	t.Checksums = append(t.Checksums,
		Checksum{Blob: RSDPName, Offset: 8, Start: 0, Length: 20},
		Checksum{Blob: RSDPName, Offset: 32, Start: 0, Length: rsdpLength})

	listed := append([]SDT{fadt(cfg.PM), madt(cfg.CPUs)}, cfg.Extra...)
	xsdt := SDT{Signature: "XSDT", Revision: 1, Body: make([]byte, 8*len(listed))}
	dsdt := SDT{Signature: "DSDT", Revision: 2, Body: dsdtBody(cfg)}

	var names []string
	for _, s := range append([]SDT{xsdt, dsdt}, listed...) {
		name := uniqueName(t, s.Signature)
		data, err := s.Bytes()
		if err != nil {
			return nil, err
		}
		t.Blobs = append(t.Blobs, Blob{Name: name, Data: data, Align: 16})
		t.Checksums = append(t.Checksums, Checksum{Blob: name, Offset: 9, Start: 0, Length: len(data)})
		names = append(names, name)
	}
	for i, target := range names[2:] {
		t.Pointers = append(t.Pointers, Pointer{Blob: "XSDT", Offset: headerSize + 8*i, Size: 8, Target: target})
	}
	t.Pointers = append(t.Pointers, Pointer{Blob: "FACP", Offset: fadtXDSDT, Size: 8, Target: "DSDT"})
	if cfg.PM != nil {
		t.Blobs = append(t.Blobs, Blob{Name: "FACS", Data: facs(), Align: 64})
		// The 32-bit FIRMWARE_CTRL, X_FIRMWARE_CTRL left 0 (ACPI allows one
		// of the two), as QEMU does: SeaBIOS finds the waking vector on
		// resume through FIRMWARE_CTRL only. The FACS is always below 4 GiB.
		t.Pointers = append(t.Pointers, Pointer{Blob: "FACP", Offset: fadtFirmwareCtrl, Size: 4, Target: "FACS"})
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// uniqueName is sig, or sig.N when another blob already has it (two SSDTs).
func uniqueName(t *Tables, sig string) string {
	name := sig
	for n := 1; ; n++ {
		if _, taken := t.Blob(name); !taken {
			return name
		}
		name = fmt.Sprintf("%s.%d", sig, n)
	}
}

// RSDP layout (ACPI 6.5 §5.2.5.3).
const (
	rsdpLength     = 36
	rsdpXSDTOffset = 24
)

func rsdp() []byte {
	b := make([]byte, rsdpLength)
	copy(b[0:8], "RSD PTR ")
	copy(b[9:15], OEMID)
	b[15] = 2 // ACPI 2.0+: XSDT and extended checksum
	binary.LittleEndian.PutUint32(b[20:], rsdpLength)
	return b
}
