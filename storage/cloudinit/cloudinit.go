// Package cloudinit builds cloud-init NoCloud seeds: an ISO 9660 volume
// labelled "cidata" holding user-data and meta-data (and network-config and
// vendor-data when given), which cloud-init finds by its label. The volume
// is written with go-diskfs (Rock Ridge keeps the names lower case).
package cloudinit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// Label is the volume label NoCloud looks for.
const Label = "cidata"

// maxFile bounds each seed file: they are held in memory.
const maxFile = 16 << 20

// ErrNoUserData means the seed directory has no user-data file.
var ErrNoUserData = errors.New("no user-data file (NoCloud needs one, even if empty)")

// The seed's files: user-data is required, meta-data gets an instance-id
// when it has none, the others are copied when present.
const (
	userData      = "user-data"
	metaData      = "meta-data"
	networkConfig = "network-config"
	vendorData    = "vendor-data"
)

// Check validates a seed directory without building anything: it is a
// directory with a user-data file, and every seed file present is a
// regular file of a sane size.
func Check(dir string) error {
	_, err := read(dir)
	return err
}

// read loads the seed files of dir (absent optional ones are nil).
func read(dir string) (map[string][]byte, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	files := map[string][]byte{}
	for _, name := range []string{userData, metaData, networkConfig, vendorData} {
		b, err := readFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			if name == userData {
				return nil, fmt.Errorf("%s: %w", dir, ErrNoUserData)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		files[name] = b
	}
	return files, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFile)
	}
	return b, nil
}

// NewInstanceID returns a fresh instance-id: cloud-init runs its per-instance
// modules again for every new one, as a CI job wants from a fresh boot.
func NewInstanceID() string {
	var b [8]byte
	rand.Read(b[:])
	return "iid-vmm-" + hex.EncodeToString(b[:])
}

// withInstanceID returns meta-data that names an instance-id: meta as it is
// when it has one, else with instanceID added (YAML, or a JSON object).
func withInstanceID(meta []byte, instanceID string) []byte {
	for _, line := range bytes.Split(meta, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("instance-id:")) || bytes.Contains(line, []byte(`"instance-id"`)) {
			return meta
		}
	}
	if t := bytes.TrimSpace(meta); len(t) > 0 && t[0] == '{' {
		i := bytes.IndexByte(meta, '{')
		sep := ", "
		if len(bytes.TrimSpace(t[1:])) == 1 { // "{}"
			sep = ""
		}
		return append(append(append([]byte{}, meta[:i+1]...), fmt.Sprintf("%q: %q%s", "instance-id", instanceID, sep)...), meta[i+1:]...)
	}
	return append([]byte(fmt.Sprintf("instance-id: %s\n", instanceID)), meta...)
}

// Build writes the seed for dir to out (an empty file) as an ISO 9660
// volume labelled cidata; instanceID is used when meta-data names none.
// workspace is an empty directory go-diskfs stages the files in.
func Build(dir string, out *os.File, instanceID, workspace string) error {
	files, err := read(dir)
	if err != nil {
		return err
	}
	files[metaData] = withInstanceID(files[metaData], instanceID)
	fsys, err := iso9660.Create(file.New(out, false), 0, 0, 2048, workspace)
	if err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	for name, data := range files {
		w, err := fsys.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("cloud-init seed: %s: %w", name, err)
		}
		_, err = w.Write(data)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("cloud-init seed: %s: %w", name, err)
		}
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: Label}); err != nil {
		return fmt.Errorf("cloud-init seed: finalize: %w", err)
	}
	return padVolumeID(out)
}

// pvdVolumeID is where the primary volume descriptor (sector 16) keeps the
// 32-byte volume identifier.
const pvdVolumeID = 16*2048 + 40

// padVolumeID pads the volume identifier with spaces, as ISO 9660 wants
// (go-diskfs pads with NULs; blkid reads both, other tools may not).
func padVolumeID(f *os.File) error {
	var id [32]byte
	if _, err := f.ReadAt(id[:], pvdVolumeID); err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	for i, c := range id {
		if c == 0 {
			id[i] = ' '
		}
	}
	if _, err := f.WriteAt(id[:], pvdVolumeID); err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	return nil
}

// BuildTemp builds the seed for dir into a file in tmpDir that is unlinked
// as soon as it is created, so nothing is left however the process ends;
// the caller reads it through the returned file.
func BuildTemp(dir, tmpDir, instanceID string) (*os.File, error) {
	ws, err := os.MkdirTemp(tmpDir, "vmm-cidata-")
	if err != nil {
		return nil, fmt.Errorf("cloud-init seed: %w", err)
	}
	defer os.RemoveAll(ws)
	f, err := os.CreateTemp(tmpDir, "vmm-cidata-*.iso")
	if err != nil {
		return nil, fmt.Errorf("cloud-init seed: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("cloud-init seed: %w", err)
	}
	if err := Build(dir, f, instanceID, ws); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
