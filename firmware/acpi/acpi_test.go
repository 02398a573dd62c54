package acpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/firmware/acpi/aml"
	"github.com/vmmdev/vmm/layout"
)

// guestMem is a fake guest memory covering the first MiB.
type guestMem []byte

func newMem() guestMem { return make(guestMem, layout.HighMemory) }

func (m guestMem) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("write %d bytes at %#x: out of range", len(p), off)
	}
	return copy(m[off:], p), nil
}

var errFail = errors.New("fail")

type failingMem struct{}

func (failingMem) WriteAt([]byte, int64) (int, error) { return 0, errFail }

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// table returns the SDT at addr after checking its length and checksum.
func table(t *testing.T, mem guestMem, addr uint64, sig string) []byte {
	t.Helper()
	require.GreaterOrEqual(t, addr, uint64(layout.ACPITables), "%s below the ACPI area", sig)
	require.Less(t, addr+headerSize, uint64(layout.ACPITablesEnd), "%s past the ACPI area", sig)
	require.Equal(t, sig, string(mem[addr:addr+4]))
	n := uint64(binary.LittleEndian.Uint32(mem[addr+4:]))
	require.LessOrEqual(t, addr+n, uint64(layout.ACPITablesEnd), "%s past the ACPI area", sig)
	tb := mem[addr : addr+n]
	require.Zero(t, sum(tb), "%s checksum", sig)
	assert.Equal(t, OEMID, string(tb[10:16]), "%s OEM id", sig)
	return tb
}

// machine is the guest's view after WriteTo: the RSDP found by scanning the
// BIOS area, as Linux does without a boot-protocol hint.
type machine struct {
	mem  guestMem
	rsdp []byte
	xsdt []byte
	sdts map[string][]byte // by signature, from the XSDT (the last of a kind)
	sigs []string          // the XSDT's entries in order
}

func boot(t *testing.T, cfg Config) machine {
	t.Helper()
	tables, err := Build(cfg)
	require.NoError(t, err)
	m := machine{mem: newMem(), sdts: map[string][]byte{}}
	addr, err := tables.WriteTo(m.mem, layout.ACPITables, layout.ACPITablesEnd)
	require.NoError(t, err)

	found := -1
	for a := 0xe0000; a < 0x100000; a += 16 {
		if string(m.mem[a:a+8]) == "RSD PTR " {
			found = a
			break
		}
	}
	require.Equal(t, int(addr), found, "RSDP found by scanning the BIOS area")
	m.rsdp = m.mem[addr : addr+rsdpLength]
	require.Zero(t, sum(m.rsdp[:20]), "RSDP checksum")
	require.Zero(t, sum(m.rsdp), "RSDP extended checksum")
	require.Equal(t, byte(2), m.rsdp[15], "RSDP revision")
	require.Equal(t, OEMID, string(m.rsdp[9:15]))
	require.Equal(t, uint32(36), binary.LittleEndian.Uint32(m.rsdp[20:]))
	require.Zero(t, binary.LittleEndian.Uint32(m.rsdp[16:]), "no RSDT")

	m.xsdt = table(t, m.mem, binary.LittleEndian.Uint64(m.rsdp[24:]), "XSDT")
	require.Zero(t, (len(m.xsdt)-headerSize)%8)
	for off := headerSize; off < len(m.xsdt); off += 8 {
		a := binary.LittleEndian.Uint64(m.xsdt[off:])
		sig := string(m.mem[a : a+4])
		m.sdts[sig] = table(t, m.mem, a, sig)
		m.sigs = append(m.sigs, sig)
	}
	return m
}

func TestLayout(t *testing.T) {
	for _, cpus := range []int{1, 2, 8, MaxCPUs} {
		t.Run(fmt.Sprint(cpus), func(t *testing.T) {
			m := boot(t, Config{CPUs: cpus})
			assert.Equal(t, []string{"FACP", "APIC"}, m.sigs)
			checkMADT(t, m.sdts["APIC"], cpus)
			checkFADT(t, m)
		})
	}
}

func checkFADT(t *testing.T, m machine) {
	f := m.sdts["FACP"]
	require.Len(t, f, 276)
	assert.Equal(t, byte(6), f[8], "revision")
	assert.Equal(t, byte(5), f[131], "minor version")
	le16 := func(off int) uint16 { return binary.LittleEndian.Uint16(f[off:]) }
	le32 := func(off int) uint32 { return binary.LittleEndian.Uint32(f[off:]) }
	le64 := func(off int) uint64 { return binary.LittleEndian.Uint64(f[off:]) }

	assert.Zero(t, le32(36), "FIRMWARE_CTRL: no FACS")
	assert.Zero(t, le32(40), "32-bit DSDT unused")
	assert.Zero(t, le64(132), "X_FIRMWARE_CTRL: no FACS")
	dsdt := table(t, m.mem, le64(140), "DSDT")
	assert.Equal(t, byte(2), dsdt[8], "DSDT revision 2: 64-bit integers")

	assert.Equal(t, uint16(layout.SCIIRQ), le16(46), "SCI_INT")
	flags := le32(112)
	assert.NotZero(t, flags&(1<<20), "HW_REDUCED_ACPI")
	assert.NotZero(t, flags&(1<<10), "RESET_REG_SUP")
	assert.NotZero(t, flags&(1<<4), "PWR_BUTTON: no fixed power button")
	boot := le16(109)
	assert.Zero(t, boot&(1<<1), "no 8042 for the OS to probe")
	assert.NotZero(t, boot&(1<<2), "VGA not present")
	assert.Zero(t, boot&(1<<3), "MSI supported")
	assert.Zero(t, boot&(1<<5), "CMOS RTC present")

	gas := func(off int) []byte { return f[off : off+12] }
	io8 := func(port uint64) []byte {
		return binary.LittleEndian.AppendUint64([]byte{1, 8, 0, 1}, port)
	}
	assert.Equal(t, io8(layout.PortReset), gas(116), "RESET_REG")
	assert.Equal(t, byte(layout.ResetValue), f[128], "RESET_VALUE")
	assert.Equal(t, io8(layout.PortSleepControl), gas(244), "SLEEP_CONTROL_REG")
	assert.Equal(t, io8(layout.PortSleepStatus), gas(256), "SLEEP_STATUS_REG")
	assert.Equal(t, "VMMDEV  ", string(f[268:276]), "HYPERVISOR_VENDOR_IDENTITY")
	// Legacy fixed hardware is absent in hardware-reduced mode.
	assert.Equal(t, make([]byte, 96), f[148:244], "X_PM1a_EVT_BLK .. X_GPE1_BLK")
	assert.Equal(t, make([]byte, 38), f[56:94], "PM1a_EVT_BLK .. GPE1_BASE")
}

type madtInfo struct {
	lapicAddr, flags uint32
	lapics           [][2]byte // uid, apic id
	lapicFlags       []uint32
	ioapics          [][3]uint32 // id, address, gsi base
	overrides        map[byte][2]uint32
	nmis             [][3]uint16 // uid, flags, lint
}

func parseMADT(t *testing.T, tb []byte) madtInfo {
	t.Helper()
	m := madtInfo{
		lapicAddr: binary.LittleEndian.Uint32(tb[36:]),
		flags:     binary.LittleEndian.Uint32(tb[40:]),
		overrides: map[byte][2]uint32{},
	}
	for off := 44; off < len(tb); {
		require.LessOrEqual(t, off+2, len(tb))
		typ, n := tb[off], int(tb[off+1])
		require.GreaterOrEqual(t, n, 2)
		require.LessOrEqual(t, off+n, len(tb), "entry at %d overruns the MADT", off)
		e := tb[off : off+n]
		switch typ {
		case madtLocalAPIC:
			require.Equal(t, 8, n)
			m.lapics = append(m.lapics, [2]byte{e[2], e[3]})
			m.lapicFlags = append(m.lapicFlags, binary.LittleEndian.Uint32(e[4:]))
		case madtIOAPIC:
			require.Equal(t, 12, n)
			m.ioapics = append(m.ioapics, [3]uint32{uint32(e[2]), binary.LittleEndian.Uint32(e[4:]), binary.LittleEndian.Uint32(e[8:])})
		case madtSourceOverride:
			require.Equal(t, 10, n)
			require.Zero(t, e[2], "ISA bus")
			m.overrides[e[3]] = [2]uint32{binary.LittleEndian.Uint32(e[4:]), uint32(binary.LittleEndian.Uint16(e[8:]))}
		case madtLocalAPICNMI:
			require.Equal(t, 6, n)
			m.nmis = append(m.nmis, [3]uint16{uint16(e[2]), binary.LittleEndian.Uint16(e[3:]), uint16(e[5])})
		default:
			t.Fatalf("unexpected MADT entry type %d", typ)
		}
		off += n
	}
	return m
}

func checkMADT(t *testing.T, tb []byte, cpus int) {
	m := parseMADT(t, tb)
	assert.Equal(t, uint32(layout.LAPICBase), m.lapicAddr)
	assert.Equal(t, uint32(1), m.flags, "PCAT_COMPAT")
	require.Len(t, m.lapics, cpus)
	for i, l := range m.lapics {
		assert.Equal(t, [2]byte{byte(i), byte(i)}, l)
		assert.Equal(t, uint32(1), m.lapicFlags[i], "enabled")
	}
	assert.Equal(t, [][3]uint32{{uint32(cpus), layout.IOAPICBase, 0}}, m.ioapics)
	assert.Equal(t, map[byte][2]uint32{0: {2, 0}, 9: {9, 0x000d}}, m.overrides)
	assert.Equal(t, [][3]uint16{{0xff, 0, 1}}, m.nmis)
}

func TestDSDT(t *testing.T) {
	pci := aml.Device("PCI0", aml.Name("_HID", aml.EISAID("PNP0A08")))
	m := boot(t, Config{CPUs: 2, Devices: []aml.Term{pci}})
	f := m.sdts["FACP"]
	d := table(t, m.mem, binary.LittleEndian.Uint64(f[140:]), "DSDT")
	body := d[headerSize:]
	s5 := []byte{0x08, '\\', '_', 'S', '5', '_', 0x12, 0x05, 0x02, 0x0a, layout.SleepTypeS5, 0x00}
	assert.Equal(t, s5, body[:len(s5)], "Name(\\_S5, Package(){SleepTypeS5, 0}) first")
	com1 := aml.Name("_CRS", aml.ResourceTemplate(aml.IO(true, 0x3f8, 0x3f8, 0, 8), aml.IRQNoFlags(4))).AML()
	assert.True(t, bytes.Contains(body, com1), "COM1 _CRS")
	assert.True(t, bytes.Contains(body, aml.Name("_HID", aml.EISAID("PNP0501")).AML()), "COM1 _HID")
	assert.True(t, bytes.Contains(body, aml.Name("_HID", aml.String("QEMU0001")).AML()), "pvpanic _HID")
	assert.True(t, bytes.Contains(body, aml.ResourceTemplate(aml.IO(true, 0x505, 0x505, 1, 1)).AML()), "pvpanic _CRS")
	assert.True(t, bytes.Contains(body, pci.AML()), "extra device in \\_SB")
	assert.True(t, bytes.Contains(body, []byte("C001")), "second processor device")
	assert.False(t, bytes.Contains(body, []byte("_S3_")), "no \\_S3 without a PM block offering it")
}

// TestDSDTS3 offers S3 with QEMU's PIIX4 sleep type 1 only where the PM
// block says the platform resumes from it.
func TestDSDTS3(t *testing.T) {
	s3 := aml.Name(`\_S3`, aml.Package(aml.Int(layout.SleepTypeS3), aml.Zero)).AML()
	assert.Equal(t, []byte{0x08, '\\', '_', 'S', '3', '_', 0x12, 0x04, 0x02, 0x01, 0x00}, s3)
	for _, offer := range []bool{false, true} {
		m := boot(t, Config{CPUs: 1, PM: &PMBlock{Base: 0x600, S3: offer}})
		f := m.sdts["FACP"]
		d := table(t, m.mem, binary.LittleEndian.Uint64(f[140:]), "DSDT")
		assert.Equal(t, offer, bytes.Contains(d[headerSize:], s3), "\\_S3 offered: %v", offer)
	}
}

func TestExtraTables(t *testing.T) {
	mcfg, err := MCFG(MCFGRegion{Base: 0xe0000000, StartBus: 0, EndBus: 0xff})
	require.NoError(t, err)
	ssdt := SDT{Signature: "SSDT", Revision: 2, Body: aml.Name(`\FOO`, aml.One).AML()}
	m := boot(t, Config{CPUs: 1, Extra: []SDT{mcfg, ssdt, ssdt}})
	assert.Equal(t, []string{"FACP", "APIC", "MCFG", "SSDT", "SSDT"}, m.sigs)
	mc := m.sdts["MCFG"]
	require.Len(t, mc, 44+16)
	assert.Equal(t, uint64(0xe0000000), binary.LittleEndian.Uint64(mc[44:]))
	assert.Equal(t, []byte{0, 0, 0, 0xff}, mc[52:56], "segment 0, buses 0-255")

	_, err = MCFG(MCFGRegion{StartBus: 2, EndBus: 1})
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = Build(Config{CPUs: 1, Extra: []SDT{{Signature: "TOOLONG"}}})
	assert.ErrorIs(t, err, ErrInvalid)
}

func TestErrors(t *testing.T) {
	for _, cpus := range []int{-1, 0, MaxCPUs + 1} {
		_, err := Build(Config{CPUs: cpus})
		assert.ErrorIs(t, err, ErrInvalid, "cpus %d", cpus)
	}
	tables, err := Build(Config{CPUs: 4})
	require.NoError(t, err)
	mem := newMem()
	_, err = tables.WriteTo(mem, layout.ACPITables, layout.ACPITables+200)
	assert.ErrorIs(t, err, ErrTooLarge)
	_, err = tables.WriteTo(mem, 0xffffffffffffff00, 0xffffffffffffffff)
	assert.ErrorIs(t, err, ErrTooLarge, "address arithmetic must not wrap")
	assert.Zero(t, sum(mem), "nothing written on error")
	_, err = tables.WriteTo(failingMem{}, layout.ACPITables, layout.ACPITablesEnd)
	assert.ErrorIs(t, err, errFail)
	// The RSDP's 64-bit XSDT pointer reaches anywhere; a 32-bit one must not wrap.
	small := &Tables{
		Blobs:    []Blob{{Name: RSDPName, Data: make([]byte, 8), Align: 1}, {Name: "X", Data: make([]byte, 8), Align: 1}},
		Pointers: []Pointer{{Blob: RSDPName, Offset: 0, Size: 4, Target: "X"}},
	}
	_, err = small.Link(map[string]uint64{RSDPName: 0, "X": 1 << 32})
	assert.ErrorIs(t, err, ErrTooLarge)
	_, err = small.Link(map[string]uint64{RSDPName: 0})
	assert.ErrorIs(t, err, ErrInvalid, "blob without address")
}

func TestValidate(t *testing.T) {
	good := func() *Tables {
		return &Tables{
			Blobs: []Blob{
				{Name: RSDPName, Data: make([]byte, 36), Align: 16},
				{Name: "T", Data: make([]byte, 40), Align: 8},
			},
			Pointers:  []Pointer{{Blob: RSDPName, Offset: 24, Size: 8, Target: "T"}},
			Checksums: []Checksum{{Blob: "T", Offset: 9, Start: 0, Length: 40}},
		}
	}
	require.NoError(t, good().Validate())
	bad := map[string]func(*Tables){
		"no RSDP":            func(t *Tables) { t.Blobs[0].Name = "X" },
		"duplicate":          func(t *Tables) { t.Blobs[1].Name = RSDPName },
		"unnamed":            func(t *Tables) { t.Blobs[1].Name = "" },
		"align 0":            func(t *Tables) { t.Blobs[1].Align = 0 },
		"align 3":            func(t *Tables) { t.Blobs[1].Align = 3 },
		"pointer target":     func(t *Tables) { t.Pointers[0].Target = "nope" },
		"pointer blob":       func(t *Tables) { t.Pointers[0].Blob = "nope" },
		"pointer size":       func(t *Tables) { t.Pointers[0].Size = 2 },
		"pointer past end":   func(t *Tables) { t.Pointers[0].Offset = 30 },
		"pointer negative":   func(t *Tables) { t.Pointers[0].Offset = -1 },
		"checksum blob":      func(t *Tables) { t.Checksums[0].Blob = "nope" },
		"checksum past end":  func(t *Tables) { t.Checksums[0].Length = 41 },
		"checksum outside":   func(t *Tables) { t.Checksums[0].Offset = 40 },
		"checksum before":    func(t *Tables) { t.Checksums[0].Start = 10 },
		"checksum neg start": func(t *Tables) { t.Checksums[0].Start = -1 },
	}
	for name, mutate := range bad {
		tb := good()
		mutate(tb)
		assert.ErrorIs(t, tb.Validate(), ErrInvalid, name)
		_, err := tb.WriteTo(newMem(), layout.ACPITables, layout.ACPITablesEnd)
		assert.ErrorIs(t, err, ErrInvalid, name)
	}
}

func TestSleepControl(t *testing.T) {
	// What Linux's acpi_hw_extended_sleep writes for S5 with our \_S5.
	v := byte(layout.SleepTypeS5<<SleepTypeShift&SleepTypeMask | SleepEnable)
	assert.Equal(t, byte(0x34), v)
	typ, en := DecodeSleepControl(v)
	assert.Equal(t, byte(layout.SleepTypeS5), typ)
	assert.True(t, en)
	typ, en = DecodeSleepControl(0x14)
	assert.Equal(t, byte(5), typ)
	assert.False(t, en)
}

func FuzzWriteTo(f *testing.F) {
	f.Add(1, uint64(layout.ACPITables), uint64(layout.ACPITablesEnd))
	f.Add(254, uint64(layout.ACPITables), uint64(layout.ACPITables+0x1000))
	f.Add(0, uint64(0), uint64(0))
	f.Add(3, uint64(layout.HighMemory-100), uint64(layout.HighMemory+100))
	f.Fuzz(func(t *testing.T, cpus int, base, limit uint64) {
		tables, err := Build(Config{CPUs: cpus})
		if err != nil {
			return
		}
		mem := newMem()
		rsdp, err := tables.WriteTo(mem, base, limit)
		if err != nil {
			return
		}
		if rsdp < base || rsdp+rsdpLength > limit || rsdp%16 != 0 {
			t.Fatalf("RSDP at %#x outside [%#x, %#x) or unaligned", rsdp, base, limit)
		}
		if sum(mem[rsdp:rsdp+rsdpLength]) != 0 {
			t.Fatal("RSDP checksum")
		}
	})
}

// FuzzLink checks that Validate keeps arbitrary pointer and checksum fields
// from making Link or WriteTo panic.
func FuzzLink(f *testing.F) {
	f.Add(24, 8, 9, 0, 40, uint64(0x1000))
	f.Add(-1, 4, 50, -5, 100, uint64(1<<40))
	f.Fuzz(func(t *testing.T, pOff, pSize, cOff, cStart, cLen int, addr uint64) {
		tb := &Tables{
			Blobs:     []Blob{{Name: RSDPName, Data: make([]byte, 36), Align: 16}, {Name: "T", Data: make([]byte, 40), Align: 8}},
			Pointers:  []Pointer{{Blob: RSDPName, Offset: pOff, Size: pSize, Target: "T"}},
			Checksums: []Checksum{{Blob: "T", Offset: cOff, Start: cStart, Length: cLen}},
		}
		out, err := tb.Link(map[string]uint64{RSDPName: 0, "T": addr})
		if err != nil {
			return
		}
		if s := sum(out["T"][cStart : cStart+cLen]); s != 0 {
			t.Fatalf("checksummed range sums to %d", s)
		}
	})
}
