package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/vmmdev/vmm/storage/block"
	"github.com/vmmdev/vmm/storage/qcow2"
	"github.com/vmmdev/vmm/vmm"
)

const imageUsage = `usage: vmm image <command> [flags]

commands:
  info [--json] PATH                                 format, virtual size, allocated size, backing chain
  create [--backing BASE [--backing-format raw|qcow2]] PATH [SIZE]
                                                     a new qcow2 v3 image (never overwrites PATH);
                                                     SIZE in bytes or with K, M, G, T; with --backing,
                                                     the backing file's size by default

exit codes: 0 done   1 error (one line on stderr)   2 usage error
`

func cmdImage(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, imageUsage)
		return vmm.ExitUsage
	}
	switch args[0] {
	case "info":
		return cmdImageInfo(args[1:], stdout, stderr)
	case "create":
		return cmdImageCreate(args[1:], stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, imageUsage)
		return 0
	}
	fmt.Fprintf(stderr, "vmm image: unknown command %q (info or create)\n", args[0])
	return vmm.ExitUsage
}

// parseImageFlags parses fs, with one line on stderr for a bad command line.
func parseImageFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case err == nil:
		return ok
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, imageUsage)
		fs.PrintDefaults()
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
	return vmm.ExitUsage
}

// imageInfo is what `vmm image info` reports.
type imageInfo struct {
	Path        string `json:"path"`
	Format      string `json:"format"`
	Version     int    `json:"version,omitempty"`
	VirtualSize int64  `json:"virtual_size"`
	FileSize    int64  `json:"file_size"`
	// AllocatedSize is the space the file takes on disk (qemu-img's "disk size").
	AllocatedSize int64          `json:"allocated_size"`
	ClusterSize   int            `json:"cluster_size,omitempty"`
	Compression   string         `json:"compression,omitempty"`
	Backing       []backingEntry `json:"backing_chain"`
}

type backingEntry struct {
	Name        string `json:"name"`
	Path        string `json:"path"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual_size"`
}

func cmdImageInfo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmm image info", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if code := parseImageFlags(fs, args, stdout, stderr); code != ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "vmm image info: want one image PATH")
		return vmm.ExitUsage
	}
	info, err := readImageInfo(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "vmm image info: %v\n", err)
		return vmm.ExitError
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(info); err != nil {
			fmt.Fprintf(stderr, "vmm image info: %v\n", err)
			return vmm.ExitError
		}
		return 0
	}
	fmt.Fprintf(stdout, "image: %s\nformat: %s\n", info.Path, info.Format)
	if info.Version != 0 {
		fmt.Fprintf(stdout, "version: %d\ncluster size: %d\ncompression: %s\n", info.Version, info.ClusterSize, info.Compression)
	}
	fmt.Fprintf(stdout, "virtual size: %s (%d bytes)\n", humanSize(info.VirtualSize), info.VirtualSize)
	fmt.Fprintf(stdout, "file size: %s (%d bytes)\n", humanSize(info.FileSize), info.FileSize)
	fmt.Fprintf(stdout, "allocated size: %s (%d bytes)\n", humanSize(info.AllocatedSize), info.AllocatedSize)
	for i, b := range info.Backing {
		fmt.Fprintf(stdout, "backing %d: %s (%s, %s, virtual size %d)\n", i+1, b.Name, b.Path, b.Format, b.VirtualSize)
	}
	return 0
}

// readImageInfo opens the image read-only (with a shared lock, so a running
// VM's image can be inspected only when it is not held for writing).
func readImageInfo(path string) (imageInfo, error) {
	format, err := block.Detect(path)
	if err != nil {
		return imageInfo{}, err
	}
	info := imageInfo{Path: path, Format: format, Backing: []backingEntry{}}
	if format == block.FormatRaw {
		fi, err := os.Stat(path)
		if err != nil {
			return imageInfo{}, err
		}
		if !fi.Mode().IsRegular() {
			return imageInfo{}, fmt.Errorf("%s: not a regular file", path)
		}
		info.VirtualSize, info.FileSize = fi.Size(), fi.Size()
		info.AllocatedSize = allocated(fi)
		return info, nil
	}
	img, err := qcow2.Open(path, true)
	if err != nil {
		return imageInfo{}, err
	}
	defer img.Close()
	qi, err := img.Info()
	if err != nil {
		return imageInfo{}, err
	}
	info.Version, info.VirtualSize, info.FileSize, info.AllocatedSize = qi.Version, qi.VirtualSize, qi.FileSize, qi.AllocatedSize
	info.ClusterSize, info.Compression = qi.ClusterSize, qi.Compression
	for _, b := range qi.Backing {
		info.Backing = append(info.Backing, backingEntry{Name: b.Name, Path: b.Path, Format: b.Format, VirtualSize: b.VirtualSize})
	}
	return info, nil
}

func humanSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f, u := float64(n), 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.3g %s", f, units[u])
}

func cmdImageCreate(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmm image create", flag.ContinueOnError)
	backing := fs.String("backing", "", "backing file `BASE` (a relative name is relative to PATH's directory, as in QEMU)")
	backingFormat := fs.String("backing-format", "", "format of BASE: raw or qcow2 (default: read from its header)")
	if code := parseImageFlags(fs, args, stderr, stderr); code != ok {
		return code
	}
	if fs.NArg() < 1 || fs.NArg() > 2 || (fs.NArg() == 1 && *backing == "") {
		fmt.Fprintln(stderr, "vmm image create: want PATH SIZE (SIZE may be left out with --backing)")
		return vmm.ExitUsage
	}
	if *backingFormat != "" && *backing == "" {
		fmt.Fprintln(stderr, "vmm image create: --backing-format without --backing")
		return vmm.ExitUsage
	}
	var size int64
	if fs.NArg() == 2 {
		n, err := parseImageSize(fs.Arg(1))
		if err != nil {
			fmt.Fprintf(stderr, "vmm image create: SIZE: %v\n", err)
			return vmm.ExitUsage
		}
		size = n
	}
	path := fs.Arg(0)
	err := qcow2.Create(path, size, *backing, &qcow2.CreateOptions{BackingFormat: *backingFormat})
	if err != nil {
		fmt.Fprintf(stderr, "vmm image create: %v\n", err)
		return vmm.ExitError
	}
	return 0
}

// parseImageSize reads a size as qemu-img does: bytes, or K, M, G, T (powers of 1024).
func parseImageSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t != "" && t[len(t)-1] >= '0' && t[len(t)-1] <= '9' {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a size", s)
		}
		return n, nil
	}
	n, err := parseSize(t)
	if err != nil || n > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (bytes, or with K, M, G or T)", s)
	}
	return int64(n), nil
}

// allocated is the space a file takes on disk.
func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
