// Package smbios builds the SMBIOS (DMTF DSP0134) structure table and its
// 3.0 64-bit entry point the way QEMU hands them to firmware over fw_cfg
// ("etc/smbios/smbios-anchor" and "etc/smbios/smbios-tables"): the
// firmware copies the table into guest memory, patches the entry point's
// table address and checksum, and adds its own BIOS (type 0) structure
// when the table has none, as SeaBIOS and OVMF both do.
package smbios

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// The fw_cfg file names firmware looks the two blobs up by.
const (
	AnchorFile = "etc/smbios/smbios-anchor"
	TablesFile = "etc/smbios/smbios-tables"
)

// Structure types this package emits.
const (
	TypeBIOS                  = 0
	TypeSystem                = 1
	TypeChassis               = 3
	TypeProcessor             = 4
	TypeMemoryArray           = 16
	TypeMemoryDevice          = 17
	TypeMemoryArrayMap        = 19
	TypeSystemBoot            = 32
	TypeEndOfTable            = 127
	entryPointLen             = 24
	maxDeviceSize      uint64 = 16 << 30 // RAM is described as DIMMs of at most 16 GiB, as QEMU does
)

// Handle bases per structure type, spaced as QEMU spaces them so a table
// dump from either VMM reads the same.
const (
	handleBIOS        = 0x0000
	handleSystem      = 0x0100
	handleChassis     = 0x0300
	handleProcessor   = 0x0400
	handleMemoryArray = 0x1000
	handleMemoryDev   = 0x1100
	handleArrayMap    = 0x1300
	handleSystemBoot  = 0x2000
	handleEnd         = 0x7F00
	handleNone        = 0xFFFF // "no such structure" in handle fields
	handleNoErrorInfo = 0xFFFE // "error information not provided"
)

// Errors callers can branch on.
var (
	ErrNoCPUs      = errors.New("smbios: at least one CPU is required")
	ErrTooManyCPUs = errors.New("smbios: too many CPUs for the handle space")
	ErrNoMemory    = errors.New("smbios: no memory regions")
	ErrBadRegion   = errors.New("smbios: memory region not KiB-aligned, empty or overlapping")
	ErrBadString   = errors.New("smbios: string contains NUL or is too long")
)

// Region is one range of guest RAM, in bytes.
type Region struct {
	Base, Size uint64
}

// BIOS describes the type 0 structure. Leave Config.BIOS nil to let the
// firmware write its own, which is what QEMU does for SeaBIOS.
type BIOS struct {
	Vendor, Version, ReleaseDate string
}

// Config is what the tables describe.
type Config struct {
	// CPUs is the number of vCPUs; each gets one type 4 structure
	// (one socket, one core, one thread).
	CPUs int
	// Memory lists the guest's RAM ranges, ascending, KiB-aligned and
	// adding up to whole MiB: the RAM below the PCI hole and the RAM above
	// 4 GiB, as QEMU describes them (not the e820 holes below 1 MiB).
	Memory []Region
	// UUID is the system UUID in RFC 4122 byte order; it is stored in
	// SMBIOS's mixed-endian encoding (spec 2.6+: first three fields
	// little-endian).
	UUID [16]byte
	// Manufacturer defaults to "vmm"; Product to "vmm virtual machine".
	Manufacturer, Product, Version, Serial, Family string
	// CPUManufacturer and CPUVersion name the processor (CPUID vendor
	// and brand string); CPUSignature and CPUFeatures are CPUID.1 EAX and
	// EDX, stored as the type 4 Processor ID.
	CPUManufacturer, CPUVersion string
	CPUSignature, CPUFeatures   uint32
	// BIOS, when set, adds a type 0 structure.
	BIOS *BIOS
}

// Build returns the 24-byte SMBIOS 3.0 entry point and the structure table.
// The entry point's table address is 0 and its checksum covers that: the
// firmware rewrites both after placing the table.
func Build(c Config) (anchor, table []byte, err error) {
	if c.CPUs < 1 {
		return nil, nil, ErrNoCPUs
	}
	if c.CPUs > handleMemoryArray-handleProcessor {
		return nil, nil, fmt.Errorf("%w: %d", ErrTooManyCPUs, c.CPUs)
	}
	total, err := checkMemory(c.Memory)
	if err != nil {
		return nil, nil, err
	}
	if c.Manufacturer == "" {
		c.Manufacturer = "vmm"
	}
	if c.Product == "" {
		c.Product = "vmm virtual machine"
	}
	var w writer
	if c.BIOS != nil {
		w.biosInfo(*c.BIOS)
	}
	w.system(c)
	w.chassis(c)
	for i := 0; i < c.CPUs; i++ {
		w.processor(c, i)
	}
	w.memory(c.Memory, total)
	w.systemBoot()
	w.end()
	if w.err != nil {
		return nil, nil, w.err
	}
	return EntryPoint(len(w.buf), 0), w.buf, nil
}

// EntryPoint encodes a 3.0 entry point for a table of tableLen bytes at
// addr, with its checksum set.
func EntryPoint(tableLen int, addr uint64) []byte {
	ep := make([]byte, entryPointLen)
	copy(ep, "_SM3_")
	ep[6] = entryPointLen
	ep[7], ep[8], ep[9] = 3, 0, 0 // SMBIOS 3.0.0
	ep[10] = 1                    // entry point revision: 3.0 format
	binary.LittleEndian.PutUint32(ep[12:], uint32(tableLen))
	binary.LittleEndian.PutUint64(ep[16:], addr)
	ep[5] = -sum(ep)
	return ep
}

func sum(b []byte) byte {
	var s byte
	for _, x := range b {
		s += x
	}
	return s
}

// checkMemory validates the regions and returns their total size.
func checkMemory(rs []Region) (uint64, error) {
	if len(rs) == 0 {
		return 0, ErrNoMemory
	}
	var total, next uint64
	for i, r := range rs {
		end := r.Base + r.Size
		if r.Size == 0 || r.Base%1024 != 0 || r.Size%1024 != 0 || end < r.Base || (i > 0 && r.Base < next) {
			return 0, fmt.Errorf("%w: region %d base %#x size %#x", ErrBadRegion, i, r.Base, r.Size)
		}
		next = end
		total += r.Size
	}
	if total%(1<<20) != 0 {
		return 0, fmt.Errorf("%w: total %#x is not a whole number of MiB (memory devices are sized in MiB)", ErrBadRegion, total)
	}
	return total, nil
}

// writer appends structures; the first error sticks.
type writer struct {
	buf []byte
	err error
}

// structure is one structure's formatted area being built.
type structure struct {
	b       []byte
	strings []string
}

func (w *writer) begin(typ byte, length int, handle uint16) *structure {
	s := &structure{b: make([]byte, length)}
	s.b[0] = typ
	s.b[1] = byte(length)
	binary.LittleEndian.PutUint16(s.b[2:], handle)
	return s
}

// str stores v in the string set and its 1-based index at off; an empty
// string is index 0 ("none"), as the spec requires.
func (s *structure) str(off int, v string) {
	if v == "" {
		return
	}
	for i, have := range s.strings {
		if have == v {
			s.b[off] = byte(i + 1)
			return
		}
	}
	s.strings = append(s.strings, v)
	s.b[off] = byte(len(s.strings))
}

func (s *structure) u8(off int, v byte)    { s.b[off] = v }
func (s *structure) u16(off int, v uint16) { binary.LittleEndian.PutUint16(s.b[off:], v) }
func (s *structure) u32(off int, v uint32) { binary.LittleEndian.PutUint32(s.b[off:], v) }
func (s *structure) u64(off int, v uint64) { binary.LittleEndian.PutUint64(s.b[off:], v) }

// finish appends the formatted area and its string set: each string
// NUL-terminated and the set closed by one more NUL, or two NULs if empty.
func (w *writer) finish(s *structure) {
	if w.err != nil {
		return
	}
	if len(s.strings) > 255 {
		w.err = fmt.Errorf("%w: more than 255 strings in type %d", ErrBadString, s.b[0])
		return
	}
	w.buf = append(w.buf, s.b...)
	for _, v := range s.strings {
		if strings.IndexByte(v, 0) >= 0 || len(v) > 1024 {
			w.err = fmt.Errorf("%w: %q in type %d", ErrBadString, v, s.b[0])
			return
		}
		w.buf = append(w.buf, v...)
		w.buf = append(w.buf, 0)
	}
	if len(s.strings) == 0 {
		w.buf = append(w.buf, 0)
	}
	w.buf = append(w.buf, 0)
}

func (w *writer) biosInfo(b BIOS) {
	s := w.begin(TypeBIOS, 0x18, handleBIOS) // the SMBIOS 3.0 layout
	s.str(0x04, b.Vendor)
	s.str(0x05, b.Version)
	s.u16(0x06, 0xE800) // starting segment of the BIOS image in the legacy area
	s.str(0x08, b.ReleaseDate)
	s.u8(0x09, 0)     // ROM size: 64 KiB units minus one; 0 for firmware loaded by the VMM
	s.u64(0x0A, 1<<3) // characteristics: "not supported"
	s.u8(0x13, 1<<4)  // extension byte 2: this is a virtual machine
	s.u8(0x14, 0)
	s.u8(0x15, 0)
	s.u8(0x16, 0xFF) // no embedded controller
	s.u8(0x17, 0xFF)
	w.finish(s)
}

func (w *writer) system(c Config) {
	s := w.begin(TypeSystem, 0x1B, handleSystem)
	s.str(0x04, c.Manufacturer)
	s.str(0x05, c.Product)
	s.str(0x06, c.Version)
	s.str(0x07, c.Serial)
	copy(s.b[0x08:0x18], EncodeUUID(c.UUID))
	s.u8(0x18, 0x06) // wake-up type: power switch
	s.str(0x1A, c.Family)
	w.finish(s)
}

// EncodeUUID converts an RFC 4122 UUID to SMBIOS's wire order: time_low,
// time_mid and time_hi_and_version little-endian, the rest as is.
func EncodeUUID(u [16]byte) []byte {
	out := make([]byte, 16)
	out[0], out[1], out[2], out[3] = u[3], u[2], u[1], u[0]
	out[4], out[5] = u[5], u[4]
	out[6], out[7] = u[7], u[6]
	copy(out[8:], u[8:])
	return out
}

func (w *writer) chassis(c Config) {
	s := w.begin(TypeChassis, 0x16, handleChassis)
	s.str(0x04, c.Manufacturer)
	s.u8(0x05, 0x01) // type: other
	s.str(0x06, c.Version)
	s.u8(0x09, 0x03) // boot-up, power supply and thermal state: safe
	s.u8(0x0A, 0x03)
	s.u8(0x0B, 0x03)
	s.u8(0x0C, 0x02) // security status: unknown
	// no contained elements (0x13, 0x14 stay 0), so the SKU string is at 0x15
	w.finish(s)
}

func (w *writer) processor(c Config, i int) {
	s := w.begin(TypeProcessor, 0x30, handleProcessor+uint16(i))
	s.str(0x04, fmt.Sprintf("CPU %d", i))
	s.u8(0x05, 0x03) // central processor
	s.u8(0x06, 0x01) // family: other
	s.str(0x07, c.CPUManufacturer)
	s.u32(0x08, c.CPUSignature)
	s.u32(0x0C, c.CPUFeatures)
	s.str(0x10, c.CPUVersion)
	s.u16(0x14, 2000) // max and current speed in MHz: unknown to a VM, and 0 upsets SVVP
	s.u16(0x16, 2000)
	s.u8(0x18, 0x41) // socket populated, CPU enabled
	s.u8(0x19, 0x01) // upgrade: other
	s.u16(0x1A, handleNone)
	s.u16(0x1C, handleNone)
	s.u16(0x1E, handleNone)
	s.u8(0x23, 1) // cores, enabled cores, threads
	s.u8(0x24, 1)
	s.u8(0x25, 1)
	s.u16(0x26, 1<<2)   // 64-bit capable
	s.u16(0x28, 0x0001) // family 2: other
	s.u16(0x2A, 1)
	s.u16(0x2C, 1)
	s.u16(0x2E, 1)
	w.finish(s)
}

// memory writes the memory array (16), one device per 16 GiB of RAM (17)
// and one mapped address range per region (19).
func (w *writer) memory(rs []Region, total uint64) {
	devices := int((total + maxDeviceSize - 1) / maxDeviceSize)
	s := w.begin(TypeMemoryArray, 0x17, handleMemoryArray)
	s.u8(0x04, 0x01) // location: other
	s.u8(0x05, 0x03) // use: system memory
	s.u8(0x06, 0x03) // error correction: none
	if kib := total / 1024; kib < 0x80000000 {
		s.u32(0x07, uint32(kib))
	} else {
		s.u32(0x07, 0x80000000) // see the extended capacity in bytes
		s.u64(0x0F, total)
	}
	s.u16(0x0B, handleNoErrorInfo)
	s.u16(0x0D, uint16(devices))
	w.finish(s)

	left := total
	for i := 0; i < devices; i++ {
		size := min(left, maxDeviceSize)
		left -= size
		s := w.begin(TypeMemoryDevice, 0x28, handleMemoryDev+uint16(i))
		s.u16(0x04, handleMemoryArray)
		s.u16(0x06, handleNoErrorInfo)
		s.u16(0x08, 64) // total and data width in bits
		s.u16(0x0A, 64)
		s.u16(0x0C, uint16(size>>20)) // MiB; a 16 GiB device stays below 0x7FFF (extended size)
		s.u8(0x0E, 0x09)              // form factor: DIMM
		s.str(0x10, fmt.Sprintf("DIMM %d", i))
		s.u8(0x12, 0x07)  // type: RAM
		s.u16(0x13, 1<<1) // type detail: other
		s.str(0x17, "vmm")
		w.finish(s)
	}

	for i, r := range rs {
		s := w.begin(TypeMemoryArrayMap, 0x1F, handleArrayMap+uint16(i))
		start, end := r.Base, r.Base+r.Size-1
		if end>>10 < 0xFFFFFFFF {
			s.u32(0x04, uint32(start>>10))
			s.u32(0x08, uint32(end>>10))
		} else {
			s.u32(0x04, 0xFFFFFFFF) // see the extended addresses in bytes
			s.u32(0x08, 0xFFFFFFFF)
			s.u64(0x0F, start)
			s.u64(0x17, end)
		}
		s.u16(0x0C, handleMemoryArray)
		s.u8(0x0E, 1) // partition width, as QEMU reports it
		w.finish(s)
	}
}

func (w *writer) systemBoot() {
	// Reserved bytes and boot status 0: no errors detected.
	w.finish(w.begin(TypeSystemBoot, 0x0B, handleSystemBoot))
}

func (w *writer) end() {
	w.finish(w.begin(TypeEndOfTable, 4, handleEnd))
}
