package raw

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func newImage(t *testing.T, size int, ro bool) (*Image, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	data := bytes.Repeat([]byte{0xab}, size)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := Open(Options{Path: path, ReadOnly: ro}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img, path
}

func TestReadWriteVectors(t *testing.T) {
	img, path := newImage(t, 4096+100, false)
	if img.Size() != 4096 || img.Sectors() != 8 {
		t.Fatalf("size %d sectors %d", img.Size(), img.Sectors())
	}
	a, b := bytes.Repeat([]byte{1}, 512), bytes.Repeat([]byte{2}, 1024)
	if err := img.WriteV([][]byte{a, nil, b}, 512); err != nil {
		t.Fatal(err)
	}
	if err := img.Flush(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1536)
	if err := img.ReadV([][]byte{got[:100], got[100:]}, 512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append(a, b...)) {
		t.Fatal("read back differs")
	}
	file, _ := os.ReadFile(path)
	if !bytes.Equal(file[512:2048], got) || file[0] != 0xab || file[2048] != 0xab {
		t.Fatal("file content wrong")
	}
}

func TestRangesChecked(t *testing.T) {
	img, path := newImage(t, 4096+100, false)
	for name, err := range map[string]error{
		"write past end":   img.WriteV([][]byte{make([]byte, 512)}, 4096),
		"write over end":   img.WriteV([][]byte{make([]byte, 1024)}, 3584),
		"read wraps":       img.ReadV([][]byte{make([]byte, 512)}, ^uint64(0)-100),
		"discard past end": img.Discard(4096, 512),
		"zeroes wraps":     img.WriteZeroes(512, ^uint64(0)),
	} {
		if !errors.Is(err, ErrOutOfRange) {
			t.Errorf("%s: %v, want ErrOutOfRange", name, err)
		}
	}
	fi, _ := os.Stat(path)
	if fi.Size() != 4096+100 {
		t.Fatalf("image size changed to %d", fi.Size())
	}
}

func TestZeroAndDiscard(t *testing.T) {
	img, path := newImage(t, 8192, false)
	if err := img.WriteZeroes(512, 1024); err != nil {
		t.Fatal(err)
	}
	if err := img.Discard(4096, 4096); err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(path)
	if !bytes.Equal(file[512:1536], make([]byte, 1024)) || file[511] != 0xab || file[1536] != 0xab {
		t.Fatal("write zeroes wrong")
	}
	if len(file) != 8192 {
		t.Fatal("size changed")
	}
}

func TestReadOnlyAndLock(t *testing.T) {
	img, path := newImage(t, 4096, true)
	if !img.ReadOnly() {
		t.Fatal("not read-only")
	}
	for _, err := range []error{
		img.WriteV([][]byte{make([]byte, 512)}, 0), img.Discard(0, 512), img.WriteZeroes(0, 512),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%v, want ErrReadOnly", err)
		}
	}
	// A second reader shares the lock; a writer is refused.
	ro, err := Open(Options{Path: path, ReadOnly: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()
	if _, err := Open(Options{Path: path}, nil); !errors.Is(err, ErrBusy) {
		t.Fatalf("writer while shared-locked: %v, want ErrBusy", err)
	}
}

func TestCanPunchHoles(t *testing.T) {
	ro, _ := newImage(t, 4096, true)
	if ro.CanPunchHoles() {
		t.Fatal("a read-only image cannot punch holes")
	}
	rw, path := newImage(t, 4096+100, false)
	// The probe must leave the file as it was, tail included.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 4096+100 {
		t.Fatalf("probe changed the size to %d", fi.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, bytes.Repeat([]byte{0xab}, 4096+100)) {
		t.Fatal("probe changed the data")
	}
	t.Logf("temp filesystem punches holes: %v", rw.CanPunchHoles())
}
