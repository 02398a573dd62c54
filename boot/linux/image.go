// Package linux loads x86 Linux kernels in bzImage format through the Linux
// x86 boot protocol (Documentation/arch/x86/boot.rst), entering the kernel at
// its 64-bit entry point with a zero page (struct boot_params) that carries the
// command line, the initrd and the e820 memory map.
package linux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmmdev/vmm/boot"
)

// Sentinel errors for callers that branch on the kind of failure.
var (
	// ErrNotBzImage means the data has no Linux boot sector or setup header.
	ErrNotBzImage = errors.New("not a Linux bzImage")
	// ErrTruncated means the header promises more data than the file holds.
	ErrTruncated = errors.New("truncated bzImage")
	// ErrUnsupported means a bzImage this loader cannot boot (too old a boot
	// protocol, no 64-bit entry point, not loadable high).
	ErrUnsupported = errors.New("unsupported bzImage")
)

// Offsets of the setup header within the file (and within boot_params, which
// embeds it at the same offset).
const (
	offSetupSects    = 0x1f1
	offSysSize       = 0x1f4
	offBootFlag      = 0x1fe
	offJump          = 0x200
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offTypeOfLoader  = 0x210
	offLoadFlags     = 0x211
	offRamdiskImage  = 0x218
	offRamdiskSize   = 0x21c
	offHeapEndPtr    = 0x224
	offCmdLinePtr    = 0x228
	offInitrdAddrMax = 0x22c
	offKernelAlign   = 0x230
	offRelocatable   = 0x234
	offXLoadFlags    = 0x236
	offCmdlineSize   = 0x238
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
	offPrefAddress   = 0x258
	offInitSize      = 0x260

	// headerMax bounds the copied setup header: boot_params has padding up to
	// 0x290, where the EDD MBR signature buffer starts.
	headerMax = 0x290

	bootFlag    = 0xaa55
	headerMagic = 0x53726448 // "HdrS"

	// minVersion is boot protocol 2.12, the first with xloadflags, which
	// says whether the kernel has a 64-bit entry point.
	minVersion = 0x020c

	loadedHigh  = 0x01 // loadflags: protected-mode code loads at 1 MiB (bzImage)
	canUseHeap  = 0x80 // loadflags: heap_end_ptr is valid
	xlfKernel64 = 0x01 // xloadflags: 64-bit entry point at load address + 0x200
	sectorSize  = 512
)

// SetupHeader holds the setup header fields the loader uses.
type SetupHeader struct {
	SetupSects      uint8
	SysSize         uint32 // protected-mode code size in 16-byte paragraphs
	Version         uint16 // boot protocol version, major<<8 | minor
	LoadFlags       uint8
	InitrdAddrMax   uint32 // highest address the initrd may occupy
	KernelAlignment uint32
	Relocatable     bool
	XLoadFlags      uint16
	CmdlineSize     uint32 // maximum command line length, without the NUL
	PayloadOffset   uint32
	PayloadLength   uint32
	PrefAddress     uint64
	InitSize        uint32 // memory the kernel needs from its runtime start
}

// Image is a parsed bzImage. It refers to the source it was parsed from.
type Image struct {
	Header SetupHeader
	// SetupSects is the number of 512-byte setup sectors after the boot sector.
	SetupSects int
	// ProtectedMode is the protected-mode kernel, loaded at 1 MiB: a
	// section of the source, copied into guest memory by Load.
	ProtectedMode *io.SectionReader
	// setupHeader is the raw setup header, copied into the zero page.
	setupHeader []byte
}

// Parse validates a bzImage held in memory (ParseFrom).
func Parse(data []byte) (*Image, error) { return ParseFrom(bytes.NewReader(data)) }

// ParseFrom validates a bzImage and returns its header and protected-mode
// code. It reads only the setup header; the code stays in src until Load.
func ParseFrom(src boot.Source) (*Image, error) {
	size := src.Size()
	data := make([]byte, min(max(size, 0), headerMax))
	if n, err := src.ReadAt(data, 0); n < len(data) {
		return nil, fmt.Errorf("read the setup header: %w", err)
	}
	if len(data) < offHeaderMagic+4 ||
		binary.LittleEndian.Uint16(data[offBootFlag:]) != bootFlag ||
		binary.LittleEndian.Uint32(data[offHeaderMagic:]) != headerMagic {
		return nil, fmt.Errorf("%w: no boot flag 0xaa55 at 0x1fe and \"HdrS\" at 0x202", ErrNotBzImage)
	}
	setupSects := int(data[offSetupSects])
	if setupSects == 0 {
		setupSects = 4 // the boot protocol's historical default
	}
	setupEnd := (setupSects + 1) * sectorSize
	if size < int64(setupEnd) {
		return nil, fmt.Errorf("%w: %d bytes, but the %d setup sectors end at %d", ErrTruncated, size, setupSects, setupEnd)
	}
	le := binary.LittleEndian
	h := SetupHeader{
		SetupSects:      data[offSetupSects],
		SysSize:         le.Uint32(data[offSysSize:]),
		Version:         le.Uint16(data[offVersion:]),
		LoadFlags:       data[offLoadFlags],
		InitrdAddrMax:   le.Uint32(data[offInitrdAddrMax:]),
		KernelAlignment: le.Uint32(data[offKernelAlign:]),
		Relocatable:     data[offRelocatable] != 0,
		XLoadFlags:      le.Uint16(data[offXLoadFlags:]),
		CmdlineSize:     le.Uint32(data[offCmdlineSize:]),
		PayloadOffset:   le.Uint32(data[offPayloadOffset:]),
		PayloadLength:   le.Uint32(data[offPayloadLength:]),
		PrefAddress:     le.Uint64(data[offPrefAddress:]),
		InitSize:        le.Uint32(data[offInitSize:]),
	}
	if h.Version < minVersion {
		return nil, fmt.Errorf("%w: boot protocol %d.%02d, need 2.12 or later for a 64-bit entry point",
			ErrUnsupported, h.Version>>8, h.Version&0xff)
	}
	if h.LoadFlags&loadedHigh == 0 {
		return nil, fmt.Errorf("%w: zImage (not loaded high)", ErrUnsupported)
	}
	if h.XLoadFlags&xlfKernel64 == 0 {
		return nil, fmt.Errorf("%w: no 64-bit entry point (XLF_KERNEL_64 clear)", ErrUnsupported)
	}
	pm := io.NewSectionReader(src, int64(setupEnd), size-int64(setupEnd))
	if pm.Size() == 0 {
		return nil, fmt.Errorf("%w: no protected-mode code after the %d setup sectors", ErrTruncated, setupSects)
	}
	// syssize counts the protected-mode code in 16-byte paragraphs, rounded
	// up; a signed kernel carries its signature after it.
	if need := uint64(h.SysSize) * 16; uint64(pm.Size())+15 < need {
		return nil, fmt.Errorf("%w: %d bytes of protected-mode code, header says %d", ErrTruncated, pm.Size(), need)
	}
	if end := uint64(h.PayloadOffset) + uint64(h.PayloadLength); end > uint64(pm.Size()) {
		return nil, fmt.Errorf("%w: compressed payload ends at %d, protected-mode code is %d bytes", ErrTruncated, end, pm.Size())
	}
	hdrEnd := min(offHeaderMagic+int(data[offJump+1]), headerMax)
	if hdrEnd < offInitSize+4 {
		return nil, fmt.Errorf("%w: setup header ends at %#x, before init_size", ErrUnsupported, hdrEnd)
	}
	return &Image{
		Header:        h,
		SetupSects:    setupSects,
		ProtectedMode: pm,
		setupHeader:   data[offSetupSects:hdrEnd],
	}, nil
}
