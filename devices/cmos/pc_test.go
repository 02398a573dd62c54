package cmos

import (
	"testing"
	"time"
)

func TestSetPC(t *testing.T) {
	c := New(256<<20, time.Now)
	c.SetPC(4)
	read := func(r byte) byte {
		c.Write(offIndex, []byte{r})
		b := []byte{0}
		c.Read(offData, b)
		return b[0]
	}
	if got := read(regCPUCount); got != 3 {
		t.Errorf("CPU count byte %d, want 3", got)
	}
	if got := read(regEquipment); got != equipFPU|equipMouse {
		t.Errorf("equipment %#x", got)
	}
	if got := read(regBootOrder12); got != 0x12 {
		t.Errorf("boot order %#x, want disk then floppy", got)
	}
	if got := read(regBootOrder23); got != 0x30 {
		t.Errorf("third boot device %#x, want CD-ROM", got)
	}
	var sum uint16
	for r := byte(checksumFrom); r <= checksumTo; r++ {
		sum += uint16(read(r))
	}
	if got := uint16(read(regChecksumHi))<<8 | uint16(read(regChecksumHi+1)); got != sum {
		t.Errorf("checksum %#x, want %#x", got, sum)
	}
	if got := read(0x18); got == 0 {
		t.Error("SetPC cleared the memory size")
	}
}

// TestShutdownStatus: the platform's S3 entry value reads back from 0x0F,
// and the BIOS clears it as SeaBIOS's resume does.
func TestShutdownStatus(t *testing.T) {
	c := New(256<<20, time.Now)
	read := func() byte {
		c.Write(offIndex, []byte{regShutdownStatus})
		b := []byte{0}
		c.Read(offData, b)
		return b[0]
	}
	if got := read(); got != 0 {
		t.Fatalf("shutdown status %#x at power-on, want 0", got)
	}
	c.SetShutdownStatus(ShutdownS3Resume)
	if got := read(); got != 0xfe {
		t.Errorf("shutdown status %#x, want 0xfe", got)
	}
	c.Write(offIndex, []byte{regShutdownStatus})
	c.Write(offData, []byte{0})
	if got := read(); got != 0 {
		t.Errorf("shutdown status %#x after the BIOS cleared it", got)
	}
}
