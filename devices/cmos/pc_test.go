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
