package cmos

// Registers a PC BIOS reads beyond the memory sizes, at the values QEMU's
// pc.c gives them (SeaBIOS and OVMF read these on QEMU's machines).
const (
	regFloppyTypes = 0x10 // drive types of A: and B:, none
	regDiskTypes   = 0x12 // IDE drive types, none (disks are virtio)
	regEquipment   = 0x14 // installed equipment
	regBootOrder23 = 0x38 // third boot device (high nibble); bit 0 disables the floppy signature check
	regBootOrder12 = 0x3d // second (high nibble) and first boot device
	regCPUCount    = 0x5f // number of CPUs minus one

	equipFPU   = 0x02
	equipMouse = 0x04

	// Boot device codes of the boot-order nibbles.
	bootFloppy = 1
	bootDisk   = 2
	bootCDROM  = 3
)

// SetPC fills in the equipment, CPU count and boot order bytes that
// firmware reads (disk first, then floppy and CD-ROM, as QEMU's default
// "cad"), keeping the checksum of 0x10-0x2d valid.
func (c *CMOS) SetPC(cpus int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ram[regFloppyTypes] = 0
	c.ram[regDiskTypes] = 0
	c.ram[regEquipment] = equipFPU | equipMouse
	c.ram[regBootOrder12] = bootFloppy<<4 | bootDisk
	c.ram[regBootOrder23] = bootCDROM << 4
	c.ram[regCPUCount] = byte(min(max(cpus, 1), 256) - 1)
	c.updateChecksum()
}

// updateChecksum recomputes the standard checksum over 0x10-0x2d.
func (c *CMOS) updateChecksum() {
	var sum uint16
	for _, b := range c.ram[checksumFrom : checksumTo+1] {
		sum += uint16(b)
	}
	c.ram[regChecksumHi], c.ram[regChecksumHi+1] = byte(sum>>8), byte(sum)
}

// The shutdown status byte (0x0F): what a PC BIOS does when it starts
// again without a power cycle. ShutdownS3Resume is QEMU's value for a wake
// from S3, which SeaBIOS answers by jumping to the OS's FACS waking vector.
const (
	regShutdownStatus = 0x0f
	ShutdownS3Resume  = 0xfe
)

// SetShutdownStatus sets the shutdown status byte, as the platform does
// on entering S3 (QEMU's RTC on suspend).
func (c *CMOS) SetShutdownStatus(v byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ram[regShutdownStatus] = v
}
