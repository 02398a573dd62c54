package vmm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/pflash"
)

// Debian's OVMF (package ovmf), what `--firmware ovmf` names: the 4 MiB
// build without SMM (i440FX, which vmm is, cannot run the SMM build) and
// its variable store templates.
const (
	OVMFCodePath = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	// OVMFVarsPath is the empty store (Secure Boot off).
	OVMFVarsPath = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	// OVMFSecureVarsPath has Debian's PK and KEK and Microsoft's KEK and
	// db enrolled: Secure Boot on.
	OVMFSecureVarsPath = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// FirmwareSpec is a parsed --firmware argument.
type FirmwareSpec struct {
	// Path is the image (a ROM below 4 GiB), or OVMF's code.
	Path string
	// OVMF: code and variables as CFI flash.
	OVMF bool
	// Vars is the persistent variable store (OVMF); empty: a fresh copy
	// of the template for each run, kept in memory.
	Vars string
	// SecureBoot picks the template with Secure Boot keys enrolled.
	SecureBoot bool
}

// Template is the variable store a new store starts from.
func (s FirmwareSpec) Template() string {
	if s.SecureBoot {
		return OVMFSecureVarsPath
	}
	return OVMFVarsPath
}

// ParseFirmware reads --firmware: "seabios",
// "ovmf[,code=PATH][,vars=PATH][,secure-boot]" or the path of an image.
// code=PATH replaces Debian's OVMF code with another image (a debug build
// of OVMF, a test program), mapped the same way; the store's template
// stays Debian's.
func ParseFirmware(arg string) (FirmwareSpec, error) {
	switch {
	case arg == "seabios":
		return FirmwareSpec{Path: SeaBIOSPath}, nil
	case arg != "ovmf" && !strings.HasPrefix(arg, "ovmf,"):
		return FirmwareSpec{Path: arg}, nil
	}
	s := FirmwareSpec{Path: OVMFCodePath, OVMF: true}
	opts := strings.Split(arg, ",")[1:]
	code := false
	for _, o := range opts {
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case k == "vars" && hasValue && v != "" && s.Vars == "":
			s.Vars = v
		case k == "code" && hasValue && v != "" && !code:
			s.Path, code = v, true
		case k == "secure-boot" && !hasValue && !s.SecureBoot:
			s.SecureBoot = true
		default:
			return s, invalid("--firmware %s: unknown or repeated option %q (ovmf takes code=PATH, vars=PATH and secure-boot)", arg, o)
		}
	}
	return s, nil
}

// validateOVMF checks the OVMF files and the variable store, reading only
// metadata.
func validateOVMF(s FirmwareSpec) error {
	missing := func(path string, err error) error {
		return invalid("--firmware ovmf: %s: %v (install Debian's ovmf package)", path, unwrapPathError(err))
	}
	code, err := os.Stat(s.Path)
	switch {
	case err != nil && s.Path != OVMFCodePath:
		return invalid("--firmware ovmf,code=%s: %v", s.Path, unwrapPathError(err))
	case err != nil:
		return missing(s.Path, err)
	case !code.Mode().IsRegular():
		return invalid("--firmware ovmf,code=%s: not a regular file", s.Path)
	}
	tmpl, err := os.Stat(s.Template())
	if err != nil {
		return missing(s.Template(), err)
	}
	if err := checkFlashSize(s.Path, code.Size()); err != nil {
		return err
	}
	if err := checkFlashSize(s.Template(), tmpl.Size()); err != nil {
		return err
	}
	if code.Size()+tmpl.Size() > maxFlashSize {
		return invalid("--firmware ovmf: code and variables are %d bytes together; at most %d fit below 4 GiB", code.Size()+tmpl.Size(), maxFlashSize)
	}
	if s.Vars == "" {
		return nil
	}
	vars, err := os.Stat(s.Vars)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil // created from the template
	case err != nil:
		return invalid("--firmware ovmf,vars=%s: %v", s.Vars, unwrapPathError(err))
	case !vars.Mode().IsRegular():
		return invalid("--firmware ovmf,vars=%s: not a regular file", s.Vars)
	case isTemplate(vars):
		return invalid("--firmware ovmf,vars=%s: that is an OVMF template; name a file of your own (it is created from the template)", s.Vars)
	case vars.Size() != tmpl.Size():
		return invalid("--firmware ovmf,vars=%s: %d bytes, but a store made from %s has %d", s.Vars, vars.Size(), s.Template(), tmpl.Size())
	}
	return nil
}

// maxFlashSize is what QEMU allows for code and variables together.
const maxFlashSize = 8 << 20

func checkFlashSize(path string, n int64) error {
	if n == 0 || n%pflash.BlockSize != 0 || n > maxFlashSize {
		return invalid("--firmware ovmf: %s: %d bytes; a flash image is a multiple of 4 KiB, at most 8 MiB", path, n)
	}
	return nil
}

// isTemplate says whether fi is one of the shipped OVMF variable templates,
// which vmm never writes.
func isTemplate(fi os.FileInfo) bool {
	for _, t := range []string{OVMFVarsPath, OVMFSecureVarsPath, "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd",
		"/usr/share/OVMF/OVMF_VARS.fd", "/usr/share/OVMF/OVMF_VARS.ms.fd"} {
		if ti, err := os.Stat(t); err == nil && os.SameFile(fi, ti) {
			return true
		}
	}
	return false
}

// ovmfVars is OVMF's variable store as read before KVM is touched: its
// contents and, for vars=PATH, the open and locked file.
type ovmfVars struct {
	init []byte
	file *os.File // nil: per-run copy in memory
}

// openVars reads the variable store: the template for a per-run copy, or
// PATH (created from the template when missing) locked against a second
// vmm.
func openVars(s FirmwareSpec) (*ovmfVars, error) {
	tmpl, err := readFile("--firmware ovmf", s.Template(), maxFlashSize)
	if err != nil {
		return nil, err
	}
	if s.Vars == "" {
		return &ovmfVars{init: tmpl}, nil
	}
	if err := createVars(s.Vars, tmpl); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.Vars, os.O_RDWR, 0)
	if err != nil {
		return nil, invalid("--firmware ovmf,vars=%s: %v", s.Vars, unwrapPathError(err))
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, invalid("--firmware ovmf,vars=%s: in use by another vmm (%v)", s.Vars, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("--firmware ovmf,vars=%s: %w", s.Vars, err)
	}
	if isTemplate(fi) {
		return nil, invalid("--firmware ovmf,vars=%s: that is an OVMF template; name a file of your own", s.Vars)
	}
	if fi.Size() != int64(len(tmpl)) {
		return nil, invalid("--firmware ovmf,vars=%s: %d bytes, but a store made from %s has %d", s.Vars, fi.Size(), s.Template(), len(tmpl))
	}
	init := make([]byte, len(tmpl))
	if _, err := io.ReadFull(f, init); err != nil {
		return nil, fmt.Errorf("read --firmware ovmf,vars=%s: %w", s.Vars, err)
	}
	ok = true
	return &ovmfVars{init: init, file: f}, nil
}

// createVars makes path a durable copy of tmpl unless it exists: written
// and synced under a temporary name, then linked into place (a crash
// leaves no half-written store; a racing vmm's store wins).
func createVars(path string, tmpl []byte) error {
	if _, err := os.Lstat(path); err == nil {
		return nil
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".vmm-vars-*")
	if err != nil {
		return invalid("--firmware ovmf,vars=%s: create: %v", path, unwrapPathError(err))
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := tmp.Write(tmpl); err != nil {
		return fmt.Errorf("--firmware ovmf,vars=%s: write: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("--firmware ovmf,vars=%s: sync: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return invalid("--firmware ovmf,vars=%s: %v", path, unwrapPathError(err))
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// store is where the chip persists: the file, or nowhere (per-run copy).
func (v *ovmfVars) store() pflash.Store {
	if v.file == nil {
		return pflash.Volatile{}
	}
	return pflash.NewFileStore(v.file)
}

func (v *ovmfVars) close() {
	if v.file != nil {
		v.file.Close()
		v.file = nil
	}
}

// What Debian's release OVMF prints on its console (COM1) when it has
// nothing to boot; it writes nothing to the debug port. Boot options run
// in the order fw_cfg's bootorder gives, every disk and CD-ROM first; the
// built-in UEFI Shell comes after them, so OVMF starting it means that no
// device booted. Without the shell (Secure Boot builds) BdsDxe says so
// and waits for a key. Either line ends the VM with StopNoBoot: both are
// firmware's, printed before any OS runs.
const (
	ovmfNoBootMessage = "BdsDxe: No bootable option or device was found"
	ovmfStartingShell = "BdsDxe: starting Boot"
	ovmfShellName     = `"EFI Internal Shell"`
)

// watchConsole watches OVMF's console for the no-boot messages.
func (f *firmwareBoot) watchConsole(w *consoleWatch, m *Machine) {
	if !f.spec.OVMF {
		return
	}
	noBoot := m.noBoot("ovmf console")
	w.On(ovmfNoBootMessage, noBoot)
	w.On(ovmfStartingShell, func(line string) {
		if strings.Contains(line, ovmfShellName) {
			noBoot(line)
		}
	})
}

// readFile reads a whole small file (a variable store of at most limit
// bytes), with openSized's checks and messages.
func readFile(flag, path string, limit int64) ([]byte, error) {
	f, err := openSized(flag, path, limit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, f.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read %s %s: %w", flag, path, err)
	}
	return b, nil
}
