package vmm

import (
	"errors"
	"fmt"

	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/layout"
)

// ErrOutOfRange is returned for a guest-physical access that is not entirely
// inside one RAM region.
var ErrOutOfRange = errors.New("guest physical address out of range")

// Memory is guest RAM: host mappings for the regions layout.RAMRegions gives.
// All access goes through the bounds-checked helpers; nothing indexes the
// mappings directly, because every address here comes from a guest or a file.
type Memory struct {
	regions []memRegion
	size    uint64
}

type memRegion struct {
	layout.Region
	host []byte
}

// NewMemory maps size bytes of anonymous, never-executable memory for the guest.
func NewMemory(size uint64) (*Memory, error) {
	if size == 0 {
		return nil, errors.New("guest memory size is zero")
	}
	m := &Memory{size: size}
	for _, r := range layout.RAMRegions(size) {
		if r.Size > uint64(^uint(0)>>1) {
			m.Close()
			return nil, fmt.Errorf("guest memory region of %d bytes is too large", r.Size)
		}
		b, err := mapHugeAligned(r.Size)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("map %d bytes of guest memory at %#x: %w", r.Size, r.Start, err)
		}
		m.regions = append(m.regions, memRegion{Region: r, host: b})
	}
	return m, nil
}

// hugePage is the transparent huge page size on x86_64.
const hugePage = 2 << 20

// mapHugeAligned maps size bytes of anonymous read-write memory at a 2 MiB
// aligned address and asks for transparent huge pages: guest RAM backed by
// huge pages needs 512 times fewer nested page table entries and faults, the
// dominant cost of booting a guest under nested virtualization. The mapping
// is never executable in the VMM.
func mapHugeAligned(size uint64) ([]byte, error) {
	span := uintptr(size) + hugePage
	raw, err := unix.MmapPtr(-1, 0, nil, span, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	head := (hugePage - uintptr(raw)%hugePage) % hugePage
	base := unsafe.Add(raw, head)
	// Give back the unaligned head and the unused tail of the span.
	if head > 0 {
		if err := unix.MunmapPtr(raw, head); err != nil {
			_ = unix.MunmapPtr(raw, span)
			return nil, fmt.Errorf("trim guest memory mapping: %w", err)
		}
	}
	if tail := span - head - uintptr(size); tail > 0 {
		if err := unix.MunmapPtr(unsafe.Add(base, uintptr(size)), tail); err != nil {
			_ = unix.MunmapPtr(base, uintptr(size))
			return nil, fmt.Errorf("trim guest memory mapping: %w", err)
		}
	}
	b := unsafe.Slice((*byte)(base), size)
	// Huge pages are an optimisation; a kernel without THP still works.
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b, nil
}

// Close unmaps guest memory.
func (m *Memory) Close() error {
	var first error
	for _, r := range m.regions {
		if err := unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(r.host)), uintptr(len(r.host))); err != nil && first == nil {
			first = err
		}
	}
	m.regions = nil
	return first
}

// Size is the amount of guest RAM in bytes.
func (m *Memory) Size() uint64 { return m.size }

// Regions lists the guest-physical RAM regions with their host mappings, for
// registering them with KVM.
func (m *Memory) Regions() []layout.Region {
	out := make([]layout.Region, len(m.regions))
	for i, r := range m.regions {
		out[i] = r.Region
	}
	return out
}

// Slice returns the host view of [gpa, gpa+n): it must lie within one region.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range m.regions {
		if gpa >= r.Start && gpa < r.End() {
			off := gpa - r.Start
			if n > r.Size-off {
				break
			}
			return r.host[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("%w: [%#x, +%#x)", ErrOutOfRange, gpa, n)
}

// ReadAt implements io.ReaderAt over guest-physical addresses.
func (m *Memory) ReadAt(p []byte, gpa int64) (int, error) {
	if gpa < 0 {
		return 0, fmt.Errorf("%w: negative address", ErrOutOfRange)
	}
	b, err := m.Slice(uint64(gpa), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(p, b), nil
}

// WriteAt implements io.WriterAt over guest-physical addresses.
func (m *Memory) WriteAt(p []byte, gpa int64) (int, error) {
	if gpa < 0 {
		return 0, fmt.Errorf("%w: negative address", ErrOutOfRange)
	}
	b, err := m.Slice(uint64(gpa), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(b, p), nil
}

// host returns the mapping of region i, for KVM_SET_USER_MEMORY_REGION only.
func (m *Memory) host(i int) []byte { return m.regions[i].host }
