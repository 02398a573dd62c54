package vmm

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/firmware/acpi/aml"
	"github.com/vmmdev/vmm/vmm/hyperv"
)

func TestVMBusConfig(t *testing.T) {
	base := Config{Program: &Program{}, CPUs: 1, Memory: 16 << 20, VMBus: true}
	require.ErrorContains(t, base.Validate(), "--vmbus needs --hyperv with synic")
	f, err := hyperv.ParseFeatures("vpindex,synic")
	require.NoError(t, err)
	base.HyperV = f
	require.NoError(t, base.Validate())

	m := &Machine{cfg: base}
	pci := aml.Device("PCI0")
	require.Equal(t, []aml.Term{pci, acpi.VMBusDevice()}, m.acpiDevices([]aml.Term{pci}))
	m.cfg.VMBus = false
	require.Equal(t, []aml.Term{pci}, m.acpiDevices([]aml.Term{pci}))
}
