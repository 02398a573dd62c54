package layout

// Region is a range of guest-physical addresses.
type Region struct {
	Start, Size uint64
}

// End is the first address past the region.
func (r Region) End() uint64 { return r.Start + r.Size }

// RAMRegions splits memSize bytes of guest RAM around the 32-bit MMIO hole:
// RAM fills [0, MMIOHoleStart) and whatever is left continues at 4 GiB.
// The e820 map, the memory slots and the CMOS size bytes all derive from it.
func RAMRegions(memSize uint64) []Region {
	if memSize <= MMIOHoleStart {
		return []Region{{0, memSize}}
	}
	return []Region{{0, MMIOHoleStart}, {MMIOHoleEnd, memSize - MMIOHoleStart}}
}
