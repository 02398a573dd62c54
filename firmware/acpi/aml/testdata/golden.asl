// Reference for TestGolden: compiled with Debian acpica-tools 20200925 as
// `iasl -on -p golden golden.asl` (named-reference optimisation off, so
// paths stay as written). The test compares golden.aml after its 36-byte header.
DefinitionBlock ("", "DSDT", 2, "VMMDEV", "VMMDSDT", 1)
{
    Name (\_S5, Package () { 5, 0 })
    Scope (\_SB)
    {
        Device (COM1)
        {
            Name (_HID, EisaId ("PNP0501"))
            Name (_UID, One)
            Name (_CRS, ResourceTemplate ()
            {
                IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08)
                IRQNoFlags () {4}
            })
        }
        Device (PEVT)
        {
            Name (_HID, "QEMU0001")
            Name (_CRS, ResourceTemplate () { IO (Decode16, 0x0505, 0x0505, 0x01, 0x01) })
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
        }
        Device (PCI0)
        {
            Name (_HID, EisaId ("PNP0A08"))
            Name (_CID, EisaId ("PNP0A03"))
            Name (_CRS, ResourceTemplate ()
            {
                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0x0000, 0x0000, 0x00FF, 0x0000, 0x0100,,,)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0x0000, 0x0000, 0x0CF7, 0x0000, 0x0CF8,,, , TypeStatic, DenseTranslation)
                DWordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0x00000000, 0x00000D00, 0x0000FFFF, 0x00000000, 0x0000F300,,, , TypeStatic, DenseTranslation)
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0x00000000, 0xC0000000, 0xFEBFFFFF, 0x00000000, 0x3EC00000,,, , AddressRangeMemory, TypeStatic)
                QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Prefetchable, ReadWrite, 0x0000000000000000, 0x0000008000000000, 0x000000FFFFFFFFFF, 0x0000000000000000, 0x0000008000000000,,, , AddressRangeMemory, TypeStatic)
                Memory32Fixed (ReadWrite, 0xFEC00000, 0x00001000)
                IRQ (Level, ActiveLow, Shared) {5, 10}
                Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) {16, 17}
                FixedIO (0x0060, 0x01)
            })
            Name (INTS, Package () { 0x1234, 0x12345678, 0x123456789A, Ones, "abc", Buffer () {1, 2, 3} })
            Name (LNKS, Package () { Package () { 0xFFFF, Zero, ^PEVT, Zero }, Package () { 0x0001FFFF, One, \_SB.PEVT, Zero }})
            Method (MTH1, 2, Serialized)
            {
                Store (Arg0, Local0)
                If (LEqual (Arg1, 0x10)) { Return (One) }
                Else { Return (And (Local0, 0xFF)) }
            }
        }
    }
}
