package storvsc

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/internal/blocktest"
	"github.com/vmmdev/vmm/devices/scsi"
	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/internal/guestdrv"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
	"github.com/vmmdev/vmm/storage/block"
	"github.com/vmmdev/vmm/storage/raw"
)

const (
	diskBlocks = 2048
	dataPFN    = 0x800 // guest data pages from 8 MiB
)

// flushCounter counts the image's Flush calls (fdatasync for a raw image).
type flushCounter struct {
	block.Device
	flushes atomic.Int64
}

func (f *flushCounter) Flush() error {
	f.flushes.Add(1)
	return f.Device.Flush()
}

type rig struct {
	gates []*blocktest.Gate
	t     testing.TB
	bus   *vmbus.Bus
	g     *guestdrv.Guest
	ctrl  *Controller
	disks []*flushCounter
	paths []string
	ch    *guestdrv.Channel
	offer guestdrv.Offer
	id    uint64
}

type disk struct {
	readOnly bool
	gated    bool // reads go through a blocktest.Gate (r.gates[i])
}

// newRig connects a guest to a bus with one controller over disks (LUN i
// holds byte i+1 in block 0 and byte lba%256 after) and opens its channel.
func newRig(t testing.TB, vps int, disks ...disk) *rig {
	t.Helper()
	synic := guestdrv.NewSynIC()
	mem := make(guestdrv.Mem, 16<<20)
	b := vmbus.New(vmbus.Config{Mem: mem, Host: synic, VPs: vps})
	r := &rig{t: t, bus: b, g: guestdrv.New(0, b, synic)}
	r.g.Mem = mem
	var luns []*scsi.Disk
	for i, d := range disks {
		path := filepath.Join(t.TempDir(), "disk.img")
		img := make([]byte, diskBlocks*scsi.BlockSize)
		for j := range img {
			img[j] = byte(j / scsi.BlockSize)
		}
		img[0] = byte(i + 1)
		require.NoError(t, os.WriteFile(path, img, 0o600))
		im, err := raw.Open(raw.Options{Path: path, ReadOnly: d.readOnly}, nil)
		require.NoError(t, err)
		t.Cleanup(func() { im.Close() })
		var dev block.Device = im
		if d.gated {
			g := blocktest.New(im)
			r.gates = append(r.gates, g)
			dev = g
		}
		fc := &flushCounter{Device: dev}
		r.disks, r.paths = append(r.disks, fc), append(r.paths, path)
		luns = append(luns, scsi.NewDisk("lun", fc, "SN", nil))
	}
	c, err := New(Config{Instance: vmbus.GUID{1}, Disks: luns, Mem: mem, VPs: vps, Bus: b})
	require.NoError(t, err)
	t.Cleanup(c.Shutdown)
	r.ctrl = c
	_, err = b.Add(c)
	require.NoError(t, err)
	_, err = r.g.Negotiate()
	require.NoError(t, err)
	offers, err := r.g.RequestOffers()
	require.NoError(t, err)
	require.Len(t, offers, 1)
	require.Equal(t, [16]byte(Class), offers[0].Class)
	r.offer = offers[0]
	ch, st, err := r.g.Open(offers[0], 8, 8, 0)
	require.NoError(t, err)
	require.Zero(t, st)
	r.ch = ch
	return r
}

// vstor builds a vstor_packet of n bytes.
// gpaHeader is a GPA-direct packet's header (dataBuffer's input): one
// range of length bytes at offset off into the first of pfns.
func gpaHeader(length, off uint32, pfns ...uint64) []byte {
	h := make([]byte, 16+8*len(pfns))
	le := binary.LittleEndian
	le.PutUint32(h[4:], 1)
	le.PutUint32(h[8:], length)
	le.PutUint32(h[12:], off)
	for i, p := range pfns {
		le.PutUint64(h[16+8*i:], p)
	}
	return h
}

func vstor(op uint32, n int) []byte {
	p := make([]byte, n)
	binary.LittleEndian.PutUint32(p, op)
	binary.LittleEndian.PutUint32(p[4:], 1)
	return p
}

// wait polls the channel's host->guest ring for the next packet.
func (r *rig) wait(ch *guestdrv.Channel) guestdrv.Packet {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if p, ok := ch.In.Read(); ok {
			return p
		}
		time.Sleep(time.Millisecond)
	}
	r.t.Fatal("no completion from the host")
	return guestdrv.Packet{}
}

// do sends a request inband on ch and returns the completion's payload.
func (r *rig) do(ch *guestdrv.Channel, req []byte) []byte {
	r.t.Helper()
	r.id++
	require.NoError(r.t, ch.Send(ring.TypeDataInband, ring.FlagCompletionRequest, r.id, req))
	p := r.wait(ch)
	require.Equal(r.t, uint16(ring.TypeCompletion), p.Type)
	require.Equal(r.t, r.id, p.ID)
	require.GreaterOrEqual(r.t, len(p.Payload), packetSize)
	require.Equal(r.t, uint32(opCompleteIO), binary.LittleEndian.Uint32(p.Payload))
	return p.Payload
}

func status(p []byte) uint32 { return binary.LittleEndian.Uint32(p[8:]) }

// initialize runs Linux's handshake offering versions in turn; it returns
// the properties completion.
func (r *rig) initialize(versions ...uint16) []byte {
	r.t.Helper()
	require.Zero(r.t, status(r.do(r.ch, vstor(opBeginInit, packetSize))))
	ok := false
	for _, v := range versions {
		q := vstor(opQueryVersion, packetSize)
		binary.LittleEndian.PutUint16(q[hdrSize:], v)
		st := status(r.do(r.ch, q))
		if versionAccepted(v) {
			require.Zero(r.t, st, "version %#x", v)
			ok = true
			break
		}
		require.Equal(r.t, uint32(statusRevisionMismatch), st, "version %#x", v)
	}
	require.True(r.t, ok)
	props := r.do(r.ch, vstor(opQueryProperties, packetSize))
	require.Zero(r.t, status(props))
	require.Zero(r.t, status(r.do(r.ch, vstor(opEndInit, packetSize))))
	return props
}

// srb is one SCSI request.
type srb struct {
	path, target, lun byte
	cdb               []byte
	data              []byte // guest buffer contents (nil: no data, inband)
	offset            uint32 // into the first page
	dataIn            bool
	pfns              []uint64 // override the data pages
	transfer          uint32   // override data_transfer_length
}

type srbResult struct {
	srbStatus, scsiStatus byte
	sense                 []byte
	n                     uint32
	data                  []byte
}

// exec runs s on ch; data pages are consecutive from dataPFN.
func (r *rig) exec(ch *guestdrv.Channel, s srb) srbResult {
	r.t.Helper()
	le := binary.LittleEndian
	req := vstor(opExecuteSRB, packetSize)
	le.PutUint16(req[hdrSize:], srbSizeWin8)
	req[offPathID], req[offTargetID], req[offLUN] = s.path, s.target, s.lun
	req[offCDBLength] = byte(len(s.cdb))
	req[offSenseLength] = senseWin8
	copy(req[offCDB:], s.cdb)
	r.id++
	if s.data == nil {
		require.NoError(r.t, ch.Send(ring.TypeDataInband, ring.FlagCompletionRequest, r.id, req))
	} else {
		n := uint64(len(s.data))
		pages := (uint64(s.offset) + n + 4095) / 4096
		pfns := s.pfns
		if pfns == nil {
			for i := range pages {
				pfns = append(pfns, dataPFN+i)
			}
		}
		copy(r.g.Mem[dataPFN*4096+uint64(s.offset):], s.data)
		transfer := uint32(n)
		if s.transfer != 0 {
			transfer = s.transfer
		}
		le.PutUint32(req[offTransferLen:], transfer)
		require.NoError(r.t, ch.SendHdr(ring.TypeDataGPADirect, ring.FlagCompletionRequest, r.id,
			gpaHeader(uint32(n), s.offset, pfns...), req))
	}
	p := r.wait(ch)
	require.Equal(r.t, r.id, p.ID)
	c := p.Payload
	require.GreaterOrEqual(r.t, len(c), packetSize)
	res := srbResult{srbStatus: c[offSRBStatus], scsiStatus: c[offSCSIStatus], n: le.Uint32(c[offTransferLen:])}
	res.sense = c[offCDB : offCDB+int(c[offSenseLength])]
	if s.data != nil {
		res.data = append([]byte(nil), r.g.Mem[dataPFN*4096+uint64(s.offset):][:len(s.data)]...)
	}
	return res
}

func cdb10(op byte, lba uint32, n uint16) []byte {
	c := make([]byte, 10)
	c[0] = op
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], n)
	return c
}

func TestInitVersions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		versions []uint16
		want     string
	}{
		{"6.2", []uint16{Version6_2}, "6.2"},
		{"6.0 after 7.0", []uint16{0x700, Version6_0}, "6.0"},
		{"5.1 after win7 and win6", []uint16{0x402, 0x200, Version5_1}, "5.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 4, disk{})
			props := r.initialize(tc.versions...)
			le := binary.LittleEndian
			require.Equal(t, uint16(3), le.Uint16(props[offMaxChannels:]), "sub-channels: one per vCPU beyond the first")
			require.Equal(t, uint32(propMultiChan), le.Uint32(props[offPropFlags:]))
			require.Equal(t, uint32(scsi.MaxTransfer), le.Uint32(props[offMaxTransfer:]))
			st := r.ctrl.Stats()
			require.Equal(t, tc.want, st.Version)
			require.True(t, st.Ready)
		})
	}
	// One vCPU: no sub-channels. A pre-Windows 8 guest's 48-byte
	// packets are answered with full 64-byte ones.
	r := newRig(t, 1, disk{})
	require.Zero(t, status(r.do(r.ch, vstor(opBeginInit, minPacket))))
	q := vstor(opQueryVersion, minPacket)
	binary.LittleEndian.PutUint16(q[hdrSize:], Version6_2)
	require.Zero(t, status(r.do(r.ch, q)))
	props := r.do(r.ch, vstor(opQueryProperties, minPacket))
	require.Zero(t, binary.LittleEndian.Uint16(props[offMaxChannels:]))
	require.Zero(t, binary.LittleEndian.Uint32(props[offPropFlags:]))
}

func TestIORoundTrip(t *testing.T) {
	r := newRig(t, 2, disk{}, disk{})
	r.initialize(Version6_2)
	inq := r.exec(r.ch, srb{cdb: []byte{scsi.OpInquiry, 0, 0, 0, 96, 0}, data: make([]byte, 96), dataIn: true})
	require.Equal(t, byte(srbSuccess), inq.srbStatus)
	require.Equal(t, uint32(36), inq.n)
	require.Equal(t, "Msft    ", string(inq.data[8:16]))
	rl := make([]byte, 12)
	rl[0] = scsi.OpReportLUNs
	binary.BigEndian.PutUint32(rl[6:], 64)
	rep := r.exec(r.ch, srb{lun: 7, cdb: rl, data: make([]byte, 64)})
	require.Equal(t, byte(srbSuccess), rep.srbStatus)
	require.Equal(t, uint32(24), rep.n)
	require.Equal(t, uint32(16), binary.BigEndian.Uint32(rep.data))
	require.Equal(t, byte(1), rep.data[17])

	// 12 KiB from 0x300 into a page: four pages, the last partial.
	pattern := make([]byte, 24*scsi.BlockSize)
	for i := range pattern {
		pattern[i] = byte(i*31 + 7)
	}
	w := r.exec(r.ch, srb{lun: 1, cdb: cdb10(scsi.OpWrite10, 100, 24), data: pattern, offset: 0x300})
	require.Equal(t, byte(srbSuccess), w.srbStatus)
	require.Equal(t, uint32(len(pattern)), w.n)
	before := r.disks[1].flushes.Load()
	sc := r.exec(r.ch, srb{lun: 1, cdb: cdb10(scsi.OpSyncCache10, 0, 0)})
	require.Equal(t, byte(srbSuccess), sc.srbStatus)
	require.Equal(t, before+1, r.disks[1].flushes.Load(), "SYNCHRONIZE CACHE flushes the image")
	img, err := os.ReadFile(r.paths[1])
	require.NoError(t, err)
	require.True(t, bytes.Equal(img[100*512:124*512], pattern))
	require.Equal(t, byte(124), img[124*512])
	img0, _ := os.ReadFile(r.paths[0])
	require.Equal(t, byte(100), img0[100*512], "LUN 0 untouched")

	rd := r.exec(r.ch, srb{lun: 1, cdb: cdb10(scsi.OpRead10, 100, 24), data: make([]byte, len(pattern)), offset: 0x10, dataIn: true})
	require.Equal(t, byte(srbSuccess), rd.srbStatus)
	require.Equal(t, pattern, rd.data)
	rd0 := r.exec(r.ch, srb{lun: 0, cdb: cdb10(scsi.OpRead10, 0, 1), data: make([]byte, 512), dataIn: true})
	require.Equal(t, byte(1), rd0.data[0])
	st := r.ctrl.Stats()
	require.Len(t, st.LUNs, 2)
	require.Equal(t, uint64(1), st.LUNs[1].Writes)
	require.Equal(t, uint64(1), st.LUNs[1].Reads)
	require.Equal(t, uint64(1), st.LUNs[1].Flushes)
}

func TestErrors(t *testing.T) {
	r := newRig(t, 2, disk{}, disk{readOnly: true})
	// Before initialisation: refused, not run.
	require.Equal(t, uint32(statusInvalidDeviceState), status(r.do(r.ch, vstor(opExecuteSRB, packetSize))))
	require.Equal(t, uint32(statusInvalidDeviceState), status(r.do(r.ch, vstor(opQueryProperties, packetSize))))
	require.Equal(t, uint32(statusInvalidParameter), status(r.do(r.ch, vstor(opBeginInit, 20))))
	require.Equal(t, uint32(statusInvalidDeviceState), status(r.do(r.ch, vstor(99, packetSize))))
	r.initialize(Version6_2)
	buf := make([]byte, 4096)
	for name, c := range map[string]struct {
		s    srb
		want byte
	}{
		"absent LUN":       {srb{lun: 2, cdb: []byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0}}, srbInvalidLUN},
		"target 1":         {srb{target: 1, cdb: []byte{scsi.OpRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}, data: buf}, srbInvalidLUN},
		"channel 1":        {srb{path: 1, cdb: []byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0}}, srbInvalidLUN},
		"no CDB":           {srb{cdb: nil}, srbInvalidRequest},
		"17-byte CDB":      {srb{cdb: make([]byte, 17)}, srbInvalidRequest},
		"page beyond RAM":  {srb{cdb: cdb10(scsi.OpRead10, 0, 8), data: buf, pfns: []uint64{1 << 20}}, srbInvalidRequest},
		"PFN overflows":    {srb{cdb: cdb10(scsi.OpRead10, 0, 8), data: buf, pfns: []uint64{1 << 60}}, srbInvalidRequest},
		"too few PFNs":     {srb{cdb: cdb10(scsi.OpRead10, 0, 8), data: buf, offset: 8, pfns: []uint64{dataPFN}}, srbInvalidRequest},
		"transfer > range": {srb{cdb: cdb10(scsi.OpRead10, 0, 16), data: buf, transfer: 8192}, srbInvalidRequest},
	} {
		res := r.exec(r.ch, c.s)
		require.Equal(t, c.want, res.srbStatus, name)
		require.Zero(t, res.n, name)
	}
	for name, c := range map[string]struct {
		lun      byte
		cdb      []byte
		key, asc byte
	}{
		"beyond the disk":  {0, cdb10(scsi.OpRead10, diskBlocks, 1), scsi.KeyIllegalRequest, scsi.ASCLBAOutOfRange},
		"more than buffer": {0, cdb10(scsi.OpRead10, 0, 9), scsi.KeyIllegalRequest, scsi.ASCInvalidFieldCDB},
		"unknown opcode":   {0, []byte{0xc0, 0, 0, 0, 0, 0}, scsi.KeyIllegalRequest, scsi.ASCInvalidOpcode},
		"read-only write":  {1, cdb10(scsi.OpWrite10, 0, 1), scsi.KeyDataProtect, scsi.ASCWriteProtected},
	} {
		res := r.exec(r.ch, srb{lun: c.lun, cdb: c.cdb, data: buf})
		require.Equal(t, byte(srbError|srbAutosenseValid), res.srbStatus, name)
		require.Equal(t, byte(scsi.StatusCheckCondition), res.scsiStatus, name)
		require.Len(t, res.sense, scsi.SenseSize, name)
		require.Equal(t, c.key, res.sense[2], name)
		require.Equal(t, c.asc, res.sense[12], name)
	}
	img, _ := os.ReadFile(r.paths[1])
	require.Equal(t, byte(2), img[0], "read-only image unchanged")
	// Absent LUNs and targets answer a scan as Hyper-V does: INQUIRY
	// says "not present", REPORT LUNS lists nothing, VPD pages fail.
	for _, s := range []srb{{lun: 9}, {target: 1}, {path: 3}} {
		s.cdb, s.data = []byte{scsi.OpInquiry, 0, 0, 0, 96, 0}, make([]byte, 96)
		res := r.exec(r.ch, s)
		require.Equal(t, byte(srbSuccess), res.srbStatus)
		require.Equal(t, uint32(36), res.n)
		require.Equal(t, byte(0x7f), res.data[0])
		s.cdb = []byte{scsi.OpInquiry, 1, 0x80, 0, 96, 0}
		res = r.exec(r.ch, s)
		require.Equal(t, byte(scsi.StatusCheckCondition), res.scsiStatus)
	}
	rl := make([]byte, 12)
	rl[0] = scsi.OpReportLUNs
	binary.BigEndian.PutUint32(rl[6:], 64)
	rep := r.exec(r.ch, srb{target: 1, cdb: rl, data: make([]byte, 64)})
	require.Equal(t, byte(srbSuccess), rep.srbStatus)
	require.Equal(t, uint32(8), rep.n)
	require.Zero(t, binary.BigEndian.Uint32(rep.data))
	// A packet of another type and a GPA packet with a control operation.
	r.id++
	require.NoError(t, r.ch.Send(ring.TypeDataXferPages, ring.FlagCompletionRequest, r.id, vstor(opBeginInit, packetSize)))
	require.Equal(t, uint32(statusInvalidParameter), status(r.wait(r.ch).Payload))
	r.id++
	require.NoError(t, r.ch.SendHdr(ring.TypeDataGPADirect, ring.FlagCompletionRequest, r.id, make([]byte, 24), vstor(opBeginInit, packetSize)))
	require.Equal(t, uint32(statusInvalidParameter), status(r.wait(r.ch).Payload))
	// Sub-channels beyond the limit (one, with two vCPUs).
	q := vstor(opCreateSubChannels, packetSize)
	binary.LittleEndian.PutUint16(q[hdrSize:], 2)
	require.Equal(t, uint32(statusInvalidParameter), status(r.do(r.ch, q)))
	// Still working.
	res := r.exec(r.ch, srb{cdb: cdb10(scsi.OpRead10, 3, 1), data: make([]byte, 512)})
	require.Equal(t, byte(srbSuccess), res.srbStatus)
	require.Equal(t, byte(3), res.data[1])
	st := r.ctrl.Stats()
	require.NotZero(t, st.Bad)
	require.NotZero(t, st.Refused)
}

// recvMsg polls for the next control message (offers come from a
// goroutine of the controller).
func (r *rig) recvMsg() []byte {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if m := r.g.Recv(); m != nil {
			return m
		}
		time.Sleep(time.Millisecond)
	}
	r.t.Fatal("no control message")
	return nil
}

func TestSubChannels(t *testing.T) {
	r := newRig(t, 4, disk{})
	r.initialize(Version6_2)
	q := vstor(opCreateSubChannels, packetSize)
	binary.LittleEndian.PutUint16(q[hdrSize:], 2)
	require.Zero(t, status(r.do(r.ch, q)))
	var offers []guestdrv.Offer
	for i := 1; i <= 2; i++ {
		m := r.recvMsg()
		require.Equal(t, uint32(1), guestdrv.Type(m))
		o := guestdrv.ParseOffer(m)
		require.Equal(t, r.offer.Instance, o.Instance)
		require.Equal(t, uint16(i), o.SubIndex)
		offers = append(offers, o)
	}
	var subs []*guestdrv.Channel
	for i, o := range offers {
		ch, st, err := r.g.Open(o, 4, 4, i+1)
		require.NoError(t, err)
		require.Zero(t, st)
		subs = append(subs, ch)
	}
	// I/O on each sub-channel is answered there.
	data := bytes.Repeat([]byte{0x5a}, 4096)
	for i, ch := range subs {
		w := r.exec(ch, srb{cdb: cdb10(scsi.OpWrite10, uint32(8*i), 8), data: data})
		require.Equal(t, byte(srbSuccess), w.srbStatus)
		_, ok := r.ch.In.Read()
		require.False(t, ok)
	}
	img, _ := os.ReadFile(r.paths[0])
	require.Equal(t, data, img[8*512:16*512])
	// Only one more may be asked for; not from a sub-channel.
	require.Equal(t, uint32(statusInvalidParameter), status(r.do(r.ch, q)))
	binary.LittleEndian.PutUint16(q[hdrSize:], 1)
	require.Equal(t, uint32(statusInvalidDeviceState), status(r.do(subs[0], vstor(opBeginInit, packetSize))))
	require.Equal(t, uint32(statusInvalidDeviceState), status(r.do(subs[0], q)))
	require.Zero(t, status(r.do(r.ch, q)))
	require.Equal(t, uint16(3), guestdrv.ParseOffer(r.recvMsg()).SubIndex)
	r.ctrl.wg.Wait() // the offering goroutines have counted
	st := r.ctrl.Stats()
	require.Equal(t, 3, st.SubChannels)
	require.Equal(t, uint64(3), st.Offered)
	require.Equal(t, 3, st.Channels)
	bs := r.bus.Stats()
	require.Len(t, bs.Channels, 4)

	// Closing the primary takes the sub-channels down; a new open
	// starts again.
	require.Zero(t, r.g.Post(guestdrv.Msg(7, 12, r.ch.Relid)))
	for range 3 {
		require.Equal(t, uint32(2), guestdrv.Type(r.recvMsg()))
	}
	require.Equal(t, 0, r.ctrl.Stats().Channels)
	ch, st2, err := r.g.Open(r.offer, 4, 4, 0)
	require.NoError(t, err)
	require.Zero(t, st2)
	r.ch = ch
	require.Equal(t, uint32(statusInvalidDeviceState), status(r.do(r.ch, q)))
	r.initialize(Version6_2)
	binary.LittleEndian.PutUint16(q[hdrSize:], 3)
	require.Zero(t, status(r.do(r.ch, q)))
}

// TestRingFull: completions that find the guest's ring full wait for its
// signal and go out in order.
func TestRingFull(t *testing.T) {
	r := newRig(t, 1, disk{})
	// Reopen with a one-page answer ring, fill the request ring with
	// requests whose completions are not read, then read them all.
	require.NoError(t, r.ch.Close())
	ch, st, err := r.g.Open(r.offer, 8, 2, 0)
	require.NoError(t, err)
	require.Zero(t, st)
	r.ch = ch
	r.initialize(Version6_2)
	n := 0
	for ; ; n++ {
		req := vstor(opExecuteSRB, packetSize)
		req[offCDBLength] = 6
		if err := r.ch.Send(ring.TypeDataInband, ring.FlagCompletionRequest, uint64(1000+n), req); err != nil {
			break
		}
	}
	require.Greater(t, n, 4096/(16+packetSize+8))
	got := 0
	seen := map[uint64]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for got < n && time.Now().Before(deadline) {
		p, ok := r.ch.In.Read()
		if !ok {
			// The guest signals the host after reading, as Linux does
			// when pending_send_sz is crossed.
			if r.ch.In.Get(guestdrv.PendingOff) != 0 {
				r.g.Bus.Signal(r.ch.Conn)
			}
			time.Sleep(time.Millisecond)
			continue
		}
		// Requests run concurrently: completions come in any order,
		// each transaction exactly once.
		require.True(t, p.ID >= 1000 && p.ID < uint64(1000+n) && !seen[p.ID], "transaction %d", p.ID)
		seen[p.ID] = true
		require.Equal(t, byte(srbSuccess), p.Payload[offSRBStatus])
		got++
	}
	require.Equal(t, n, got)
}

// TestSignalMaskIdle: the worker masks the guest's signals only while it
// drains; once idle the mask is clear, so the guest's next request (sent
// with a signal into an empty ring) wakes it.
func TestSignalMaskIdle(t *testing.T) {
	r := newRig(t, 1, disk{})
	r.initialize(Version6_2)
	for i := range 20 {
		rd := r.exec(r.ch, srb{cdb: cdb10(scsi.OpRead10, uint32(i), 1), data: make([]byte, 512), dataIn: true})
		require.Equal(t, byte(srbSuccess), rd.srbStatus)
		require.Eventually(t, func() bool { return r.ch.Out.Get(guestdrv.MaskOff) == 0 }, 5*time.Second, time.Millisecond,
			"request %d: the idle worker leaves the guest's signals unmasked", i)
	}
	require.Equal(t, uint64(24), r.ctrl.Stats().Packets)
}

// twoRegions is guest RAM with a hole: pages [0, 16) and [32, 48).
type twoRegions struct{ lo, hi guestdrv.Mem }

func (m twoRegions) Slice(gpa, n uint64) ([]byte, error) {
	switch {
	case gpa+n <= 16*pageSize:
		return m.lo.Slice(gpa, n)
	case gpa >= 32*pageSize && gpa+n <= 48*pageSize:
		return m.hi.Slice(gpa-32*pageSize, n)
	}
	return nil, os.ErrNotExist
}

func TestDataBufferRuns(t *testing.T) {
	mem := twoRegions{make(guestdrv.Mem, 16*pageSize), make(guestdrv.Mem, 16*pageSize)}
	c, err := New(Config{Disks: []*scsi.Disk{nil}, Mem: mem})
	require.NoError(t, err)
	lens := func(b scsi.Buffer) []int {
		var out []int
		for _, s := range b {
			out = append(out, len(s))
		}
		return out
	}
	// Consecutive pages: one buffer, trimmed to offset and length.
	b, err := c.dataBuffer(gpaHeader(3*pageSize, 0x100, 2, 3, 4, 5))
	require.NoError(t, err)
	require.Equal(t, []int{3 * pageSize}, lens(b))
	require.Same(t, &mem.lo[2*pageSize+0x100], &b[0][0])
	// Out of order and separate runs: one buffer per run, in guest order.
	b, err = c.dataBuffer(gpaHeader(4*pageSize, 0, 7, 8, 3, 40))
	require.NoError(t, err)
	require.Equal(t, []int{2 * pageSize, pageSize, pageSize}, lens(b))
	require.Same(t, &mem.lo[3*pageSize], &b[1][0])
	require.Same(t, &mem.hi[8*pageSize], &b[2][0])
	// A run over the hole: the first page outside RAM is named.
	_, err = c.dataBuffer(gpaHeader(3*pageSize, 0, 14, 15, 16))
	require.ErrorContains(t, err, "PFN 0x10")
	_, err = c.dataBuffer(gpaHeader(pageSize, 0, 1<<52))
	require.ErrorContains(t, err, "PFN 0x10000000000000")
}
