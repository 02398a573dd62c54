package kvm

import (
	"errors"
	"testing"
)

func TestEncodeGSIRouting(t *testing.T) {
	buf, err := encodeGSIRouting([]IRQRoute{
		{GSI: 4, Type: IRQRoutingIRQChip, IRQChip: IRQChipIOAPIC, Pin: 4},
		{GSI: 24, Type: IRQRoutingMSI, Flags: IRQRouteValidDevID, AddressLo: 0xfee00000, AddressHi: 1, Data: 0x31, DevID: 8},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Header (nr=2, flags=0) then two 48-byte entries.
	if len(buf) != 1+2*6 || buf[0] != 2 {
		t.Fatalf("buffer %d words, header %#x", len(buf), buf[0])
	}
	// Entry 0: gsi 4, type 1 | flags 0, pad | chip 2, pin 4.
	if buf[1] != 4|1<<32 || buf[2] != 0 || buf[3] != 2|4<<32 {
		t.Errorf("irqchip entry words %#x", buf[1:4])
	}
	// Entry 1 starts at word 7: gsi 24, type 2 | flags 1 | lo, hi | data, devid.
	if buf[7] != 24|2<<32 || buf[8] != 1 || buf[9] != 0xfee00000|1<<32 || buf[10] != 0x31|8<<32 {
		t.Errorf("msi entry words %#x", buf[7:11])
	}
	if _, err := encodeGSIRouting([]IRQRoute{{GSI: 1, Type: 4}}); !errors.Is(err, ErrInvalidRoute) {
		t.Errorf("Hyper-V SINT route: %v, want ErrInvalidRoute", err)
	}
	if buf, err := encodeGSIRouting(nil); err != nil || len(buf) != 1 || buf[0] != 0 {
		t.Errorf("empty table = %v, %v", buf, err)
	}
}
