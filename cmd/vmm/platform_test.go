package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// guestFWCfgCPUs reads fw_cfg's signature and FW_CFG_NB_CPUS through ports
// 0x510/0x511 and exits with the CPU count (0x7f if the signature is not
// "QEMU" or the count does not fit a byte).
func guestFWCfgCPUs() []byte {
	return newAsm().
		emit(0x66, 0xba, 0x10, 0x05, 0x66, 0x31, 0xc0, 0x66, 0xef). // mov dx, 0x510; xor ax, ax; out dx, ax (signature)
		emit(0x66, 0xba, 0x11, 0x05).                               // mov dx, 0x511
		emit(0x31, 0xdb, 0xb9, 0x04, 0x00, 0x00, 0x00).             // xor ebx, ebx; mov ecx, 4
		label("sig").
		emit(0xec, 0x88, 0xc3, 0xc1, 0xcb, 0x08). // in al, dx; mov bl, al; ror ebx, 8
		j(0xe2, "sig").
		emit(0x81, 0xfb).emit(le32(0x554d4551)...). // cmp ebx, "QEMU"
		j(0x75, "fail").
		emit(0x66, 0xba, 0x10, 0x05, 0x66, 0xb8, 0x05, 0x00, 0x66, 0xef). // mov dx, 0x510; mov ax, 5; out dx, ax (NB_CPUS)
		emit(0x66, 0xba, 0x11, 0x05).                                     // mov dx, 0x511
		emit(0xec, 0x88, 0xc3, 0xec, 0x88, 0xc7).                         // in al, dx; mov bl, al; in al, dx; mov bh, al
		emit(0x84, 0xff).                                                 // test bh, bh
		j(0x75, "fail").
		emit(0x88, 0xd8, 0xe6, 0xf4, 0xf4). // mov al, bl; out 0xf4, al; hlt
		label("fail").
		debugExit(0x7f).
		bytes()
}

// TestKVMFWCfgDirectBoot: fw_cfg answers in direct boot, with the CPU count.
func TestKVMFWCfgDirectBoot(t *testing.T) {
	r := runVMM(t, guestFWCfgCPUs(), "--cpus", "3", "--timeout", "20s")
	require.Equal(t, 2*3+1, r.code, "stderr: %s", r.stderr)
	require.Equal(t, "debug-exit port", r.report.ExitSource)
}
