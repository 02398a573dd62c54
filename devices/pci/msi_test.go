package pci

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type msiRecorder struct{ msgs [][4]uint32 }

func (r *msiRecorder) SendMSI(v int, lo, hi, data uint32) error {
	r.msgs = append(r.msgs, [4]uint32{uint32(v), lo, hi, data})
	return nil
}

func TestMSICapability(t *testing.T) {
	b, _ := newTestBus(t)
	rec := &msiRecorder{}
	msi := NewMSI(rec)
	f, err := NewFunction("msi", Identity{Vendor: 0x8086, Device: 0x2922, Class: 0x010601},
		[]BAR{{Index: 5, Kind: BARMem32, Size: 4096, Dev: &regDev{}}}, []Capability{msi.Capability()}, nil)
	require.NoError(t, err)
	slot, err := b.Add(f)
	require.NoError(t, err)
	dev := uint64(slot)
	capOff := uint64(cfgRead32(b, dev, regCapPtr) & 0xff)
	require.NotZero(t, capOff)
	hdr := cfgRead32(b, dev, capOff)
	assert.Equal(t, uint32(CapMSI), hdr&0xff)
	assert.Equal(t, uint32(msiCtrl64), hdr>>16, "64-bit, one vector, disabled")

	msi.Signal()
	assert.Empty(t, rec.msgs, "disabled MSI sends nothing")

	cfgWrite32(b, dev, capOff+4, 0xfee01000)
	cfgWrite32(b, dev, capOff+8, 0)
	cfgWrite16(b, dev, capOff+12, 0x4041)
	// Ask for 8 vectors (MME 3) and enable: MME stays 0, MMC is read-only.
	cfgWrite16(b, dev, capOff+2, 0x3f|msiCtrlEnable)
	assert.Equal(t, uint32(msiCtrl64|msiCtrlEnable), cfgRead32(b, dev, capOff)>>16)
	assert.True(t, msi.Enabled())
	msi.Signal()
	require.Equal(t, [][4]uint32{{0, 0xfee01000, 0, 0x4041}}, rec.msgs)

	// The address's low two bits are reserved.
	cfgWrite32(b, dev, capOff+4, 0xfee01003)
	assert.Equal(t, uint32(0xfee01000), cfgRead32(b, dev, capOff+4))

	// A message outside the APIC range is dropped, not sent.
	cfgWrite32(b, dev, capOff+4, 0x1000)
	msi.Signal()
	assert.Len(t, rec.msgs, 1)
	assert.Equal(t, uint64(1), msi.Dropped())

	msi.Reset()
	assert.False(t, msi.Enabled())
}
