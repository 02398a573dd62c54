package vmm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeBus records accesses and answers reads with a fixed byte.
type fakeBus struct {
	reads, writes []uint64
	written       [][]byte
	fill          byte
}

func (b *fakeBus) Read(addr uint64, data []byte) bool {
	b.reads = append(b.reads, addr)
	for i := range data {
		data[i] = b.fill
	}
	return true
}

func (b *fakeBus) Write(addr uint64, data []byte) bool {
	b.writes = append(b.writes, addr)
	b.written = append(b.written, append([]byte(nil), data...))
	return true
}

type fakeMSRs map[uint32]uint64

func (f fakeMSRs) ReadMSR(_ int, msr uint32) (uint64, bool) { v, ok := f[msr]; return v, ok }
func (f fakeMSRs) WriteMSR(_ int, msr uint32, v uint64) bool {
	if _, ok := f[msr]; !ok {
		return false
	}
	f[msr] = v
	return true
}

func TestDispatchIO(t *testing.T) {
	pio, mmio := &fakeBus{fill: 0x5a}, &fakeBus{}
	d := &dispatcher{pio: pio, mmio: mmio}

	out := d.dispatch(0, &Exit{Kind: ExitIO, Addr: 0x3f8, Write: true, Size: 1, Data: []byte{'h'}})
	require.Nil(t, out.Stop)
	require.Equal(t, []uint64{0x3f8}, pio.writes)
	require.Equal(t, []byte{'h'}, pio.written[0])

	// rep insw of 3 words: three reads of 2 bytes, filled in place.
	data := make([]byte, 6)
	out = d.dispatch(0, &Exit{Kind: ExitIO, Addr: 0x1f0, Size: 2, Data: data})
	require.Nil(t, out.Stop)
	require.Equal(t, []uint64{0x1f0, 0x1f0, 0x1f0}, pio.reads)
	require.Equal(t, []byte{0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a}, data)

	// A malformed exit stops the VM with an error instead of panicking.
	out = d.dispatch(1, &Exit{Kind: ExitIO, Addr: 0x80, Size: 0, Data: []byte{1}})
	require.NotNil(t, out.Stop)
	require.Equal(t, StopError, out.Stop.Kind)
	require.Equal(t, "vcpu1", out.Stop.Source)
	out = d.dispatch(1, &Exit{Kind: ExitIO, Addr: 0x80, Size: 4, Data: []byte{1, 2}})
	require.Equal(t, StopError, out.Stop.Kind)
}

func TestDispatchMMIO(t *testing.T) {
	pio, mmio := &fakeBus{}, &fakeBus{fill: 0xff}
	d := &dispatcher{pio: pio, mmio: mmio}
	data := make([]byte, 4)
	require.Nil(t, d.dispatch(0, &Exit{Kind: ExitMMIO, Addr: 0xd0000000, Data: data}).Stop)
	require.Equal(t, []byte{0xff, 0xff, 0xff, 0xff}, data)
	require.Nil(t, d.dispatch(0, &Exit{Kind: ExitMMIO, Addr: 0xd0000004, Write: true, Data: []byte{1, 2}}).Stop)
	require.Equal(t, []uint64{0xd0000004}, mmio.writes)
	require.Empty(t, pio.reads)
}

func TestDispatchMSR(t *testing.T) {
	d := &dispatcher{pio: &fakeBus{}, mmio: &fakeBus{}}
	require.True(t, d.dispatch(0, &Exit{Kind: ExitRDMSR, MSR: 0x40000000}).MSRFault, "no handler: #GP")
	require.True(t, d.dispatch(0, &Exit{Kind: ExitWRMSR, MSR: 0x40000000}).MSRFault)

	msrs := fakeMSRs{0x40000000: 7}
	d.msr = msrs
	out := d.dispatch(0, &Exit{Kind: ExitRDMSR, MSR: 0x40000000})
	require.False(t, out.MSRFault)
	require.Equal(t, uint64(7), out.MSRValue)
	require.False(t, d.dispatch(0, &Exit{Kind: ExitWRMSR, MSR: 0x40000000, Value: 9}).MSRFault)
	require.Equal(t, uint64(9), msrs[0x40000000])
	require.True(t, d.dispatch(0, &Exit{Kind: ExitRDMSR, MSR: 0x40000001}).MSRFault)
}

func TestDispatchStops(t *testing.T) {
	d := &dispatcher{pio: &fakeBus{}, mmio: &fakeBus{}}
	cases := []struct {
		e    Exit
		want StopKind
	}{
		{Exit{Kind: ExitShutdown}, StopReset},
		{Exit{Kind: ExitSystemEvent, Event: systemEventShutdown}, StopPowerOff},
		{Exit{Kind: ExitSystemEvent, Event: systemEventReset}, StopReset},
		{Exit{Kind: ExitSystemEvent, Event: systemEventCrash}, StopPanic},
		{Exit{Kind: ExitSystemEvent, Event: 99}, StopError},
		{Exit{Kind: ExitInternalError, Suberror: 1}, StopError},
		{Exit{Kind: ExitFailEntry, HWReason: 0x21}, StopError},
		{Exit{Kind: ExitHLT}, StopError},
		{Exit{Kind: ExitUnknown, Raw: 1234}, StopError},
	}
	for _, c := range cases {
		out := d.dispatch(2, &c.e)
		require.NotNil(t, out.Stop, c.e.Kind.String())
		require.Equal(t, c.want, out.Stop.Kind, c.e.Kind.String())
		require.Equal(t, "vcpu2", out.Stop.Source)
	}
	require.Nil(t, d.dispatch(0, &Exit{Kind: ExitIntr}).Stop)
}
