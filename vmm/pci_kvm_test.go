package vmm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestKVMPCIConfigFromGuest reads vendor and device ids through ports
// 0xCF8/0xCFC from a real-mode guest: the host bridge at 00:00.0, the
// virtio-rng function placed at 00:01.0, and an empty slot.
func TestKVMPCIConfigFromGuest(t *testing.T) {
	readID := func(addr uint32) []byte {
		return []byte{
			0xba, 0xf8, 0x0c, // mov dx, 0xcf8
			0x66, 0xb8, byte(addr), byte(addr >> 8), byte(addr >> 16), byte(addr >> 24), // mov eax, addr
			0x66, 0xef, // out dx, eax
			0xba, 0xfc, 0x0c, // mov dx, 0xcfc
			0x66, 0xed, // in eax, dx
			0xba, 0xf8, 0x03, // mov dx, 0x3f8
			0xee,                         // out dx, al
			0x66, 0xc1, 0xe8, 0x08, 0xee, // shr eax, 8; out dx, al
			0x66, 0xc1, 0xe8, 0x08, 0xee,
			0x66, 0xc1, 0xe8, 0x08, 0xee,
		}
	}
	var code []byte
	code = append(code, readID(0x80000000)...)
	code = append(code, readID(0x80000800)...)
	code = append(code, readID(0x80001000)...)
	code = append(code, readID(0x80000810)...)  // BAR 0 of 00:01.0
	code = append(code, 0xb0, 0x00, 0xe6, 0xf4) // debug exit 0
	r := runGuest(t, Config{Program: realModeProgram(code), RNG: true})
	require.Equal(t, StopDebugExit, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, []byte{
		0x86, 0x80, 0x37, 0x12, // i440FX
		0xf4, 0x1a, 0x44, 0x10, // virtio 1.x rng
		0xff, 0xff, 0xff, 0xff, // nothing at 00:02.0
		0x00, 0x00, 0x00, 0xc0, // BAR 0 placed at the window's start
	}, r.console)
}
