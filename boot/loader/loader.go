// Package loader picks the boot protocol for a kernel image and loads it:
// Linux bzImage (64-bit boot protocol), ELF with a PVH entry note, or
// multiboot v1. Check validates the same inputs without guest memory, so a
// command line tool can reject a bad kernel before it creates a VM.
package loader

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/boot/linux"
	"github.com/vmmdev/vmm/boot/multiboot"
	"github.com/vmmdev/vmm/boot/pvh"
	"github.com/vmmdev/vmm/firmware/e820"
)

// ErrNotKernel means the image is none of the supported kernel formats.
var ErrNotKernel = errors.New("not a kernel")

// Format is a kernel image format.
type Format int

// The formats Detect tells apart.
const (
	Unknown Format = iota
	BzImage
	PVH
	Multiboot
)

func (f Format) String() string {
	switch f {
	case BzImage:
		return "bzImage"
	case PVH:
		return "PVH ELF"
	case Multiboot:
		return "multiboot"
	}
	return "unknown"
}

// Detect tells which format data claims to be, in this order: a bzImage
// setup header; an ELF with a PVH entry note; a multiboot header (an ELF
// kernel without a PVH note but with a multiboot header is multiboot). An ELF
// that is too broken to look for notes in counts as PVH, so that loading it
// reports what is wrong with the ELF. Anything else is ErrNotKernel.
// Detect does not validate the image beyond that; Check and Load do.
func Detect(data []byte) (Format, error) {
	if _, err := linux.Parse(data); !errors.Is(err, linux.ErrNotBzImage) {
		return BzImage, nil
	}
	_, pvhErr := pvh.Parse(data)
	if pvhErr == nil {
		return PVH, nil
	}
	if _, err := multiboot.Parse(data); !errors.Is(err, multiboot.ErrNoHeader) {
		return Multiboot, nil
	}
	if !errors.Is(pvhErr, pvh.ErrNotELF) && !errors.Is(pvhErr, pvh.ErrNoPVHNote) {
		return PVH, nil
	}
	if errors.Is(pvhErr, pvh.ErrNoPVHNote) {
		return Unknown, fmt.Errorf("%w: ELF file with neither a PVH entry note nor a multiboot header", ErrNotKernel)
	}
	return Unknown, fmt.Errorf("%w: no bzImage setup header, no ELF PVH entry note, no multiboot header", ErrNotKernel)
}

// kernel is a parsed image of any format.
type kernel interface {
	check(memSize uint64, cmdline string, initrdSize uint64) error
	load(mem io.WriterAt, memSize uint64, cmdline string, initrd boot.Source, acpiRSDP uint64) (boot.Entry, error)
}

// parse reads the kernel image at path (as the user named it). A bzImage is
// parsed from its header alone and a PVH ELF from its headers and notes;
// both stay in src until load. Anything else (multiboot kernels, which the
// loader walks whole, and broken files, for Detect's verdict) is read into
// memory.
func parse(src boot.Source, path string) (kernel, error) {
	img, err := linux.ParseFrom(src)
	if !errors.Is(err, linux.ErrNotBzImage) {
		if err != nil {
			return nil, wrap(BzImage, err)
		}
		return bzImage{img}, nil
	}
	if pk, err := pvh.ParseFrom(src); err == nil {
		return pvhKernel{pk}, nil
	}
	data := make([]byte, max(src.Size(), 0))
	if n, err := src.ReadAt(data, 0); n < len(data) {
		return nil, fmt.Errorf("read kernel: %w", err)
	}
	format, err := Detect(data)
	if err != nil {
		return nil, err
	}
	var k kernel
	switch format {
	case PVH:
		var pk *pvh.Kernel
		if pk, err = pvh.Parse(data); err == nil {
			k = pvhKernel{pk}
		}
	case Multiboot:
		var mk *multiboot.Kernel
		if mk, err = multiboot.Parse(data); err == nil {
			k = multibootKernel{mk, path}
		}
	default:
		err = fmt.Errorf("%w: %v", ErrNotKernel, format)
	}
	if err != nil {
		return nil, wrap(format, err)
	}
	return k, nil
}

// Check validates a kernel image, an initrd of initrdSize bytes and a command
// line against a guest of memSize bytes: format, truncation, command line
// length, and that everything fits in memory. It touches no guest memory.
// path is the kernel's path as the user gave it (multiboot passes it as the
// command line's first word).
func Check(kernel boot.Source, path string, initrdSize int64, cmdline string, memSize uint64) error {
	if initrdSize < 0 {
		return fmt.Errorf("initrd size %d", initrdSize)
	}
	k, err := parse(kernel, path)
	if err != nil {
		return err
	}
	return k.check(memSize, cmdline, uint64(initrdSize))
}

// Load loads a kernel image of any supported format, with its initrd and
// command line, into guest memory and returns the entry state for
// boot.SetupCPU; initrd may be nil. acpiRSDP, if not zero, is handed to protocols that carry it;
// path is Check's.
func Load(kernel boot.Source, path string, initrd boot.Source, cmdline string, mem io.WriterAt, memSize uint64, acpiRSDP uint64) (boot.Entry, error) {
	k, err := parse(kernel, path)
	if err != nil {
		return boot.Entry{}, err
	}
	if initrd == nil {
		initrd = bytes.NewReader(nil)
	}
	return k.load(mem, memSize, cmdline, initrd, acpiRSDP)
}

type bzImage struct{ *linux.Image }

func (k bzImage) check(memSize uint64, cmdline string, initrdSize uint64) error {
	return wrap(BzImage, k.Check(memSize, cmdline, initrdSize))
}

func (k bzImage) load(mem io.WriterAt, memSize uint64, cmdline string, initrd boot.Source, acpiRSDP uint64) (boot.Entry, error) {
	e, err := k.LoadFrom(mem, memSize, cmdline, initrd, e820.Map(memSize), acpiRSDP)
	return e, wrap(BzImage, err)
}

type pvhKernel struct{ *pvh.Kernel }

func (k pvhKernel) check(memSize uint64, cmdline string, initrdSize uint64) error {
	return wrap(PVH, k.Check(memSize, cmdline, initrdSize))
}

func (k pvhKernel) load(mem io.WriterAt, memSize uint64, cmdline string, initrd boot.Source, acpiRSDP uint64) (boot.Entry, error) {
	e, err := k.LoadFrom(mem, memSize, cmdline, initrd, e820.Map(memSize), acpiRSDP)
	return e, wrap(PVH, err)
}

// multibootKernel passes the initrd as module 0 and "PATH ARGS" as the
// command line. Multiboot v1 has no RSDP field; the guest finds the RSDP by
// scanning the BIOS area.
type multibootKernel struct {
	*multiboot.Kernel
	path string
}

func (k multibootKernel) check(memSize uint64, cmdline string, initrdSize uint64) error {
	var sizes []uint64
	if initrdSize > 0 {
		sizes = []uint64{initrdSize}
	}
	return wrap(Multiboot, k.Check(memSize, multiboot.CommandLine(k.path, cmdline), sizes, len(e820.Map(memSize))))
}

func (k multibootKernel) load(mem io.WriterAt, memSize uint64, cmdline string, initrd boot.Source, _ uint64) (boot.Entry, error) {
	var mods []boot.Source
	if initrd.Size() > 0 {
		mods = []boot.Source{initrd}
	}
	e, err := k.LoadFrom(mem, memSize, multiboot.CommandLine(k.path, cmdline), mods, e820.Map(memSize))
	return e, wrap(Multiboot, err)
}

func wrap(f Format, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%v kernel: %w", f, err)
}
