package main

import (
	"os"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestCheckEFI(t *testing.T) {
	e := &env{root: fstest.MapFS{}}
	ok, detail := checkEFI(e)
	require.False(t, ok)
	require.Contains(t, detail, "not booted through UEFI")
	root := fstest.MapFS{
		"sys/firmware/efi":                  &fstest.MapFile{Mode: os.ModeDir},
		"sys/firmware/efi/fw_platform_size": &fstest.MapFile{Data: []byte("32\n")},
	}
	e.root = root
	ok, detail = checkEFI(e)
	require.False(t, ok)
	require.Contains(t, detail, "platform size 32")
	root["sys/firmware/efi/fw_platform_size"] = &fstest.MapFile{Data: []byte("64\n")}
	ok, detail = checkEFI(e)
	require.False(t, ok, detail)
	root["sys/firmware/efi/runtime"] = &fstest.MapFile{Mode: os.ModeDir}
	ok, detail = checkEFI(e)
	require.True(t, ok, detail)
}

func TestCheckEFIVars(t *testing.T) {
	fio := &fakeIO{}
	e := &env{io: fio}
	ok, detail := checkEFIVars(e)
	require.False(t, ok, "no efivarfs")
	require.Contains(t, detail, "no such device")

	fio.efiVars = map[string][]byte{}
	ok, detail = checkEFIVars(e)
	require.True(t, ok, detail)
	require.Equal(t, "written", detail)
	require.Equal(t, append([]byte{7, 0, 0, 0}, efiTestValue()...), fio.efiVars[efiTestVar])

	ok, detail = checkEFIVars(e)
	require.True(t, ok, detail)
	require.Equal(t, "found", detail, "a second boot finds it")

	fio.efiVars[efiTestVar] = append([]byte{7, 0, 0, 0}, "other"...)
	ok, detail = checkEFIVars(e)
	require.False(t, ok)
	require.Contains(t, detail, "other")
}

func TestCheckSecureBoot(t *testing.T) {
	fio := &fakeIO{efiVars: map[string][]byte{}}
	e := &env{io: fio}
	ok, detail := checkSecureBoot(e)
	require.False(t, ok, detail)
	fio.efiVars[efiSecureBootVar] = []byte{6, 0, 0, 0, 0}
	ok, detail = checkSecureBoot(e)
	require.False(t, ok, detail)
	fio.efiVars[efiSecureBootVar] = []byte{6, 0, 0, 0, 1}
	ok, detail = checkSecureBoot(e)
	require.True(t, ok, detail)
}
