package grubdisk

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/stretchr/testify/require"
)

// TestWriteISOElTorito checks what SeaBIOS and GRUB's cdboot read: the boot
// record at sector 17 pointing at a catalog whose default entry is a
// bootable no-emulation image of 4 sectors, the boot information table in
// that image, and the files read back by name.
func TestWriteISOElTorito(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "boot.iso")
	bootImg := make([]byte, 5000)
	for i := range bootImg {
		bootImg[i] = byte(i * 7)
	}
	boot := &iso9660.ElToritoEntry{Platform: iso9660.BIOS, Emulation: iso9660.NoEmulation,
		BootFile: ISOBootImage, BootTable: true}
	boot.SetLoadSize(4)
	files := map[string][]byte{ISOBootImage: bootImg, "/boot/grub/grub.cfg": []byte("set timeout=0\n")}
	require.NoError(t, WriteISO(out, filepath.Join(dir, "ws"), "VMMTEST", files,
		&iso9660.ElTorito{BootCatalog: ISOBootCatalog, HideBootCatalog: true, Entries: []*iso9660.ElToritoEntry{boot}}))

	img, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Zero(t, len(img)%isoBlockSize)
	brvd := img[17*isoBlockSize:]
	require.Equal(t, "\x00CD001\x01EL TORITO SPECIFICATION", string(brvd[:30]))
	cat := img[binary.LittleEndian.Uint32(brvd[0x47:])*isoBlockSize:]
	require.Equal(t, byte(1), cat[0], "validation entry")
	require.Equal(t, []byte{0x55, 0xaa}, cat[0x1e:0x20])
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(cat[i:])
	}
	require.Zero(t, sum, "validation entry checksum")
	entry := cat[32:]
	require.Equal(t, byte(0x88), entry[0], "bootable")
	require.Equal(t, byte(0), entry[1], "no emulation")
	require.Equal(t, uint16(4), binary.LittleEndian.Uint16(entry[6:]), "sectors loaded")
	at := binary.LittleEndian.Uint32(entry[8:])
	loaded := img[at*isoBlockSize:]
	require.Equal(t, bootImg[:8], loaded[:8])
	require.Equal(t, uint32(16), binary.LittleEndian.Uint32(loaded[8:]), "boot info table: PVD sector")
	require.Equal(t, at, binary.LittleEndian.Uint32(loaded[12:]), "boot info table: image sector")
	require.Equal(t, uint32(len(bootImg)), binary.LittleEndian.Uint32(loaded[16:]), "boot info table: image length")
	require.Equal(t, bootImg[64:], loaded[64:len(bootImg)])
	// cdboot reads ceil(length/2048) sectors after the first: all inside.
	require.LessOrEqual(t, int(at+1+(uint32(len(bootImg))+isoBlockSize-1)/isoBlockSize)*isoBlockSize, len(img))

	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	fi, err := f.Stat()
	require.NoError(t, err)
	fsys, err := iso9660.Read(file.New(f, true), fi.Size(), 0, isoBlockSize)
	require.NoError(t, err)
	r, err := fsys.OpenFile("/boot/grub/grub.cfg", os.O_RDONLY)
	require.NoError(t, err)
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, "set timeout=0\n", string(got))
}
