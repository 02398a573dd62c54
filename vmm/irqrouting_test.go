package vmm

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/vmm/kvm"
)

func TestPCIRQRouting(t *testing.T) {
	type target struct{ chip, pin uint32 }
	byGSI := map[uint32][]target{}
	for _, r := range pcIRQRouting() {
		require.Equal(t, kvm.IRQRoutingIRQChip, r.Type)
		byGSI[r.GSI] = append(byGSI[r.GSI], target{r.IRQChip, r.Pin})
	}
	require.ElementsMatch(t, []target{{kvm.IRQChipPICMaster, 0}, {kvm.IRQChipIOAPIC, 2}}, byGSI[0], "PIT")
	require.Empty(t, byGSI[2], "cascade has no GSI")
	require.ElementsMatch(t, []target{{kvm.IRQChipPICMaster, 4}, {kvm.IRQChipIOAPIC, 4}}, byGSI[4], "COM1")
	require.ElementsMatch(t, []target{{kvm.IRQChipPICSlave, 1}, {kvm.IRQChipIOAPIC, 9}}, byGSI[9], "SCI")
	require.ElementsMatch(t, []target{{kvm.IRQChipIOAPIC, 23}}, byGSI[23])
	require.Len(t, byGSI, 23)
}
