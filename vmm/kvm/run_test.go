package kvm

import (
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"
)

// fakeMapping returns an 8-byte aligned buffer the size of a real vCPU
// mapping (kvm_run page, PIO page, coalesced MMIO page).
func fakeMapping(t testing.TB) ([]byte, *RunData) {
	words := make([]uint64, 3*4096/8)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	r, err := RunDataFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return b, r
}

func TestRunDataFromBytes(t *testing.T) {
	if _, err := RunDataFromBytes(make([]byte, 100)); !errors.Is(err, ErrRunDataBuffer) {
		t.Errorf("short buffer: %v, want ErrRunDataBuffer", err)
	}
	b, _ := fakeMapping(t)
	if _, err := RunDataFromBytes(b[1:]); !errors.Is(err, ErrRunDataBuffer) {
		t.Errorf("misaligned buffer: %v, want ErrRunDataBuffer", err)
	}
	b, r := fakeMapping(t)
	b[1] = 1
	binary.LittleEndian.PutUint32(b[8:], ExitIO)
	binary.LittleEndian.PutUint64(b[24:], 0xfee00900)
	if r.ImmediateExit != 1 || r.ExitReason != ExitIO || r.APICBase != 0xfee00900 {
		t.Errorf("header fields not at kvm_run offsets: %+v", r)
	}
}

func TestDecodeIO(t *testing.T) {
	b, r := fakeMapping(t)
	// out 0x3f8, 2 bytes x 3 (rep outsw) with data in the PIO page.
	b[32], b[33] = IOOut, 2
	binary.LittleEndian.PutUint16(b[34:], 0x3f8)
	binary.LittleEndian.PutUint32(b[36:], 3)
	binary.LittleEndian.PutUint64(b[40:], 4096)
	copy(b[4096:], "abcdef")
	dir, size, port, count, off := r.IO()
	if dir != IOOut || size != 2 || port != 0x3f8 || count != 3 || off != 4096 {
		t.Fatalf("IO() = %d %d %#x %d %d", dir, size, port, count, off)
	}
	if d := ioData(b); string(d) != "abcdef" || cap(d) != 6 {
		t.Fatalf("ioData = %q cap %d, want abcdef cap 6", d, cap(d))
	}
	// Data ending exactly at the end of the mapping is fine; one byte beyond is not.
	binary.LittleEndian.PutUint64(b[40:], uint64(len(b)-6))
	if d := ioData(b); len(d) != 6 {
		t.Errorf("data at the very end: %d bytes, want 6", len(d))
	}
	binary.LittleEndian.PutUint64(b[40:], uint64(len(b)-5))
	if d := ioData(b); d != nil {
		t.Errorf("data past the end: %d bytes, want nil", len(d))
	}
	binary.LittleEndian.PutUint64(b[40:], ^uint64(0))
	if d := ioData(b); d != nil {
		t.Errorf("offset 2^64-1: %d bytes, want nil", len(d))
	}
	// size*count overflowing 32 bits must not wrap into a small length.
	binary.LittleEndian.PutUint64(b[40:], 4096)
	b[33] = 0xff
	binary.LittleEndian.PutUint32(b[36:], 0xffffffff)
	if d := ioData(b); d != nil {
		t.Errorf("huge count: %d bytes, want nil", len(d))
	}
	if d := ioData(b[:100]); d != nil {
		t.Errorf("mapping shorter than kvm_run: %d bytes, want nil", len(d))
	}
}

func TestDecodeMMIOAndMSR(t *testing.T) {
	b, r := fakeMapping(t)
	binary.LittleEndian.PutUint64(b[32:], 0xd0000000)
	b[40] = 0xaa
	binary.LittleEndian.PutUint32(b[48:], 4)
	b[52] = 1
	addr, data, n, write := r.MMIO()
	if addr != 0xd0000000 || data[0] != 0xaa || n != 4 || !write {
		t.Fatalf("MMIO() = %#x %v %d %t", addr, data, n, write)
	}
	data[1] = 0xbb // a read's answer is written in place
	if b[41] != 0xbb {
		t.Error("MMIO data pointer does not alias the mapping")
	}

	_, r = fakeMapping(t)
	m := r.MSR()
	b2 := unsafe.Slice((*byte)(unsafe.Pointer(r)), unsafe.Sizeof(*r))
	binary.LittleEndian.PutUint32(b2[40:], MSRExitReasonFilter)
	binary.LittleEndian.PutUint32(b2[44:], 0x40000001)
	if m.Reason != MSRExitReasonFilter || m.Index != 0x40000001 {
		t.Fatalf("MSR() = %+v", m)
	}
	m.Data, m.Error = 0x1234, 1
	if binary.LittleEndian.Uint64(b2[48:]) != 0x1234 || b2[32] != 1 {
		t.Error("MSR answer not written to kvm_run.msr.data/error")
	}
}

func TestDecodeDataExits(t *testing.T) {
	b, r := fakeMapping(t)
	binary.LittleEndian.PutUint32(b[32:], SystemEventReset)
	binary.LittleEndian.PutUint32(b[36:], 2)
	binary.LittleEndian.PutUint64(b[40:], 7)
	binary.LittleEndian.PutUint64(b[48:], 8)
	typ, data := r.SystemEvent()
	if typ != SystemEventReset || len(data) != 2 || data[0] != 7 || data[1] != 8 {
		t.Fatalf("SystemEvent() = %d %v", typ, data)
	}
	data[0] = 99
	if binary.LittleEndian.Uint64(b[40:]) != 7 {
		t.Error("SystemEvent data aliases the mapping; want a copy")
	}
	// A hostile ndata is clamped to the 16 words the union holds.
	binary.LittleEndian.PutUint32(b[32:], InternalErrorEmulation)
	binary.LittleEndian.PutUint32(b[36:], 0xffffffff)
	if sub, data := r.InternalError(); sub != InternalErrorEmulation || len(data) != 16 {
		t.Fatalf("InternalError() = %d, %d words; want 16", sub, len(data))
	}
	binary.LittleEndian.PutUint64(b[32:], 0x80000021)
	binary.LittleEndian.PutUint32(b[40:], 3)
	if reason, cpu := r.FailEntry(); reason != 0x80000021 || cpu != 3 {
		t.Errorf("FailEntry() = %#x %d", reason, cpu)
	}
	if r.HardwareExitReason() != 0x80000021 {
		t.Errorf("HardwareExitReason() = %#x", r.HardwareExitReason())
	}
	binary.LittleEndian.PutUint32(b[32:], 13)
	binary.LittleEndian.PutUint32(b[36:], 0x18)
	if vec, code := r.Exception(); vec != 13 || code != 0x18 {
		t.Errorf("Exception() = %d %#x", vec, code)
	}
	if r.IOAPICEOI() != 13 {
		t.Errorf("IOAPICEOI() = %d", r.IOAPICEOI())
	}
	binary.LittleEndian.PutUint64(b[32:], 11)
	binary.LittleEndian.PutUint64(b[40:], 1)
	r.Hypercall().Ret = 42
	if h := r.Hypercall(); h.Nr != 11 || h.Args[0] != 1 || binary.LittleEndian.Uint64(b[88:]) != 42 {
		t.Errorf("Hypercall() = %+v", h)
	}
}

func TestNames(t *testing.T) {
	for c, want := range map[Cap]string{CapIRQChip: "IRQCHIP", CapX86UserSpaceMSR: "X86_USER_SPACE_MSR", CapHyperV: "HYPERV", Cap(9999): "CAP_9999"} {
		if got := c.String(); got != want {
			t.Errorf("Cap(%d).String() = %q, want %q", int(c), got, want)
		}
	}
	for r, want := range map[uint32]string{ExitIO: "IO", ExitX86RDMSR: "X86_RDMSR", ExitSystemEvent: "SYSTEM_EVENT", 200: "EXIT_200"} {
		if got := ExitReasonName(r); got != want {
			t.Errorf("ExitReasonName(%d) = %q, want %q", r, got, want)
		}
	}
}

func TestLAPICReg(t *testing.T) {
	var s LAPICState
	s.SetReg(LAPICRegLINT0, 0x700)
	if s.Regs[0x350] != 0 || s.Regs[0x351] != 7 || s.Reg(LAPICRegLINT0) != 0x700 {
		t.Errorf("SetReg/Reg LINT0: bytes %v value %#x", s.Regs[0x350:0x354], s.Reg(LAPICRegLINT0))
	}
	for _, off := range []int{-4, 1, 1021, 1024, 1 << 30} {
		s.SetReg(off, 0xffffffff)
		if s.Reg(off) != 0 {
			t.Errorf("Reg(%d) = %#x, want 0 for a bad offset", off, s.Reg(off))
		}
	}
	if s.Reg(1020) != 0 {
		t.Errorf("bad-offset SetReg wrote into the page")
	}
}

func TestArgumentChecks(t *testing.T) {
	vm := &VM{fd: -1}
	if err := vm.EnableCap(CapX86UserSpaceMSR, 1, 2, 3, 4, 5); !errors.Is(err, ErrTooManyArgs) {
		t.Errorf("EnableCap with 5 args = %v, want ErrTooManyArgs", err)
	}
	if _, err := vm.CreateVCPU(0, 100); !errors.Is(err, ErrMmapSize) {
		t.Errorf("CreateVCPU with tiny mmap = %v, want ErrMmapSize", err)
	}
	v := &VCPU{fd: -1}
	if v.RunData() != nil || v.IOData() != nil {
		t.Error("closed vCPU returned a RunData or IOData")
	}
	if err := v.Close(); err != nil {
		t.Errorf("Close of a closed vCPU = %v", err)
	}
}

// FuzzRunData decodes arbitrary kvm_run contents, as a hostile guest could
// shape them: no accessor may panic, and IO data must lie inside the mapping.
func FuzzRunData(f *testing.F) {
	seed := func(reason uint32, union []byte) []byte {
		b := make([]byte, 64)
		binary.LittleEndian.PutUint32(b[8:], reason)
		copy(b[32:], union)
		return b
	}
	f.Add(seed(ExitIO, []byte{1, 1, 0x10, 0, 1, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0}))
	f.Add(seed(ExitIO, []byte{0, 4, 0xf8, 0x03, 0xff, 0xff, 0xff, 0xff, 0xf0, 0x2f, 0, 0, 0, 0, 0, 0}))
	f.Add(seed(ExitMMIO, []byte{0, 0, 0, 0xd0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0, 0, 1}))
	f.Add(seed(ExitInternalError, []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}))
	f.Add(seed(ExitSystemEvent, []byte{2, 0, 0, 0, 17, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, r := fakeMapping(t)
		copy(b, raw)
		_ = ExitReasonName(r.ExitReason)
		_, size, _, count, off := r.IO()
		if d := ioData(b); d != nil {
			if uint64(len(d)) != uint64(size)*uint64(count) || off+uint64(len(d)) > uint64(len(b)) {
				t.Fatalf("ioData %d bytes at %d for size %d count %d", len(d), off, size, count)
			}
		}
		_, data, n, _ := r.MMIO()
		_ = data[:min(n, uint32(len(data)))]
		_ = r.MSR().Index
		if _, d := r.InternalError(); len(d) > 16 {
			t.Fatalf("InternalError returned %d words", len(d))
		}
		if _, d := r.SystemEvent(); len(d) > 16 {
			t.Fatalf("SystemEvent returned %d words", len(d))
		}
		_, _ = r.FailEntry()
		_, _ = r.Exception()
		_ = r.Hypercall().Nr
		_ = r.HardwareExitReason()
		_ = r.IOAPICEOI()
	})
}
