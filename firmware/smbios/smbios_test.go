package smbios

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/testenv"
)

// parsed is one structure as a reader of the table sees it.
type parsed struct {
	typ     byte
	handle  uint16
	area    []byte // formatted area, header included
	strings []string
}

// str resolves the string index at off; 0 means none.
func (p parsed) str(t *testing.T, off int) string {
	t.Helper()
	i := int(p.area[off])
	if i == 0 {
		return ""
	}
	require.LessOrEqual(t, i, len(p.strings), "type %d string index at %#x", p.typ, off)
	return p.strings[i-1]
}

// parse walks a table the way the spec defines it, failing on any
// malformed structure.
func parse(t *testing.T, table []byte) []parsed {
	t.Helper()
	var out []parsed
	for off := 0; off < len(table); {
		require.LessOrEqual(t, off+4, len(table), "header past the end")
		p := parsed{typ: table[off], handle: binary.LittleEndian.Uint16(table[off+2:])}
		l := int(table[off+1])
		require.GreaterOrEqual(t, l, 4)
		require.LessOrEqual(t, off+l+2, len(table), "type %d runs past the end", p.typ)
		p.area = table[off : off+l]
		s := off + l
		if table[s] == 0 {
			require.Equal(t, byte(0), table[s+1], "type %d: empty string set is two NULs", p.typ)
			off = s + 2
		} else {
			for table[s] != 0 {
				e := s
				for table[e] != 0 {
					e++
				}
				p.strings = append(p.strings, string(table[s:e]))
				s = e + 1
			}
			off = s + 1
		}
		out = append(out, p)
	}
	return out
}

func byType(ps []parsed, typ byte) []parsed {
	var out []parsed
	for _, p := range ps {
		if p.typ == typ {
			out = append(out, p)
		}
	}
	return out
}

var testUUID = [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}

func testConfig() Config {
	return Config{
		CPUs:            2,
		Memory:          []Region{{0, 3 << 30}, {4 << 30, 1 << 30}},
		UUID:            testUUID,
		Product:         "test product",
		CPUManufacturer: "AuthenticAMD",
		CPUSignature:    0x00a00f11,
		CPUFeatures:     0x178bfbff,
	}
}

func TestEntryPoint(t *testing.T) {
	anchor, table, err := Build(testConfig())
	require.NoError(t, err)
	require.Len(t, anchor, 24)
	require.Equal(t, "_SM3_", string(anchor[:5]))
	require.Equal(t, byte(0), sum(anchor), "checksum")
	require.Equal(t, byte(24), anchor[6], "length")
	require.Equal(t, []byte{3, 0, 0}, anchor[7:10], "version 3.0.0")
	require.Equal(t, byte(1), anchor[10], "entry point revision")
	require.Equal(t, byte(0), anchor[11], "reserved")
	require.Equal(t, uint32(len(table)), binary.LittleEndian.Uint32(anchor[12:]), "table max size")
	require.Equal(t, uint64(0), binary.LittleEndian.Uint64(anchor[16:]), "address left to firmware")

	moved := EntryPoint(len(table), 0xF0000)
	require.Equal(t, byte(0), sum(moved))
	require.Equal(t, uint64(0xF0000), binary.LittleEndian.Uint64(moved[16:]))
}

func TestStructures(t *testing.T) {
	_, table, err := Build(testConfig())
	require.NoError(t, err)
	ps := parse(t, table)

	// Order, lengths and unique handles.
	var types []byte
	handles := map[uint16]bool{}
	wantLen := map[byte]int{1: 0x1B, 3: 0x16, 4: 0x30, 16: 0x17, 17: 0x28, 19: 0x1F, 32: 0x0B, 127: 4}
	for _, p := range ps {
		types = append(types, p.typ)
		require.False(t, handles[p.handle], "duplicate handle %#x", p.handle)
		handles[p.handle] = true
		require.Len(t, p.area, wantLen[p.typ], "type %d length", p.typ)
	}
	require.Equal(t, []byte{1, 3, 4, 4, 16, 17, 19, 19, 32, 127}, types)
	require.Empty(t, byType(ps, TypeBIOS), "type 0 is the firmware's")

	sys := byType(ps, TypeSystem)[0]
	require.Equal(t, "vmm", sys.str(t, 0x04))
	require.Equal(t, "test product", sys.str(t, 0x05))
	require.Equal(t, "", sys.str(t, 0x07), "no serial: index 0")
	require.Equal(t, []byte{0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef},
		sys.area[0x08:0x18], "UUID with its first three fields little-endian")

	for i, cpu := range byType(ps, TypeProcessor) {
		require.Equal(t, uint16(0x400+i), cpu.handle)
		require.Equal(t, fmt.Sprintf("CPU %d", i), cpu.str(t, 0x04))
		require.Equal(t, "AuthenticAMD", cpu.str(t, 0x07))
		require.Equal(t, uint32(0x00a00f11), binary.LittleEndian.Uint32(cpu.area[0x08:]))
		require.Equal(t, byte(0x41), cpu.area[0x18], "populated and enabled")
		require.Equal(t, []byte{1, 1, 1}, cpu.area[0x23:0x26], "cores, enabled, threads")
	}

	arr := byType(ps, TypeMemoryArray)[0]
	require.Equal(t, uint32(4<<20), binary.LittleEndian.Uint32(arr.area[0x07:]), "capacity in KiB")
	require.Equal(t, uint16(1), binary.LittleEndian.Uint16(arr.area[0x0D:]), "devices")

	dev := byType(ps, TypeMemoryDevice)[0]
	require.Equal(t, arr.handle, binary.LittleEndian.Uint16(dev.area[0x04:]), "device points at its array")
	require.Equal(t, uint16(4<<10), binary.LittleEndian.Uint16(dev.area[0x0C:]), "size in MiB")
	require.Equal(t, "DIMM 0", dev.str(t, 0x10))

	maps := byType(ps, TypeMemoryArrayMap)
	require.Equal(t, uint32(0), binary.LittleEndian.Uint32(maps[0].area[0x04:]))
	require.Equal(t, uint32(3<<20-1), binary.LittleEndian.Uint32(maps[0].area[0x08:]), "end KiB inclusive")
	require.Equal(t, uint32(4<<20), binary.LittleEndian.Uint32(maps[1].area[0x04:]), "high RAM starts at 4 GiB")
	require.Equal(t, uint32(5<<20-1), binary.LittleEndian.Uint32(maps[1].area[0x08:]))
	for _, m := range maps {
		require.Equal(t, arr.handle, binary.LittleEndian.Uint16(m.area[0x0C:]))
	}
}

func TestBIOSStructure(t *testing.T) {
	c := testConfig()
	c.BIOS = &BIOS{Vendor: "vmm", Version: "1", ReleaseDate: "01/01/2026"}
	_, table, err := Build(c)
	require.NoError(t, err)
	ps := parse(t, table)
	require.Equal(t, byte(TypeBIOS), ps[0].typ)
	require.Equal(t, "vmm", ps[0].str(t, 0x04))
	require.Equal(t, "01/01/2026", ps[0].str(t, 0x08))
}

func TestLargeMemoryUsesExtendedFields(t *testing.T) {
	c := testConfig()
	c.Memory = []Region{{0, 2 << 30}, {4 << 30, 8 << 40}} // 8 TiB above 4 GiB
	_, table, err := Build(c)
	require.NoError(t, err)
	ps := parse(t, table)

	total := uint64(2<<30 + 8<<40)
	arr := byType(ps, TypeMemoryArray)[0]
	require.Equal(t, uint32(0x80000000), binary.LittleEndian.Uint32(arr.area[0x07:]))
	require.Equal(t, total, binary.LittleEndian.Uint64(arr.area[0x0F:]))
	devs := byType(ps, TypeMemoryDevice)
	require.Len(t, devs, int((total+maxDeviceSize-1)/maxDeviceSize))
	require.Equal(t, uint16(16<<10), binary.LittleEndian.Uint16(devs[0].area[0x0C:]), "16 GiB still fits the MiB word")
	last := byType(ps, TypeMemoryArrayMap)[1]
	require.Equal(t, uint32(0xFFFFFFFF), binary.LittleEndian.Uint32(last.area[0x04:]))
	require.Equal(t, uint64(4<<30), binary.LittleEndian.Uint64(last.area[0x0F:]))
	require.Equal(t, uint64(4<<30+8<<40-1), binary.LittleEndian.Uint64(last.area[0x17:]))
}

// TestProperties checks invariants over CPU counts and memory sizes: the
// table parses, handles are unique, type 4 count equals CPUs, device sizes
// add up to the RAM and the mapped ranges equal the regions.
func TestProperties(t *testing.T) {
	for _, cpus := range []int{1, 3, 64, 255, 288} {
		for _, kib := range []uint64{1 << 10, 17 << 10, 512 << 10, 3 << 20, 3<<20 + 1<<10, 40 << 20, 100 << 20} {
			t.Run(fmt.Sprintf("%dcpu-%dKiB", cpus, kib), func(t *testing.T) {
				size := kib << 10
				low := min(size, 3<<30)
				regions := []Region{{0, low}}
				if high := size - low; high > 0 {
					regions = append(regions, Region{4 << 30, high})
				}
				anchor, table, err := Build(Config{CPUs: cpus, Memory: regions})
				require.NoError(t, err)
				require.Equal(t, byte(0), sum(anchor))
				ps := parse(t, table)
				require.Len(t, byType(ps, TypeProcessor), cpus)
				seen := map[uint16]bool{}
				for _, p := range ps {
					require.False(t, seen[p.handle], "duplicate handle %#x", p.handle)
					seen[p.handle] = true
				}
				var devTotal uint64
				for _, d := range byType(ps, TypeMemoryDevice) {
					field := binary.LittleEndian.Uint16(d.area[0x0C:])
					require.Zero(t, field&0x8000, "sizes are in MiB")
					devTotal += uint64(field) << 20
				}
				require.Equal(t, size, devTotal)
				maps := byType(ps, TypeMemoryArrayMap)
				require.Len(t, maps, len(regions))
				for i, m := range maps {
					start := uint64(binary.LittleEndian.Uint32(m.area[0x04:])) << 10
					end := uint64(binary.LittleEndian.Uint32(m.area[0x08:]))<<10 | 0x3FF
					require.Equal(t, regions[i].Base, start)
					require.Equal(t, regions[i].Base+regions[i].Size-1, end)
				}
				require.Equal(t, byte(TypeEndOfTable), ps[len(ps)-1].typ)
			})
		}
	}
}

func TestErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(*Config)
		want error
	}{
		"no cpus":      {func(c *Config) { c.CPUs = 0 }, ErrNoCPUs},
		"many cpus":    {func(c *Config) { c.CPUs = 5000 }, ErrTooManyCPUs},
		"no memory":    {func(c *Config) { c.Memory = nil }, ErrNoMemory},
		"empty region": {func(c *Config) { c.Memory = []Region{{0, 0}} }, ErrBadRegion},
		"unaligned":    {func(c *Config) { c.Memory = []Region{{0, 1000}} }, ErrBadRegion},
		"not MiB":      {func(c *Config) { c.Memory = []Region{{0, 1<<20 + 4096}} }, ErrBadRegion},
		"overlap":      {func(c *Config) { c.Memory = []Region{{0, 2 << 20}, {1 << 20, 2 << 20}} }, ErrBadRegion},
		"wraps":        {func(c *Config) { c.Memory = []Region{{^uint64(0) - 1023, 2048}} }, ErrBadRegion},
		"nul string":   {func(c *Config) { c.Product = "a\x00b" }, ErrBadString},
	} {
		t.Run(name, func(t *testing.T) {
			c := testConfig()
			tc.mod(&c)
			_, _, err := Build(c)
			require.True(t, errors.Is(err, tc.want), "got %v", err)
		})
	}
}

// TestDmidecode has dmidecode, an independent decoder, read a dump: entry
// point at offset 0 and the table at offset 32, where the dump's entry
// point says it is (the layout of dmidecode --dump-bin).
func TestDmidecode(t *testing.T) {
	bin, err := exec.LookPath("dmidecode")
	if err != nil {
		testenv.Skip(t, "dmidecode not installed (apt-get install dmidecode)")
	}
	c := testConfig()
	c.Memory = []Region{{0, 3 << 30}, {4 << 30, 20 << 30}}
	_, table, err := Build(c)
	require.NoError(t, err)
	dump := make([]byte, 32, 32+len(table))
	copy(dump, EntryPoint(len(table), 32))
	dump = append(dump, table...)
	path := filepath.Join(t.TempDir(), "dump.bin")
	require.NoError(t, os.WriteFile(path, dump, 0o644))

	out, err := exec.Command(bin, "--from-dump", path).CombinedOutput()
	require.NoError(t, err, "%s", out)
	text := string(out)
	require.Contains(t, text, "SMBIOS 3.0.0 present.")
	require.NotContains(t, text, "Invalid")
	require.NotContains(t, text, "Wrong DMI structures")
	require.NotContains(t, text, "<OUT OF SPEC>")
	require.Contains(t, text, "Manufacturer: vmm")
	require.Contains(t, text, "Product Name: test product")
	require.Contains(t, text, "UUID: 12345678-9abc-def0-0123-456789abcdef")
	require.Equal(t, 2, strings.Count(text, "Processor Information"))
	require.Contains(t, text, "Maximum Capacity: 23 GB")
	require.Equal(t, 2, strings.Count(text, "Memory Device\n"))
	require.Contains(t, text, "Size: 16 GB")
	require.Contains(t, text, "Size: 7 GB")
	require.Contains(t, text, "Starting Address: 0x00100000000")
	require.Contains(t, text, "Range Size: 20 GB")
	require.Contains(t, text, "System Boot Information")
	require.Contains(t, text, "End Of Table")
}
