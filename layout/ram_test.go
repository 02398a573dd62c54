package layout

import "testing"

func TestRAMRegions(t *testing.T) {
	const mib = 1 << 20
	if got := RAMRegions(512 * mib); len(got) != 1 || got[0] != (Region{0, 512 * mib}) {
		t.Fatalf("512 MiB: %v", got)
	}
	got := RAMRegions(4096 * mib)
	if len(got) != 2 || got[0] != (Region{0, MMIOHoleStart}) || got[1] != (Region{MMIOHoleEnd, 4096*mib - MMIOHoleStart}) {
		t.Fatalf("4 GiB: %v", got)
	}
	if got[1].End() != MMIOHoleEnd+1024*mib {
		t.Fatalf("end %#x", got[1].End())
	}
}
