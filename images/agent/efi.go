package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// EFI variables through efivarfs (Linux's Documentation/filesystems/
// efivarfs.rst): each file is the variable's 32-bit attributes followed by
// its data, named Name-VendorGUID.
const (
	efiVarsDir = "/sys/firmware/efi/efivars"
	// efiTestVar is the variable the efi-vars check keeps, under a vendor
	// GUID of vmm's own.
	efiTestVar = "VmmE2E-766d6d00-6566-6976-6172-730000000001"
	// efiVarAttrs: non-volatile, boot service and runtime access.
	efiVarAttrs = 0x7
)

// efiTestValue is what efi-vars stores.
func efiTestValue() []byte { return []byte("vmm-e2e-efi-vars-v1") }

// checkEFI: the kernel was started by UEFI firmware (it made
// /sys/firmware/efi) in 64-bit mode, with runtime services.
func checkEFI(e *env) (bool, string) {
	if _, err := fs.Stat(e.root, "sys/firmware/efi"); err != nil {
		return false, "no /sys/firmware/efi: not booted through UEFI"
	}
	size, err := fs.ReadFile(e.root, "sys/firmware/efi/fw_platform_size")
	if err != nil {
		return false, fmt.Sprintf("fw_platform_size: %v", err)
	}
	if s := strings.TrimSpace(string(size)); s != "64" {
		return false, "firmware platform size " + s + ", want 64"
	}
	if _, err := fs.Stat(e.root, "sys/firmware/efi/runtime"); err != nil {
		return false, "no EFI runtime services (/sys/firmware/efi/runtime)"
	}
	return true, "booted through 64-bit UEFI with runtime services"
}

// efiSecureBootVar is the global SecureBoot variable (UEFI 2.10, 3.3):
// one byte, 1 when the firmware enforces Secure Boot.
const efiSecureBootVar = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

// checkSecureBoot: the firmware says Secure Boot is on (so shim, GRUB and
// the kernel it started were all verified).
func checkSecureBoot(e *env) (bool, string) {
	v, err := e.io.readEFIVar(efiSecureBootVar)
	if err != nil {
		return false, fmt.Sprintf("read SecureBoot: %v", err)
	}
	if len(v) != 5 || v[4] != 1 {
		return false, fmt.Sprintf("SecureBoot is %x, want attributes and 01", v)
	}
	return true, "SecureBoot=1"
}

// checkEFIVars writes efiTestVar through efivarfs when the store lacks it
// ("written") and reads it back; a store that has it from an earlier boot
// gives "found" (the e2e suite boots twice with one store and expects
// written, then found). A wrong value or attributes fail.
func checkEFIVars(e *env) (bool, string) {
	got, err := e.io.readEFIVar(efiTestVar)
	state := "found"
	if errors.Is(err, fs.ErrNotExist) {
		val := binary.LittleEndian.AppendUint32(nil, efiVarAttrs)
		if err := e.io.writeEFIVar(efiTestVar, append(val, efiTestValue()...)); err != nil {
			return false, fmt.Sprintf("write %s: %v", efiTestVar, err)
		}
		state = "written"
		got, err = e.io.readEFIVar(efiTestVar)
	}
	if err != nil {
		return false, fmt.Sprintf("read %s: %v", efiTestVar, err)
	}
	if len(got) < 4 || binary.LittleEndian.Uint32(got)&efiVarAttrs != efiVarAttrs || !bytes.Equal(got[4:], efiTestValue()) {
		return false, fmt.Sprintf("%s holds %q", efiTestVar, got)
	}
	return true, state
}
