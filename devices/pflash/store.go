package pflash

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FileStore persists a chip in a file of the chip's size: each write is
// written in place and synced (fdatasync) before it returns, so a program
// or erase the guest saw complete survives a crash of vmm. The chip never
// writes past its size, so the file never grows.
type FileStore struct{ f *os.File }

// NewFileStore returns the store over f (opened read-write).
func NewFileStore(f *os.File) *FileStore { return &FileStore{f} }

// WriteAt writes p at off and syncs it.
func (s *FileStore) WriteAt(p []byte, off int64) (int, error) {
	n, err := s.f.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	if err := unix.Fdatasync(int(s.f.Fd())); err != nil {
		return n, fmt.Errorf("fdatasync %s: %w", s.f.Name(), err)
	}
	return n, nil
}

// Volatile keeps a chip's contents in memory only (a per-run copy of a
// variable store): writes succeed and go nowhere else.
type Volatile struct{}

// WriteAt accepts p.
func (Volatile) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
