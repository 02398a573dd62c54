package main

import (
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"

	"github.com/vmmdev/vmm/firmware/acpi"
)

func pciFS(devs map[string][2]string, msi map[string]int) fstest.MapFS {
	fsys := fstest.MapFS{}
	for addr, id := range devs {
		p := "sys/bus/pci/devices/" + addr
		fsys[p+"/vendor"] = &fstest.MapFile{Data: []byte(id[0] + "\n")}
		fsys[p+"/device"] = &fstest.MapFile{Data: []byte(id[1] + "\n")}
		for i := range msi[addr] {
			fsys[p+"/msi_irqs/"+string(rune('0'+i))] = &fstest.MapFile{Data: []byte("msix\n")}
		}
	}
	return fsys
}

func TestCheckPCI(t *testing.T) {
	devs := map[string][2]string{
		"0000:00:00.0": {"0x8086", "0x1237"},
		"0000:00:01.0": {"0x1af4", "0x1044"},
		"0000:00:02.0": {"0x1af4", "0x1043"},
	}
	fsys := pciFS(devs, map[string]int{"0000:00:01.0": 2, "0000:00:02.0": 3})
	for _, d := range []string{"0000:00:01.0", "0000:00:02.0"} {
		fsys["sys/bus/pci/devices/"+d+"/driver"] = &fstest.MapFile{Mode: fs.ModeSymlink, Data: []byte("../../../bus/pci/drivers/virtio-pci")}
	}
	e := &env{root: fsys, opts: options{params: map[string]string{"vmm.pci_devices": "2"}}}
	pass, detail := checkPCI(e)
	assert.True(t, pass, detail)
	assert.Equal(t, "00:00.0 8086:1237  msi=0; 00:01.0 1af4:1044 virtio-pci msi=2; 00:02.0 1af4:1043 virtio-pci msi=3", detail)

	e.opts.params["vmm.pci_devices"] = "3"
	pass, detail = checkPCI(e)
	assert.False(t, pass)
	assert.Contains(t, detail, "2 virtio functions, want 3")

	// No MSI-X, no driver, no host bridge.
	delete(devs, "0000:00:00.0")
	e = &env{root: pciFS(devs, nil)}
	pass, detail = checkPCI(e)
	assert.False(t, pass)
	assert.Contains(t, detail, "0000:00:01.0 not bound to virtio-pci")
	assert.Contains(t, detail, "0000:00:02.0 has no MSI-X vectors")
	assert.Contains(t, detail, "no 8086:1237 host bridge")

	pass, _ = checkPCI(&env{root: fstest.MapFS{}})
	assert.False(t, pass)
}

func TestCheckRNG(t *testing.T) {
	random := make([]byte, 64)
	random[7] = 1
	fsys := fstest.MapFS{
		"sys/class/misc/hw_random/rng_current": {Data: []byte("virtio_rng.0\n")},
		"dev/hwrng":                            {Data: random},
	}
	pass, detail := checkRNG(&env{root: fsys})
	assert.True(t, pass, detail)

	fsys["dev/hwrng"] = &fstest.MapFile{Data: make([]byte, 64)}
	pass, detail = checkRNG(&env{root: fsys})
	assert.False(t, pass)
	assert.Contains(t, detail, "zero bytes")

	fsys["dev/hwrng"] = &fstest.MapFile{Data: random[:10]}
	pass, detail = checkRNG(&env{root: fsys})
	assert.False(t, pass)
	assert.Contains(t, detail, "unexpected EOF")

	fsys["sys/class/misc/hw_random/rng_current"] = &fstest.MapFile{Data: []byte("none\n")}
	pass, detail = checkRNG(&env{root: fsys})
	assert.False(t, pass)
	assert.Contains(t, detail, `"none"`)
}

func TestCheckConsole(t *testing.T) {
	fsys := fstest.MapFS{
		"proc/consoles":  {Data: []byte("hvc0                 -W- (EC p a)    229:0\n")},
		"proc/self/fd/1": {Mode: fs.ModeSymlink, Data: []byte("/dev/hvc0")},
	}
	pass, detail := checkConsole(&env{root: fsys})
	assert.True(t, pass, detail)

	fsys["proc/self/fd/1"] = &fstest.MapFile{Mode: fs.ModeSymlink, Data: []byte("/dev/console")}
	pass, detail = checkConsole(&env{root: fsys})
	assert.False(t, pass)
	assert.Contains(t, detail, "not /dev/hvc0")

	fsys["proc/consoles"] = &fstest.MapFile{Data: []byte("hvc0                 -W- (C p a)    229:0\n")}
	pass, _ = checkConsole(&env{root: fsys})
	assert.False(t, pass, "not enabled")

	fsys["proc/consoles"] = &fstest.MapFile{Data: []byte("ttyS0                -W- (EC p a)    4:64\n")}
	pass, detail = checkConsole(&env{root: fsys})
	assert.False(t, pass)
	assert.Contains(t, detail, "hvc0 is not a console")
}

func TestCheckACPI(t *testing.T) {
	clean := []string{
		"ACPI: RSDP 0x00000000000E0000 000024 (v02 VMMDEV)",
		"ACPI: PCI Root Bridge [PCI0] (domain 0000 [bus 00])",
		"PCI: MMCONFIG at [mem 0xe0000000-0xe00fffff] reserved as ACPI motherboard resource",
	}
	pass, detail := checkACPI(&env{kernelLog: logOf(clean...)})
	assert.True(t, pass, detail)
	assert.Equal(t, "3 ACPI lines, no errors or warnings", detail)

	for _, bad := range []string{
		"ACPI Error: AE_NOT_FOUND, While resolving a named reference package element - LNKA (20220331/dspkginit-438)",
		"ACPI BIOS Warning (bug): Incorrect checksum in table [DSDT] - 0x12, should be 0x34 (20220331/tbprint-174)",
		"ACPI Warning: SystemIO range 0x00000000000003C0-0x00000000000003C2 conflicts with OpRegion",
		"[Firmware Bug]: PCI: MMCONFIG at [mem 0xe0000000-0xe00fffff] not reserved in ACPI motherboard resources",
	} {
		pass, detail := checkACPI(&env{kernelLog: logOf(append(clean, bad)...)})
		assert.False(t, pass, bad)
		assert.Contains(t, detail, bad)
	}
	pass, _ = checkACPI(&env{kernelLog: logOf("no tables here")})
	assert.False(t, pass)
}

func TestCheckACPITables(t *testing.T) {
	assert.Equal(t, acpi.OEMID, acpiOEMID, "the agent's copy of vmm's OEM ID")
	log := []string{
		"ACPI: RSDP 0x00000000000F5A10 000024 (v02 VMMDEV)",
		"ACPI: XSDT 0x000000000FFE1E3A 00004C (v01 VMMDEV VMM      00000001 VMM  00000001)",
		"ACPI: FACP 0x000000000FFE1C2A 000114 (v06 VMMDEV VMM      00000001 VMM  00000001)",
		"ACPI: DSDT 0x000000000FFE0040 001BEA (v02 VMMDEV VMM      00000001 VMM  00000001)",
		"ACPI: APIC 0x000000000FFE1D3E 000078 (v05 VMMDEV VMM      00000001 VMM  00000001)",
		"ACPI: MCFG 0x000000000FFE1DB6 00003C (v01 VMMDEV VMM      00000001 VMM  00000001)",
		"ACPI: Reserving FACP table memory at [mem 0xffe1c2a-0xffe1d3d]",
	}
	pass, detail := checkACPITables(&env{kernelLog: logOf(log...)})
	assert.True(t, pass, detail)

	e := &env{kernelLog: logOf(log...), opts: options{params: map[string]string{"vmm.acpi_tables": "FACP,SSDT"}}}
	pass, detail = checkACPITables(e)
	assert.False(t, pass)
	assert.Contains(t, detail, "SSDT absent")

	bochs := append([]string{}, log...)
	bochs[3] = "ACPI: DSDT 0x000000000FFE0040 001BEA (v01 BOCHS  BXPC     00000001 BXPC 00000001)"
	pass, detail = checkACPITables(&env{kernelLog: logOf(bochs...)})
	assert.False(t, pass)
	assert.Contains(t, detail, `DSDT from OEM "BOCHS"`)
}

func TestCheckBalloon(t *testing.T) {
	fsys := fstest.MapFS{
		"sys/bus/virtio/drivers/virtio_balloon/virtio3": {Mode: fs.ModeSymlink | 0o777},
		"sys/bus/virtio/drivers/virtio_balloon/bind":    {},
		"sys/bus/virtio/devices/virtio3/features":       {Data: []byte("0110010000000000000000000000000010000000000000000000000000000000\n")},
	}
	io := &fakeIO{}
	pass, detail := checkBalloon(&env{root: fsys, io: io})
	assert.True(t, pass, detail)
	assert.Equal(t, "virtio3: touched and freed 128 MiB", detail)
	assert.Equal(t, balloonBytes, io.touched)
	assert.Equal(t, balloonSettle, io.settled)

	// memfree does the same with no balloon at all.
	io = &fakeIO{}
	pass, detail = checkMemFree(&env{root: fstest.MapFS{}, io: io})
	assert.True(t, pass, detail)
	assert.Equal(t, balloonBytes, io.touched)
	assert.Equal(t, balloonSettle, io.settled)

	fsys["sys/bus/virtio/devices/virtio3/features"] = &fstest.MapFile{Data: []byte("0110000000\n")}
	pass, detail = checkBalloon(&env{root: fsys, io: &fakeIO{}})
	assert.False(t, pass)
	assert.Contains(t, detail, "free page reporting not negotiated")

	delete(fsys, "sys/bus/virtio/drivers/virtio_balloon/virtio3")
	pass, detail = checkBalloon(&env{root: fsys, io: &fakeIO{}})
	assert.False(t, pass)
	assert.Contains(t, detail, "drives no device")

	pass, _ = checkBalloon(&env{root: fstest.MapFS{}, io: &fakeIO{}})
	assert.False(t, pass)
}
