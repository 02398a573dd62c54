package linux

import (
	"encoding/binary"
	"github.com/vmmdev/vmm/internal/testenv"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/boot/internal/fakemem"
	"github.com/vmmdev/vmm/boot/internal/testkernel"
	"github.com/vmmdev/vmm/firmware/e820"
	"github.com/vmmdev/vmm/layout"
)

const mib = 1 << 20

var le = binary.LittleEndian

// bzImage builds a minimal bzImage: a boot sector and setup sectors holding a
// protocol 2.15 setup header, then pmSize bytes of "protected-mode code".
func bzImage(pmSize int) []byte { return bzImageSetup(4, pmSize) }

// bzImageSetup is bzImage with setupSects setup sectors (small fuzz seeds).
func bzImageSetup(setupSects, pmSize int) []byte { return testkernel.BzImage(setupSects, pmSize) }

func TestParse(t *testing.T) {
	data := bzImage(8192)
	img, err := Parse(data)
	require.NoError(t, err)
	require.Equal(t, 4, img.SetupSects)
	require.Equal(t, data[5*512:], readAll(t, img.ProtectedMode))
	require.Equal(t, uint16(0x020f), img.Header.Version)
	require.True(t, img.Header.Relocatable)
	require.Equal(t, uint32(2047), img.Header.CmdlineSize)
	require.Equal(t, uint64(0x1000000), img.Header.PrefAddress)
	require.Equal(t, data[0x1f1:0x26c], img.setupHeader)

	// setup_sects 0 means 4.
	data[offSetupSects] = 0
	img, err = Parse(data)
	require.NoError(t, err)
	require.Equal(t, 4, img.SetupSects)

	// A signed kernel has bytes after what syssize counts.
	_, err = Parse(append(bzImage(8192), make([]byte, 1500)...))
	require.NoError(t, err)
}

func TestParseErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func([]byte) []byte
		want error
	}{
		"empty":            {func([]byte) []byte { return nil }, ErrNotBzImage},
		"short":            {func(b []byte) []byte { return b[:0x205] }, ErrNotBzImage},
		"no boot flag":     {func(b []byte) []byte { b[offBootFlag] = 0; return b }, ErrNotBzImage},
		"no HdrS":          {func(b []byte) []byte { b[offHeaderMagic] = 'X'; return b }, ErrNotBzImage},
		"setup truncated":  {func(b []byte) []byte { return b[:0x900] }, ErrTruncated},
		"huge setup_sects": {func(b []byte) []byte { b[offSetupSects] = 0xff; return b }, ErrTruncated},
		"kernel truncated": {func(b []byte) []byte { return b[:len(b)-100] }, ErrTruncated},
		"no kernel":        {func(b []byte) []byte { le.PutUint32(b[offSysSize:], 0); return b[:5*512] }, ErrTruncated},
		"payload beyond":   {func(b []byte) []byte { le.PutUint32(b[offPayloadLength:], 1<<20); return b }, ErrTruncated},
		"old protocol":     {func(b []byte) []byte { le.PutUint16(b[offVersion:], 0x020b); return b }, ErrUnsupported},
		"no 64-bit entry":  {func(b []byte) []byte { le.PutUint16(b[offXLoadFlags:], 0x2); return b }, ErrUnsupported},
		"short header":     {func(b []byte) []byte { b[offJump+1] = 0x20; return b }, ErrUnsupported},
		"zImage":           {func(b []byte) []byte { b[offLoadFlags] = 0; return b }, ErrUnsupported},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(tc.mod(bzImage(8192)))
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestLoad(t *testing.T) {
	const memSize = 128 * mib
	img, err := Parse(bzImage(8192))
	require.NoError(t, err)
	mem := fakemem.New(memSize)
	initrd := []byte("initrd contents")
	memMap := e820.Map(memSize)
	entry, err := img.Load(mem, memSize, "console=ttyS0 quiet", initrd, memMap, 0xe0000)
	require.NoError(t, err)
	require.Equal(t, boot.Entry{Mode: boot.Long64, IP: 0x100200, RSI: layout.ZeroPage}, entry)

	require.Equal(t, readAll(t, img.ProtectedMode), mem.Read(layout.HighMemory, uint64(img.ProtectedMode.Size())))
	require.Equal(t, []byte("console=ttyS0 quiet\x00"), mem.Read(layout.Cmdline, 20))

	zp := mem.Read(layout.ZeroPage, 4096)
	require.Equal(t, byte(0), zp[0x1ef], "sentinel")
	require.Equal(t, uint16(0xaa55), le.Uint16(zp[offBootFlag:]))
	require.Equal(t, uint16(0x020f), le.Uint16(zp[offVersion:]), "setup header copied")
	require.Equal(t, byte(0xff), zp[offTypeOfLoader])
	require.Equal(t, byte(0x81), zp[offLoadFlags])
	require.Equal(t, uint16(0xfe00), le.Uint16(zp[offHeapEndPtr:]))
	require.Equal(t, uint32(layout.Cmdline), le.Uint32(zp[offCmdLinePtr:]))
	require.Equal(t, uint64(0xe0000), le.Uint64(zp[offACPIRSDPAddr:]))
	require.Zero(t, le.Uint32(zp[offExtRamdiskImg:]))
	require.Zero(t, le.Uint32(zp[offExtRamdiskSize:]))

	// The initrd sits page-aligned at the top of RAM.
	addr := uint64(le.Uint32(zp[offRamdiskImage:]))
	require.Equal(t, uint32(len(initrd)), le.Uint32(zp[offRamdiskSize:]))
	require.Equal(t, uint64(memSize-4096), addr)
	require.Equal(t, initrd, mem.Read(addr, uint64(len(initrd))))

	require.Equal(t, byte(len(memMap)), zp[offE820Entries])
	for i, e := range memMap {
		b := zp[offE820Table+20*i:]
		require.Equal(t, e.Addr, le.Uint64(b))
		require.Equal(t, e.Size, le.Uint64(b[8:]))
		require.Equal(t, uint32(e.Type), le.Uint32(b[16:]))
	}
	require.Zero(t, le.Uint64(zp[offE820Table+20*len(memMap):]), "no entry past the count")
}

func TestLoadInitrdPlacement(t *testing.T) {
	data := bzImage(8192)
	le.PutUint32(data[offInitrdAddrMax:], 0x3000000-1) // initrd must end below 48 MiB
	img, err := Parse(data)
	require.NoError(t, err)
	mem := fakemem.New(256 * mib)
	initrd := make([]byte, 5000)
	initrd[4999] = 9
	_, err = img.Load(mem, 256*mib, "", initrd, e820.Map(256*mib), 0)
	require.NoError(t, err)
	zp := mem.Read(layout.ZeroPage, 4096)
	addr := uint64(le.Uint32(zp[offRamdiskImage:]))
	require.Equal(t, uint64(0x3000000-8192), addr, "highest page-aligned fit below initrd_addr_max")
	require.Equal(t, byte(9), mem.Read(addr+4999, 1)[0])
	require.Zero(t, le.Uint64(zp[offACPIRSDPAddr:]), "no RSDP given")

	// No initrd: the ramdisk fields stay zero.
	mem = fakemem.New(256 * mib)
	_, err = img.Load(mem, 256*mib, "", nil, e820.Map(256*mib), 0)
	require.NoError(t, err)
	require.Zero(t, le.Uint64(mem.Read(layout.ZeroPage+offRamdiskImage, 8)))
}

func TestLoadRSDPNeedsProtocol214(t *testing.T) {
	data := bzImage(8192)
	le.PutUint16(data[offVersion:], 0x020d)
	img, err := Parse(data)
	require.NoError(t, err)
	mem := fakemem.New(64 * mib)
	_, err = img.Load(mem, 64*mib, "", nil, e820.Map(64*mib), 0xe0000)
	require.NoError(t, err)
	require.Zero(t, le.Uint64(mem.Read(layout.ZeroPage+offACPIRSDPAddr, 8)))
}

func TestCheckErrors(t *testing.T) {
	img, err := Parse(bzImage(8192))
	require.NoError(t, err)
	long := string(make([]byte, 2048))
	require.NoError(t, img.Check(64*mib, long[:2047], 0))
	require.ErrorIs(t, img.Check(64*mib, long, 0), ErrCmdlineTooLong)

	// pref_address 16 MiB + init_size 8 MiB: the kernel needs 24 MiB.
	require.NoError(t, img.Check(24*mib, "", 0))
	require.ErrorIs(t, img.Check(24*mib-1, "", 0), ErrNotEnoughMemory)
	require.ErrorIs(t, img.Check(8*mib, "", 0), ErrNotEnoughMemory)
	require.ErrorIs(t, img.Check(24*mib, "", 1), ErrInitrdTooLarge)
	require.NoError(t, img.Check(24*mib+4096, "", 4096))
	require.ErrorIs(t, img.Check(24*mib+4096, "", 4097), ErrInitrdTooLarge)
	require.ErrorIs(t, img.Check(64*mib, "", 1<<40), ErrInitrdTooLarge)

	// A hostile init_size cannot make the loader claim more than exists.
	data := bzImage(8192)
	le.PutUint32(data[offInitSize:], 0xffffffff)
	img, err = Parse(data)
	require.NoError(t, err)
	require.ErrorIs(t, img.Check(1<<30, "", 0), ErrNotEnoughMemory)

	// Nothing is written when the check fails.
	mem := fakemem.New(64 * mib)
	_, err = img.Load(mem, 64*mib, long, nil, e820.Map(64*mib), 0)
	require.ErrorIs(t, err, ErrCmdlineTooLong)
	require.Zero(t, mem.Writes)
}

func TestLoadErrors(t *testing.T) {
	img, err := Parse(bzImage(8192))
	require.NoError(t, err)
	// Memory smaller than memSize claims: the write failure comes back wrapped.
	_, err = img.Load(fakemem.New(32*mib), 64*mib, "", []byte{1}, e820.Map(64*mib), 0)
	require.ErrorIs(t, err, fakemem.ErrOutOfRange)
	require.ErrorContains(t, err, "initrd")

	_, err = img.Load(fakemem.New(64*mib), 64*mib, "", nil, make([]e820.Entry, 129), 0)
	require.ErrorContains(t, err, "e820")
}

// TestRealKernel parses and loads a real bzImage when one is at hand:
// $VMM_TEST_BZIMAGE or /boot/vmlinuz-*.
func TestRealKernel(t *testing.T) {
	paths, _ := filepath.Glob("/boot/vmlinuz-*")
	if p := os.Getenv("VMM_TEST_BZIMAGE"); p != "" {
		paths = append([]string{p}, paths...)
	}
	if len(paths) == 0 {
		testenv.Skip(t, "no bzImage: set VMM_TEST_BZIMAGE (scripts/test-kernels.sh names Debian's)")
	}
	data, err := os.ReadFile(paths[0])
	if err != nil {
		testenv.Skip(t, "unreadable kernel: %v", err)
	}
	img, err := Parse(data)
	require.NoError(t, err, paths[0])
	require.NotZero(t, img.Header.InitSize)
	const memSize = 512 * mib
	mem := fakemem.New(memSize)
	entry, err := img.Load(mem, memSize, "console=ttyS0", make([]byte, 3*mib), e820.Map(memSize), 0)
	require.NoError(t, err)
	require.Equal(t, uint64(0x100200), entry.IP)
	// startup_64 is what the entry jumps to; it must be in the loaded image.
	require.Equal(t, readAll(t, img.ProtectedMode)[0x200:0x210], mem.Read(0x100200, 16))
	_, err = Parse(data[:len(data)/2])
	require.ErrorIs(t, err, ErrTruncated)
}

func FuzzParse(f *testing.F) {
	f.Add(bzImageSetup(1, 64))
	f.Add(bzImageSetup(1, 64)[:1070])
	old := bzImageSetup(1, 32)
	le.PutUint16(old[offVersion:], 0x0206)
	f.Add(old)
	f.Add([]byte("MZ\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Parse(data)
		if err != nil {
			return
		}
		if n := img.ProtectedMode.Size(); n == 0 || n > int64(len(data)) {
			t.Fatalf("protected-mode code of %d bytes from %d", n, len(data))
		}
		const memSize = 64 * mib
		mem := fakemem.New(memSize)
		if _, err := img.Load(mem, memSize, "console=ttyS0", []byte{1, 2, 3}, e820.Map(memSize), 0xe0000); err != nil {
			return
		}
		if got := mem.Read(layout.ZeroPage+offTypeOfLoader, 1)[0]; got != loaderUndefined {
			t.Fatalf("type_of_loader %#x", got)
		}
	})
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return b
}
