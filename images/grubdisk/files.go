package grubdisk

import (
	"fmt"
	"os"
	"path"
	"sort"

	"github.com/diskfs/go-diskfs/filesystem"
)

// readFiles reads host files (destination path -> host path) into
// contents keyed by destination path.
func readFiles(srcs map[string]string) (map[string][]byte, error) {
	files := make(map[string][]byte, len(srcs))
	for dst, src := range srcs {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("grubdisk: %w", err)
		}
		files[dst] = b
	}
	return files, nil
}

// writeFiles writes files (absolute paths to contents) into fsys, making
// their directories, in name order so equal inputs give equal images.
func writeFiles(fsys filesystem.FileSystem, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := fsys.Mkdir(path.Dir(name)); err != nil {
			return fmt.Errorf("mkdir %s: %w", path.Dir(name), err)
		}
		w, err := fsys.OpenFile(name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		_, err = w.Write(files[name])
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}
