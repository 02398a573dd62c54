package vmm

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/bus"
	"github.com/vmmdev/vmm/vmm/hyperv"
)

func TestDispatchHypercallPort(t *testing.T) {
	pio := bus.New("pio")
	require.NoError(t, pio.Register(hyperv.HypercallPort, 1, hypercallPortDevice{}, "hyperv-hypercall"))
	var calls []int
	var ports []uint64
	var fail error
	d := dispatcher{pio: pio, mmio: bus.New("mmio"), hypercall: func(vcpu int, port uint64) error {
		calls = append(calls, vcpu)
		ports = append(ports, port)
		return fail
	}}
	out := d.dispatch(3, &Exit{Kind: ExitIO, Addr: hyperv.HypercallPort, Write: true, Size: 1, Data: []byte{0}})
	require.Nil(t, out.Stop)
	require.Equal(t, []int{3}, calls)
	// The fast signal's port, when no ioeventfd took the write.
	out = d.dispatch(2, &Exit{Kind: ExitIO, Addr: hyperv.SignalPort, Write: true, Size: 4, Data: []byte{17, 0, 0, 0}})
	require.Nil(t, out.Stop)
	require.Equal(t, []uint64{hyperv.HypercallPort, hyperv.SignalPort}, ports)
	calls = calls[:1]

	// Reads of the port are no hypercall; the claiming device answers them.
	data := []byte{0}
	out = d.dispatch(3, &Exit{Kind: ExitIO, Addr: hyperv.HypercallPort, Size: 1, Data: data})
	require.Nil(t, out.Stop)
	require.Equal(t, []byte{0xff}, data)
	require.Len(t, calls, 1)
	require.Zero(t, pio.Stats().UnclaimedReads)

	fail = errors.New("KVM_GET_REGS failed")
	out = d.dispatch(1, &Exit{Kind: ExitIO, Addr: hyperv.HypercallPort, Write: true, Size: 1, Data: []byte{0}})
	require.NotNil(t, out.Stop)
	require.Equal(t, StopError, out.Stop.Kind)
	require.ErrorIs(t, out.Stop.Err, fail)

	// Without Hyper-V the port is an ordinary unclaimed one.
	d = dispatcher{pio: bus.New("pio"), mmio: bus.New("mmio")}
	out = d.dispatch(0, &Exit{Kind: ExitIO, Addr: hyperv.HypercallPort, Write: true, Size: 1, Data: []byte{0}})
	require.Nil(t, out.Stop)
}
