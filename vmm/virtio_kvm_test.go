package vmm

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/internal/kvmtest"
)

// asm32 assembles the few flat 32-bit instructions the virtio guest needs.
type asm32 []byte

func (a asm32) movb(addr uint32, v uint8) asm32 {
	return append(binary.LittleEndian.AppendUint32(append(a, 0xc6, 0x05), addr), v)
}

func (a asm32) movw(addr uint32, v uint16) asm32 {
	return binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint32(append(a, 0x66, 0xc7, 0x05), addr), v)
}

func (a asm32) movl(addr, v uint32) asm32 {
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(append(a, 0xc7, 0x05), addr), v)
}

// spinWhileZero loops while the 16-bit word at addr is zero.
func (a asm32) spinWhileZero(addr uint32) asm32 {
	a = binary.LittleEndian.AppendUint32(append(a, 0x66, 0x83, 0x3d), addr) // cmp word [addr], 0
	return append(a, 0x00, 0x74, 0xf6)                                      // je back to the cmp (-10)
}

// TestKVMVirtioRNGFromGuest drives the virtio-rng function from a flat 32-bit
// guest the way a driver does (reset, features, one queue, DRIVER_OK,
// notify) and waits for the used ring: config space, the transport, the
// split queue, the ioeventfd and the device's goroutine on a real VM.
func TestKVMVirtioRNGFromGuest(t *testing.T) {
	kvmtest.Require(t)
	const (
		bar              = 0xc0000000 // BAR 0 of the only virtio function
		desc, avail, use = 0x10000, 0x11000, 0x12000
		buf              = 0x13000
	)
	code := asm32(nil).
		movb(bar+0x14, 0).    // device_status: reset
		movb(bar+0x14, 1).    // ACKNOWLEDGE
		movb(bar+0x14, 3).    // DRIVER
		movl(bar+0x08, 1).    // driver_feature_select 1
		movl(bar+0x0c, 1).    // VIRTIO_F_VERSION_1
		movb(bar+0x14, 0xb).  // FEATURES_OK
		movw(bar+0x16, 0).    // queue_select 0
		movw(bar+0x18, 4).    // queue_size 4
		movl(bar+0x20, desc). // queue_desc
		movl(bar+0x24, 0).
		movl(bar+0x28, avail). // queue_driver
		movl(bar+0x2c, 0).
		movl(bar+0x30, use). // queue_device
		movl(bar+0x34, 0).
		movw(bar+0x1c, 1).   // queue_enable
		movb(bar+0x14, 0xf). // DRIVER_OK
		movw(bar+0x3000, 0). // notify queue 0
		spinWhileZero(use + 2)
	code = append(code, 0xb0, 0x00, 0xe6, 0xf4, 0xf4) // debug exit 0; hlt

	m, err := New(Config{CPUs: 1, Memory: testMemory, Timeout: 20 * time.Second, RNG: true,
		Program: &Program{Addr: 0x8000, Code: code, Entry: boot.Entry{Mode: boot.Protected32, IP: 0x8000}}}, nil)
	require.NoError(t, err)
	defer m.Close()
	mem := m.Memory()
	d := make([]byte, 16)
	binary.LittleEndian.PutUint64(d, buf)
	binary.LittleEndian.PutUint32(d[8:], 32)
	binary.LittleEndian.PutUint16(d[12:], 2) // VIRTQ_DESC_F_WRITE
	_, err = mem.WriteAt(d, desc)
	require.NoError(t, err)
	_, err = mem.WriteAt([]byte{0, 0, 1, 0, 0, 0}, avail) // flags 0, idx 1, ring[0] = 0
	require.NoError(t, err)

	res := m.Run(context.Background())
	require.Equal(t, StopDebugExit, res.Reason.Kind, res.Reason.String())
	// 16 configuration writes exit to vmm; the notify write does not: KVM
	// completes it and signals the queue's ioeventfd.
	require.Equal(t, uint64(16), res.Exits["mmio"], "MMIO exits")
	used := make([]byte, 12)
	_, err = mem.ReadAt(used, use)
	require.NoError(t, err)
	require.Equal(t, uint16(1), binary.LittleEndian.Uint16(used[2:]), "used idx")
	require.Equal(t, uint32(0), binary.LittleEndian.Uint32(used[4:]), "used id")
	require.Equal(t, uint32(32), binary.LittleEndian.Uint32(used[8:]), "bytes written")
	random := make([]byte, 32)
	_, err = mem.ReadAt(random, buf)
	require.NoError(t, err)
	require.NotEqual(t, make([]byte, 32), random)
}

// TestKVMVirtioConsolePanicFromGuest transmits a kernel panic line through
// virtio-console's transmit queue: it must reach the console output and
// stop the VM as a guest panic, as the same line on the UART does.
func TestKVMVirtioConsolePanicFromGuest(t *testing.T) {
	kvmtest.Require(t)
	const (
		bar             = 0xc0000000
		rxDesc, rxAvail = 0x10000, 0x11000
		rxUsed, txDesc  = 0x12000, 0x13000
		txAvail, txUsed = 0x14000, 0x15000
		text            = 0x16000
		line            = "Kernel panic - not syncing: from hvc0\n"
	)
	queue := func(a asm32, sel uint16, desc, avail, used uint32) asm32 {
		return a.movw(bar+0x16, sel).movw(bar+0x18, 4).
			movl(bar+0x20, desc).movl(bar+0x24, 0).
			movl(bar+0x28, avail).movl(bar+0x2c, 0).
			movl(bar+0x30, used).movl(bar+0x34, 0).
			movw(bar+0x1c, 1)
	}
	code := asm32(nil).movb(bar+0x14, 0).movb(bar+0x14, 1).movb(bar+0x14, 3).
		movl(bar+0x08, 1).movl(bar+0x0c, 1).movb(bar+0x14, 0xb)
	code = queue(code, 0, rxDesc, rxAvail, rxUsed)
	code = queue(code, 1, txDesc, txAvail, txUsed)
	code = code.movb(bar+0x14, 0xf).movw(bar+0x3004, 1) // DRIVER_OK; notify queue 1
	code = append(code, 0xeb, 0xfe)                     // jmp $: vmm must stop the guest

	var out syncBuffer
	m, err := New(Config{CPUs: 1, Memory: testMemory, Timeout: 20 * time.Second, VirtioConsole: true, ConsoleOut: &out,
		Program: &Program{Addr: 0x8000, Code: code, Entry: boot.Entry{Mode: boot.Protected32, IP: 0x8000}}}, nil)
	require.NoError(t, err)
	defer m.Close()
	mem := m.Memory()
	d := make([]byte, 16)
	binary.LittleEndian.PutUint64(d, text)
	binary.LittleEndian.PutUint32(d[8:], uint32(len(line)))
	_, err = mem.WriteAt(d, txDesc)
	require.NoError(t, err)
	_, err = mem.WriteAt([]byte{0, 0, 1, 0, 0, 0}, txAvail)
	require.NoError(t, err)
	_, err = mem.WriteAt([]byte(line), text)
	require.NoError(t, err)

	res := m.Run(context.Background())
	require.Equal(t, StopPanic, res.Reason.Kind, res.Reason.String())
	require.Equal(t, line, out.String())
}

// syncBuffer is a bytes.Buffer safe for the device goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestKVMVirtioMSIXFromGuest has a 64-bit guest take virtio-rng's queue
// interrupt through MSI-X on the host's KVM (testdata/msixirq.s, assembled
// as the Hyper-V guests are): delivered, reprogrammed to another vector,
// held pending in the PBA while masked and delivered on unmask. It runs
// with the vector bound to an irqfd and with the KVM_SIGNAL_MSI fallback.
func TestKVMVirtioMSIXFromGuest(t *testing.T) {
	kvmtest.Require(t)
	code, err := os.ReadFile("testdata/msixirq.bin")
	require.NoError(t, err)
	for _, signal := range []bool{false, true} {
		name := "irqfd"
		if signal {
			name = "signal-msi"
		}
		t.Run(name, func(t *testing.T) {
			const desc, avail, buf = 0x10000, 0x11000, 0x13000
			m, err := New(Config{CPUs: 1, Memory: testMemory, Timeout: 20 * time.Second, RNG: true, signalMSI: signal,
				Program: &Program{Addr: 0x100000, Code: code,
					Entry: boot.Entry{Mode: boot.Long64, IP: 0x100000, RSP: 0x80000}}}, nil)
			require.NoError(t, err)
			defer m.Close()
			mem := m.Memory()
			for i := range 3 {
				d := binary.LittleEndian.AppendUint64(nil, uint64(buf+0x100*i))
				d = binary.LittleEndian.AppendUint32(d, 16)
				d = binary.LittleEndian.AppendUint16(d, 2) // VIRTQ_DESC_F_WRITE
				d = binary.LittleEndian.AppendUint16(d, 0)
				_, err = mem.WriteAt(d, int64(desc+16*i))
				require.NoError(t, err)
				_, err = mem.WriteAt([]byte{byte(i), 0}, int64(avail+4+2*i))
				require.NoError(t, err)
			}

			res := m.Run(context.Background())
			require.Equal(t, StopDebugExit, res.Reason.Kind, res.Reason.String())
			out := make([]byte, 16)
			_, err = mem.ReadAt(out, 0x200000)
			require.NoError(t, err)
			le := binary.LittleEndian
			require.Equal(t, uint32(1), le.Uint32(out[0:]), "vector 0x40 before the reprogramming")
			require.Equal(t, uint32(2), le.Uint32(out[4:]), "vector 0x41 after it, once more on unmask")
			require.Equal(t, uint32(1), le.Uint32(out[8:])&1, "PBA bit while masked")
			require.Equal(t, uint32(1), le.Uint32(out[12:]), "nothing delivered while masked")

			tabs := m.routes.tables
			require.Len(t, tabs, 1)
			vec := tabs[0].vecs[0]
			require.NotNil(t, vec)
			if signal {
				require.Equal(t, -1, vec.fd, "KVM_SIGNAL_MSI path")
			} else {
				require.GreaterOrEqual(t, vec.fd, 0, "irqfd path")
				require.Equal(t, [3]uint32{0xfee00000, 0, 0x41}, vec.msg, "the route follows the reprogramming")
			}
		})
	}
}
