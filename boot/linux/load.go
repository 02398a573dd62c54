package linux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/boot/internal/gmem"
	"github.com/vmmdev/vmm/firmware/e820"
	"github.com/vmmdev/vmm/layout"
)

// Sentinel errors of Load and Check.
var (
	ErrCmdlineTooLong  = errors.New("kernel command line too long")
	ErrInitrdTooLarge  = errors.New("initrd does not fit in guest memory")
	ErrNotEnoughMemory = errors.New("not enough guest memory for the kernel")
)

// boot_params ("zero page") offsets outside the setup header.
const (
	zeroPageSize      = 4096
	offACPIRSDPAddr   = 0x070
	offExtRamdiskImg  = 0x0c0
	offExtRamdiskSize = 0x0c4
	offE820Entries    = 0x1e8
	offE820Table      = 0x2d0
	e820MaxEntries    = 128
	e820EntrySize     = 20

	// loaderUndefined is type_of_loader for a boot loader without an assigned ID.
	loaderUndefined = 0xff
	// heapEnd is heap_end_ptr as QEMU sets it: the setup code's heap ends
	// 0x200 below the 64 KiB of its segment. The 64-bit entry skips the setup
	// code, but a kernel reading the field finds a sane value.
	heapEnd = 0xfe00
	// defaultInitrdAddrMax is the boot protocol's limit for kernels whose
	// header does not say.
	defaultInitrdAddrMax = 0x37ffffff
	// entryOffset is the 64-bit entry point's offset in the protected-mode code.
	entryOffset = 0x200
	pageSize    = 4096
)

// placement is where Load puts things, computed without touching memory.
type placement struct {
	kernelEnd  uint64 // end of the memory the kernel claims while booting
	initrdAddr uint64
}

// Check validates that the image, a command line and an initrd of initrdSize
// bytes fit a guest with memSize bytes of RAM, without writing anything.
func (img *Image) Check(memSize uint64, cmdline string, initrdSize uint64) error {
	_, err := img.place(memSize, cmdline, initrdSize)
	return err
}

func (img *Image) place(memSize uint64, cmdline string, initrdSize uint64) (placement, error) {
	h := img.Header
	if uint64(len(cmdline)) > uint64(h.CmdlineSize) || len(cmdline) >= layout.CmdlineMax {
		return placement{}, fmt.Errorf("%w: %d bytes, the kernel accepts %d", ErrCmdlineTooLong, len(cmdline), min(h.CmdlineSize, layout.CmdlineMax-1))
	}
	lowEnd := layout.RAMRegions(memSize)[0].End()
	// The decompressor runs at the kernel's runtime start: the load address
	// rounded up to kernel_alignment but never below pref_address (the
	// kernel's LOAD_PHYSICAL_ADDR), and needs init_size bytes there.
	runtimeStart := max(alignUp(layout.HighMemory, uint64(h.KernelAlignment)), h.PrefAddress)
	if runtimeStart > lowEnd {
		return placement{}, fmt.Errorf("%w: the kernel runs at %#x, low RAM ends at %#x", ErrNotEnoughMemory, runtimeStart, lowEnd)
	}
	p := placement{kernelEnd: max(layout.HighMemory+uint64(img.ProtectedMode.Size()), runtimeStart+uint64(h.InitSize))}
	if p.kernelEnd > lowEnd {
		return placement{}, fmt.Errorf("%w: the kernel needs memory up to %#x, low RAM ends at %#x", ErrNotEnoughMemory, p.kernelEnd, lowEnd)
	}
	if initrdSize == 0 {
		return p, nil
	}
	addrMax := uint64(h.InitrdAddrMax)
	if addrMax == 0 {
		addrMax = defaultInitrdAddrMax
	}
	top := min(addrMax+1, lowEnd)
	if initrdSize > top || (top-initrdSize)&^(pageSize-1) < p.kernelEnd {
		return placement{}, fmt.Errorf("%w: %d bytes between the kernel's end %#x and %#x", ErrInitrdTooLarge, initrdSize, p.kernelEnd, top)
	}
	p.initrdAddr = (top - initrdSize) &^ (pageSize - 1)
	return p, nil
}

// alignUp rounds x up to a multiple of a (a of 0 or 1 leaves x alone).
func alignUp(x, a uint64) uint64 {
	if a <= 1 {
		return x
	}
	return (x + a - 1) / a * a
}

// Load writes the kernel, command line, initrd and zero page into guest
// memory and returns the 64-bit entry state. memSize is the guest's RAM size;
// memMap is the e820 map handed to the kernel; acpiRSDP, if not zero, is the
// RSDP's address for kernels that take it from the zero page (protocol 2.14+).
func (img *Image) Load(mem io.WriterAt, memSize uint64, cmdline string, initrd []byte, memMap []e820.Entry, acpiRSDP uint64) (boot.Entry, error) {
	return img.LoadFrom(mem, memSize, cmdline, bytes.NewReader(initrd), memMap, acpiRSDP)
}

// LoadFrom is Load with the initrd read from a file: it and the kernel go
// from their files into guest memory without a copy on the heap.
func (img *Image) LoadFrom(mem io.WriterAt, memSize uint64, cmdline string, initrd boot.Source, memMap []e820.Entry, acpiRSDP uint64) (boot.Entry, error) {
	initrdSize := uint64(max(initrd.Size(), 0))
	p, err := img.place(memSize, cmdline, initrdSize)
	if err != nil {
		return boot.Entry{}, err
	}
	if len(memMap) > e820MaxEntries {
		return boot.Entry{}, fmt.Errorf("e820 map has %d entries, the zero page holds %d", len(memMap), e820MaxEntries)
	}
	if err := gmem.Copy(mem, layout.HighMemory, img.ProtectedMode, 0, uint64(img.ProtectedMode.Size())); err != nil {
		return boot.Entry{}, fmt.Errorf("load kernel: %w", err)
	}
	if err := gmem.Write(mem, layout.Cmdline, append([]byte(cmdline), 0)); err != nil {
		return boot.Entry{}, fmt.Errorf("load command line: %w", err)
	}
	if err := gmem.Copy(mem, p.initrdAddr, initrd, 0, initrdSize); err != nil {
		return boot.Entry{}, fmt.Errorf("load initrd: %w", err)
	}
	zp := img.zeroPage(p, initrdSize, memMap, acpiRSDP)
	if err := gmem.Write(mem, layout.ZeroPage, zp); err != nil {
		return boot.Entry{}, fmt.Errorf("write zero page: %w", err)
	}
	return boot.Entry{Mode: boot.Long64, IP: layout.HighMemory + entryOffset, RSI: layout.ZeroPage}, nil
}

// zeroPage builds boot_params: zeroed (so the sentinel byte at 0x1ef is 0 and
// the kernel trusts every field), the file's setup header, and what the boot
// loader fills in.
func (img *Image) zeroPage(p placement, initrdSize uint64, memMap []e820.Entry, acpiRSDP uint64) []byte {
	le := binary.LittleEndian
	zp := make([]byte, zeroPageSize)
	copy(zp[offSetupSects:], img.setupHeader)
	zp[offTypeOfLoader] = loaderUndefined
	zp[offLoadFlags] |= canUseHeap
	le.PutUint16(zp[offHeapEndPtr:], heapEnd)
	le.PutUint32(zp[offCmdLinePtr:], layout.Cmdline)
	// The initrd lies below 4 GiB, so the ext_ramdisk (high 32 bits) fields stay 0.
	le.PutUint32(zp[offRamdiskImage:], uint32(p.initrdAddr))
	le.PutUint32(zp[offRamdiskSize:], uint32(initrdSize))
	le.PutUint32(zp[offExtRamdiskImg:], uint32(p.initrdAddr>>32))
	le.PutUint32(zp[offExtRamdiskSize:], uint32(initrdSize>>32))
	if acpiRSDP != 0 && img.Header.Version >= 0x020e {
		le.PutUint64(zp[offACPIRSDPAddr:], acpiRSDP)
	}
	zp[offE820Entries] = uint8(len(memMap))
	for i, e := range memMap {
		b := zp[offE820Table+i*e820EntrySize:]
		le.PutUint64(b[0:], e.Addr)
		le.PutUint64(b[8:], e.Size)
		le.PutUint32(b[16:], uint32(e.Type))
	}
	return zp
}
