package images

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// ErrBadEntry is returned for an initramfs entry that is not well formed.
var ErrBadEntry = errors.New("bad initramfs entry")

// Entry is one file, directory or symlink of an initramfs.
type Entry struct {
	// Path inside the archive, e.g. "init" or "/lib/modules/x/kernel/a.ko";
	// a leading '/' is dropped.
	Path string
	// Mode holds the permission bits plus fs.ModeDir for a directory or
	// fs.ModeSymlink for a symlink. Zero means 0o644 for a file, 0o755 for a
	// directory.
	Mode fs.FileMode
	// Data is a file's content, or a symlink's target.
	Data []byte
	// HostPath, if set, is a file on the host whose content is used instead
	// of Data (read while writing, so large files are not held in memory).
	HostPath string
	// Major and Minor are a device node's numbers (Mode has fs.ModeDevice).
	Major, Minor uint64
}

// CharDev returns a character device node entry, e.g. CharDev("dev/console",
// 0o600, 5, 1): the kernel opens /dev/console for init before anything can
// mount devtmpfs, so an initramfs needs that node.
func CharDev(p string, perm fs.FileMode, major, minor uint64) Entry {
	return Entry{Path: p, Mode: fs.ModeDevice | fs.ModeCharDevice | perm.Perm(), Major: major, Minor: minor}
}

// Dir returns a directory entry.
func Dir(p string) Entry { return Entry{Path: p, Mode: fs.ModeDir | 0o755} }

// Symlink returns a symlink entry at p pointing to target.
func Symlink(p, target string) Entry {
	return Entry{Path: p, Mode: fs.ModeSymlink | 0o777, Data: []byte(target)}
}

// File returns a regular file entry with content data.
func File(p string, mode fs.FileMode, data []byte) Entry {
	return Entry{Path: p, Mode: mode, Data: data}
}

// HostFile returns a regular file entry copied from a host file.
func HostFile(p string, mode fs.FileMode, hostPath string) Entry {
	return Entry{Path: p, Mode: mode, HostPath: hostPath}
}

// WriteInitramfs writes entries as a newc cpio archive to path, gzip'd when
// path ends in ".gz" (an uncompressed archive unpacks faster under software
// emulation; both are accepted by the kernel). The output depends only on
// the entries: they are sorted by path, missing parent directories are
// added, and timestamps, owners and inode numbers are fixed. Two entries
// with the same path are an error.
func WriteInitramfs(path string, entries []Entry) (err error) {
	recs, closers, err := records(entries)
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("initramfs %s: %w", path, err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	var w io.Writer = bw
	var gz *gzip.Writer
	if strings.HasSuffix(path, ".gz") {
		gz = gzip.NewWriter(bw) // no name or mtime in the header: reproducible
		w = gz
	}
	rw := cpio.Newc.Writer(w)
	for _, r := range recs {
		if err := rw.WriteRecord(r); err != nil {
			return fmt.Errorf("initramfs %s: write %s: %w", path, r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return fmt.Errorf("initramfs %s: %w", path, err)
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return fmt.Errorf("initramfs %s: %w", path, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("initramfs %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("initramfs %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("initramfs %s: %w", path, err)
	}
	return nil
}

// records turns entries into sorted cpio records, adding parent directories.
// The returned closers are the host files opened for content.
func records(entries []Entry) ([]cpio.Record, []io.Closer, error) {
	byPath := map[string]Entry{}
	for _, e := range entries {
		p, err := cleanPath(e.Path)
		if err != nil {
			return nil, nil, err
		}
		if _, dup := byPath[p]; dup {
			return nil, nil, fmt.Errorf("%s listed twice: %w", p, ErrBadEntry)
		}
		e.Path = p
		byPath[p] = e
	}
	for p := range byPath {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if e, ok := byPath[d]; ok {
				if !e.Mode.IsDir() {
					return nil, nil, fmt.Errorf("%s is inside %s, which is not a directory: %w", p, d, ErrBadEntry)
				}
				continue
			}
			byPath[d] = Dir(d)
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths) // a parent sorts before its children

	var closers []io.Closer
	recs := make([]cpio.Record, 0, len(paths))
	for i, p := range paths {
		r, c, err := record(byPath[p])
		if c != nil {
			closers = append(closers, c)
		}
		if err != nil {
			return nil, closers, err
		}
		r.Ino = uint64(i + 1)
		r.NLink = 1
		if byPath[p].Mode.IsDir() {
			r.NLink = 2
		}
		recs = append(recs, r)
	}
	return recs, closers, nil
}

func cleanPath(p string) (string, error) {
	c := path.Clean(strings.TrimLeft(p, "/"))
	if c == "." || c == ".." || strings.HasPrefix(c, "../") || strings.ContainsRune(c, 0) {
		return "", fmt.Errorf("path %q: %w", p, ErrBadEntry)
	}
	return c, nil
}

func record(e Entry) (cpio.Record, io.Closer, error) {
	perm := uint64(e.Mode.Perm())
	switch {
	case e.Mode.IsDir():
		if perm == 0 {
			perm = 0o755
		}
		return cpio.Directory(e.Path, perm), nil, nil
	case e.Mode&fs.ModeSymlink != 0:
		if len(e.Data) == 0 {
			return cpio.Record{}, nil, fmt.Errorf("symlink %s has no target: %w", e.Path, ErrBadEntry)
		}
		return cpio.Symlink(e.Path, string(e.Data)), nil, nil
	case e.Mode&(fs.ModeDevice|fs.ModeCharDevice) == fs.ModeDevice|fs.ModeCharDevice:
		return cpio.CharDev(e.Path, perm, e.Major, e.Minor), nil, nil
	case e.Mode.Type() != 0:
		return cpio.Record{}, nil, fmt.Errorf("%s: unsupported file type %v: %w", e.Path, e.Mode.Type(), ErrBadEntry)
	}
	if perm == 0 {
		perm = 0o644
	}
	mode := cpio.S_IFREG | perm
	if e.HostPath == "" {
		return cpio.StaticRecord(e.Data, cpio.Info{Name: e.Path, Mode: mode}), nil, nil
	}
	f, err := os.Open(e.HostPath)
	if err != nil {
		return cpio.Record{}, nil, fmt.Errorf("%s: %w", e.Path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return cpio.Record{}, f, fmt.Errorf("%s: %w", e.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return cpio.Record{}, f, fmt.Errorf("%s: host path %s is not a regular file: %w", e.Path, e.HostPath, ErrBadEntry)
	}
	return cpio.Record{ReaderAt: f, Info: cpio.Info{Name: e.Path, Mode: mode, FileSize: uint64(fi.Size())}}, f, nil
}

// HostTree returns entries for everything under the host directory dir,
// placed under prefix in the archive, keeping permissions and symlinks.
func HostTree(prefix, dir string) ([]Entry, error) {
	var out []Entry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		ap := path.Join(prefix, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if rel != "." {
				out = append(out, Entry{Path: ap, Mode: fs.ModeDir | info.Mode().Perm()})
			}
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, Symlink(ap, target))
		case d.Type().IsRegular():
			out = append(out, HostFile(ap, info.Mode().Perm(), p))
		default:
			return fmt.Errorf("%s: unsupported file type: %w", p, ErrBadEntry)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("host tree %s: %w", dir, err)
	}
	return out, nil
}
