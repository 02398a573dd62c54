package images

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Stamp is the sidecar written next to every cached artifact (<artifact>.stamp).
type Stamp struct {
	// Key is the hash of everything the artifact was built from.
	Key string `json:"key"`
	// SHA256 is the artifact's own hash (HashPath), checked on every reuse.
	SHA256 string `json:"sha256"`
}

// StampPath returns where the stamp of artifact lives.
func StampPath(artifact string) string { return artifact + ".stamp" }

// Cached makes sure artifact (a file or a directory) is the output of build
// for inputs hashed into key. It reuses the artifact only when its stamp has
// the same key and the artifact still hashes to the stamp's SHA256; anything
// else (no stamp, other key, missing, truncated or edited artifact) rebuilds.
//
// build gets a path tmp next to artifact, with the same suffix, that does
// not exist yet and must
// create the artifact there (a file or a directory); Cached then moves it
// into place and writes the stamp, so a failed or interrupted build never
// leaves something that looks valid. A lock file serialises builders of the
// same artifact across processes (e2e tests and mkimages may run together).
// It reports whether it rebuilt.
func Cached(artifact, key string, build func(tmp string) error) (rebuilt bool, err error) {
	if err := os.MkdirAll(filepath.Dir(artifact), 0o755); err != nil {
		return false, fmt.Errorf("cache %s: %w", artifact, err)
	}
	unlock, err := lockFile(artifact + ".lock")
	if err != nil {
		return false, err
	}
	defer unlock()

	if ok, err := valid(artifact, key); err != nil {
		return false, err
	} else if ok {
		return false, nil
	}

	// The temporary name keeps the artifact's suffix (".gz" matters to
	// WriteInitramfs) and is hidden, so globs over Out do not see it.
	tmp := filepath.Join(filepath.Dir(artifact), fmt.Sprintf(".tmp-%d-%s", os.Getpid(), filepath.Base(artifact)))
	if err := os.RemoveAll(tmp); err != nil {
		return false, fmt.Errorf("cache %s: %w", artifact, err)
	}
	defer os.RemoveAll(tmp)
	if err := build(tmp); err != nil {
		return false, fmt.Errorf("build %s: %w", filepath.Base(artifact), err)
	}
	sum, err := HashPath(tmp)
	if err != nil {
		return false, fmt.Errorf("build %s: output: %w", filepath.Base(artifact), err)
	}
	// Stamp first removed, artifact replaced, stamp written last: a crash in
	// between leaves no stamp, which is a miss next time.
	if err := os.Remove(StampPath(artifact)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("cache %s: %w", artifact, err)
	}
	if err := os.RemoveAll(artifact); err != nil {
		return false, fmt.Errorf("cache %s: %w", artifact, err)
	}
	if err := os.Rename(tmp, artifact); err != nil {
		return false, fmt.Errorf("cache %s: %w", artifact, err)
	}
	st, err := json.MarshalIndent(Stamp{Key: key, SHA256: sum}, "", "  ")
	if err != nil {
		return false, fmt.Errorf("cache %s: %w", artifact, err)
	}
	if err := writeFileAtomic(StampPath(artifact), append(st, '\n'), 0o644); err != nil {
		return false, fmt.Errorf("cache %s: %w", artifact, err)
	}
	return true, nil
}

// valid reports whether artifact matches key and its recorded hash.
func valid(artifact, key string) (bool, error) {
	raw, err := os.ReadFile(StampPath(artifact))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read stamp: %w", err)
	}
	var st Stamp
	if json.Unmarshal(raw, &st) != nil || st.Key != key {
		return false, nil
	}
	sum, err := HashPath(artifact)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("verify %s: %w", artifact, err)
	}
	return sum == st.SHA256, nil
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if errors.Is(err, unix.EROFS) {
		// A read-only cache (the nested test host sees the host's over 9p)
		// changes under nobody here: reuse needs no lock, and a rebuild
		// fails on its first write.
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// KeyOf hashes parts into a cache key. Each part is length-prefixed, so
// ("ab","c") and ("a","bc") differ.
func KeyOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// HashPath returns the sha256 of a file's content, or for a directory a
// sha256 over its tree: every entry's relative path, type, permissions and
// content (or symlink target), in lexical order.
func HashPath(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return hashFile(path)
	}
	h := sha256.New()
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(path, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var content string
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			if content, err = os.Readlink(p); err != nil {
				return err
			}
		case d.Type().IsRegular():
			if content, err = hashFile(p); err != nil {
				return err
			}
		}
		h.Write([]byte(KeyOf(filepath.ToSlash(rel), info.Mode().String(), content)))
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
