package e820

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/layout"
)

const mib = 1 << 20

func TestMapSmall(t *testing.T) {
	got := Map(256 * mib)
	want := []Entry{
		{0, layout.EBDA, RAM},
		{layout.EBDA, mib - layout.EBDA, Reserved},
		{mib, 255 * mib, RAM},
	}
	require.Equal(t, want, got)
}

func TestMapAboveHole(t *testing.T) {
	got := Map(4096 * mib)
	want := []Entry{
		{0, layout.EBDA, RAM},
		{layout.EBDA, mib - layout.EBDA, Reserved},
		{mib, layout.MMIOHoleStart - mib, RAM},
		{layout.MMIOHoleEnd, 4096*mib - layout.MMIOHoleStart, RAM},
	}
	require.Equal(t, want, got)
}

func TestMapExactlyHole(t *testing.T) {
	got := Map(layout.MMIOHoleStart)
	require.Len(t, got, 3)
	require.Equal(t, uint64(layout.MMIOHoleStart), got[2].End())
}

func TestMapTinyClipsRAM(t *testing.T) {
	// Less than the conventional area: RAM stops at memSize, no high RAM.
	got := Map(0x80000)
	require.Equal(t, []Entry{{0, 0x80000, RAM}, {layout.EBDA, mib - layout.EBDA, Reserved}}, got)
	// Exactly 1 MiB: no empty high entry.
	require.Len(t, Map(mib), 2)
}

func TestMapCoversTables(t *testing.T) {
	// The ACPI and MP tables must lie in a reserved range so the OS leaves them alone.
	for _, addr := range []uint64{layout.ACPITables, layout.ACPITablesEnd - 1, layout.MPTable, layout.MPTableEnd - 1} {
		var typ Type
		for _, e := range Map(128 * mib) {
			if addr >= e.Addr && addr < e.End() {
				typ = e.Type
			}
		}
		require.Equal(t, Reserved, typ, "address %#x", addr)
	}
}

func TestMapSortedNonOverlapping(t *testing.T) {
	for _, size := range []uint64{mib, 64 * mib, layout.MMIOHoleStart + 1, 16 << 30} {
		m := Map(size)
		var total uint64
		for i, e := range m {
			require.NotZero(t, e.Size)
			if i > 0 {
				require.GreaterOrEqual(t, e.Addr, m[i-1].End(), "size %#x", size)
			}
			if e.Type == RAM {
				total += e.Size
			}
		}
		// All of memory except the reserved EBDA..1 MiB part is RAM.
		require.Equal(t, size-(mib-layout.EBDA), total, "size %#x", size)
	}
}

func TestTypeString(t *testing.T) {
	require.Equal(t, "RAM", RAM.String())
	require.Equal(t, "reserved", Reserved.String())
	require.Equal(t, "type(9)", Type(9).String())
}
