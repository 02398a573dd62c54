package images

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrNoPayload: the file is not a bzImage whose payload we can unpack.
var ErrNoPayload = errors.New("no XZ payload in the bzImage")

// Vmlinux unpacks the ELF kernel (vmlinux) from k's bzImage into
// <Out>/vmlinux, cached by the bzImage's content. vmm boots it by PVH:
// the guest skips the bzImage's decompressor, which under the nested test
// host's TCG costs seconds per boot. Returns its path.
func Vmlinux(ctx context.Context, cfg Config, k *KernelArtifacts) (string, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return "", err
	}
	sum, err := hashFile(k.Vmlinuz)
	if err != nil {
		return "", fmt.Errorf("vmlinux: %w", err)
	}
	out := filepath.Join(cfg.Out, "vmlinux")
	rebuilt, err := Cached(out, KeyOf("vmlinux-v1", sum), func(tmp string) error {
		bz, err := os.ReadFile(k.Vmlinuz)
		if err != nil {
			return err
		}
		payload, err := BzImagePayload(bz)
		if err != nil {
			return fmt.Errorf("%s: %w", k.Vmlinuz, err)
		}
		xzFile := tmp + ".xz"
		defer os.Remove(xzFile)
		if err := os.WriteFile(xzFile, payload, 0o644); err != nil {
			return err
		}
		// The payload's XZ stream is followed by the decompressed size:
		// --single-stream stops at the stream's end.
		data, err := step{name: "xz -dc (vmlinux)", timeout: cfg.StepTimeout}.run(ctx, "xz", "-dc", "--single-stream", xzFile)
		if err != nil {
			return err
		}
		if _, err := elf.NewFile(bytes.NewReader(data)); err != nil {
			return fmt.Errorf("unpacked payload of %s: %w", k.Vmlinuz, err)
		}
		return os.WriteFile(tmp, data, 0o644)
	})
	if err != nil {
		return "", err
	}
	cfg.Log.Info("vmlinux ready", "path", out, "rebuilt", rebuilt)
	return out, nil
}

// BzImagePayload returns the compressed kernel of a bzImage (boot protocol
// 2.08+): payload_length bytes at payload_offset past the setup sectors.
// Only XZ, the compression Debian builds with, is accepted.
func BzImagePayload(bz []byte) ([]byte, error) {
	const (
		setupSects    = 0x1f1
		headerMagic   = 0x202
		version       = 0x206
		payloadOffset = 0x248
		payloadLength = 0x24c
	)
	if len(bz) < payloadLength+4 || string(bz[headerMagic:headerMagic+4]) != "HdrS" {
		return nil, fmt.Errorf("%w: no setup header", ErrNoPayload)
	}
	le := binary.LittleEndian
	if v := le.Uint16(bz[version:]); v < 0x208 {
		return nil, fmt.Errorf("%w: boot protocol %#x has no payload fields", ErrNoPayload, v)
	}
	sects := uint64(bz[setupSects])
	if sects == 0 {
		sects = 4
	}
	off := (sects+1)*512 + uint64(le.Uint32(bz[payloadOffset:]))
	n := uint64(le.Uint32(bz[payloadLength:]))
	if off > uint64(len(bz)) || n > uint64(len(bz))-off {
		return nil, fmt.Errorf("%w: payload [%#x, +%#x) beyond the file's %d bytes", ErrNoPayload, off, n, len(bz))
	}
	p := bz[off : off+n]
	if !bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0}) {
		return nil, fmt.Errorf("%w: the payload is not XZ", ErrNoPayload)
	}
	return p, nil
}
