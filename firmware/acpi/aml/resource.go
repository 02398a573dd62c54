package aml

import (
	"encoding/binary"
	"fmt"
)

// Descriptor is one resource data descriptor (ACPI 6.5 §6.4) of a
// ResourceTemplate. It is not AML by itself: it only appears inside the
// buffer a ResourceTemplate makes.
type Descriptor interface {
	Descriptor() []byte
}

// ResourceTemplate is ASL's ResourceTemplate(){...}: a Buffer holding the
// descriptors followed by an End Tag.
func ResourceTemplate(descs ...Descriptor) Term {
	var b []byte
	for _, d := range descs {
		b = append(b, d.Descriptor()...)
	}
	// The small End Tag item; a zero checksum means "treat as valid".
	return Buffer(append(b, 0x79, 0x00))
}

type descBytes []byte

func (d descBytes) Descriptor() []byte { return append([]byte(nil), d...) }

// IO is the small I/O port descriptor: IO(Decode16|Decode10, min, max, align, length).
func IO(decode16 bool, minBase, maxBase uint16, align, length uint8) Descriptor {
	b := []byte{0x47, 0}
	if decode16 {
		b[1] = 1
	}
	b = binary.LittleEndian.AppendUint16(b, minBase)
	b = binary.LittleEndian.AppendUint16(b, maxBase)
	return descBytes(append(b, align, length))
}

// FixedIO is the small fixed-location I/O descriptor (10-bit decode):
// FixedIO(base, length).
func FixedIO(base uint16, length uint8) Descriptor {
	if base > 0x3ff {
		panic(fmt.Sprintf("aml: FixedIO base %#x does not fit 10 bits", base))
	}
	return descBytes(append(binary.LittleEndian.AppendUint16([]byte{0x4b}, base), length))
}

func irqMask(irqs []uint8) uint16 {
	var mask uint16
	for _, irq := range irqs {
		if irq > 15 {
			panic(fmt.Sprintf("aml: IRQ descriptor: IRQ %d is above 15", irq))
		}
		mask |= 1 << irq
	}
	return mask
}

// IRQNoFlags is the two-byte IRQ descriptor: ISA IRQs, edge-triggered, active
// high, exclusive.
func IRQNoFlags(irqs ...uint8) Descriptor {
	return descBytes(binary.LittleEndian.AppendUint16([]byte{0x22}, irqMask(irqs)))
}

// IRQ is the three-byte IRQ descriptor with explicit flags:
// IRQ(Edge|Level, ActiveHigh|ActiveLow, Exclusive|Shared){irqs}.
func IRQ(edge, activeLow, shared bool, irqs ...uint8) Descriptor {
	var flags byte
	if edge {
		flags |= 1 << 0
	}
	if activeLow {
		flags |= 1 << 3
	}
	if shared {
		flags |= 1 << 4
	}
	return descBytes(append(binary.LittleEndian.AppendUint16([]byte{0x23}, irqMask(irqs)), flags))
}

// Memory32Fixed is the large fixed-location 32-bit memory descriptor:
// Memory32Fixed(ReadWrite|ReadOnly, base, length).
func Memory32Fixed(readWrite bool, base, length uint32) Descriptor {
	b := []byte{0x86, 9, 0, 0}
	if readWrite {
		b[3] = 1
	}
	b = binary.LittleEndian.AppendUint32(b, base)
	return descBytes(binary.LittleEndian.AppendUint32(b, length))
}

// Interrupt is the extended interrupt descriptor, for GSIs above 15:
// Interrupt(ResourceConsumer|ResourceProducer, Edge|Level, ActiveHigh|ActiveLow,
// Exclusive|Shared){gsis}.
func Interrupt(consumer, edge, activeLow, shared bool, gsis ...uint32) Descriptor {
	if len(gsis) == 0 || len(gsis) > 255 {
		panic(fmt.Sprintf("aml: Interrupt descriptor needs 1 to 255 interrupts, got %d", len(gsis)))
	}
	var flags byte
	for i, set := range []bool{consumer, edge, activeLow, shared} {
		if set {
			flags |= 1 << i
		}
	}
	b := binary.LittleEndian.AppendUint16([]byte{0x89}, uint16(2+4*len(gsis)))
	b = append(b, flags, byte(len(gsis)))
	for _, g := range gsis {
		b = binary.LittleEndian.AppendUint32(b, g)
	}
	return descBytes(b)
}

// ResourceType is the kind of range an address space descriptor describes.
type ResourceType uint8

// Resource types of address space descriptors.
const (
	MemoryRange    ResourceType = 0
	IORange        ResourceType = 1
	BusNumberRange ResourceType = 2
)

// Type-specific flags of memory ranges (_MEM and _RW).
const (
	MemReadWrite      = 1 << 0
	MemNonCacheable   = 0 << 1
	MemCacheable      = 1 << 1
	MemWriteCombining = 2 << 1
	MemPrefetchable   = 3 << 1
)

// IOEntireRange is the type-specific flag of I/O ranges that decode both ISA
// and non-ISA ports (_RNG = 3).
const IOEntireRange = 3

// AddressSpace is the full form of the Word, DWord and QWord address space
// descriptors (ACPI 6.5 §6.4.3.5) without a resource source.
type AddressSpace struct {
	Type ResourceType
	// Consumer marks a range the device uses itself; a bridge's _CRS lists the
	// ranges it produces (decodes for its children) with Consumer false.
	Consumer          bool
	SubtractiveDecode bool
	MinFixed          bool
	MaxFixed          bool
	// TypeFlags are the type-specific flags (Mem* or IOEntireRange).
	TypeFlags   uint8
	Granularity uint64
	Min         uint64
	Max         uint64
	Translation uint64
	Length      uint64
}

// Word encodes the Word (16-bit) form; a field that does not fit 16 bits is a
// programming error and panics.
func (a AddressSpace) Word() Descriptor { return a.encode(0x88, 2) }

// DWord encodes the DWord (32-bit) form.
func (a AddressSpace) DWord() Descriptor { return a.encode(0x87, 4) }

// QWord encodes the QWord (64-bit) form.
func (a AddressSpace) QWord() Descriptor { return a.encode(0x8a, 8) }

func (a AddressSpace) encode(tag byte, width int) Descriptor {
	var general byte
	for i, set := range []bool{a.Consumer, a.SubtractiveDecode, a.MinFixed, a.MaxFixed} {
		if set {
			general |= 1 << i
		}
	}
	b := binary.LittleEndian.AppendUint16([]byte{tag}, uint16(3+5*width))
	b = append(b, byte(a.Type), general, a.TypeFlags)
	for _, v := range []uint64{a.Granularity, a.Min, a.Max, a.Translation, a.Length} {
		if width < 8 && v>>(8*width) != 0 {
			panic(fmt.Sprintf("aml: address space field %#x does not fit %d bytes", v, width))
		}
		var f [8]byte
		binary.LittleEndian.PutUint64(f[:], v)
		b = append(b, f[:width]...)
	}
	return descBytes(b)
}

// producer is the shape of a bridge's window: produced, positive decode,
// both ends fixed, length max-min+1.
func producer(t ResourceType, flags uint8, minAddr, maxAddr uint64) AddressSpace {
	return AddressSpace{
		Type: t, MinFixed: true, MaxFixed: true, TypeFlags: flags,
		Min: minAddr, Max: maxAddr, Length: maxAddr - minAddr + 1,
	}
}

// WordBusNumber is ASL's WordBusNumber(ResourceProducer, MinFixed, MaxFixed,
// PosDecode, 0, min, max, 0, max-min+1).
func WordBusNumber(minBus, maxBus uint16) Descriptor {
	return producer(BusNumberRange, 0, uint64(minBus), uint64(maxBus)).Word()
}

// WordIO is ASL's WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode,
// EntireRange, 0, min, max, 0, max-min+1).
func WordIO(minPort, maxPort uint16) Descriptor {
	return producer(IORange, IOEntireRange, uint64(minPort), uint64(maxPort)).Word()
}

// DWordIO is the DWord form of WordIO.
func DWordIO(minPort, maxPort uint32) Descriptor {
	return producer(IORange, IOEntireRange, uint64(minPort), uint64(maxPort)).DWord()
}

// DWordMemory is ASL's DWordMemory(ResourceProducer, PosDecode, MinFixed,
// MaxFixed, <cache>, ReadWrite|ReadOnly, 0, min, max, 0, max-min+1), with
// cache one of the Mem* cacheability constants.
func DWordMemory(cache uint8, readWrite bool, minAddr, maxAddr uint32) Descriptor {
	return producer(MemoryRange, memFlags(cache, readWrite), uint64(minAddr), uint64(maxAddr)).DWord()
}

// QWordMemory is the QWord form of DWordMemory.
func QWordMemory(cache uint8, readWrite bool, minAddr, maxAddr uint64) Descriptor {
	return producer(MemoryRange, memFlags(cache, readWrite), minAddr, maxAddr).QWord()
}

func memFlags(cache uint8, readWrite bool) uint8 {
	f := cache & (3 << 1)
	if readWrite {
		f |= MemReadWrite
	}
	return f
}
