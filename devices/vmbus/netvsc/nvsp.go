package netvsc

import (
	"fmt"

	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/gpadl"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// packet handles one guest packet with d.mu held and returns the frames
// to write to the tap. g is the GPADL a buffer message names (gerr: why
// there is none).
func (d *Device) packet(c *vmbus.Channel, p ring.Packet, g *gpadl.GPADL, gerr error) []txFrame {
	switch p.Type {
	case ring.TypeCompletion:
		d.completion(p)
		return nil
	case ring.TypeDataInband, ring.TypeDataGPADirect:
	default:
		d.bad("packet of unexpected type dropped", "type", p.Type)
		return nil
	}
	m := p.Payload
	if len(m) < 4 {
		d.bad("NVSP message too short", "len", len(m))
		return nil
	}
	typ := le32(m)
	if p.Type == ring.TypeDataGPADirect && typ != msgSendRNDIS {
		d.bad("GPA direct packet without an RNDIS message", "type", typ)
		return nil
	}
	// Every message but INIT needs a negotiated version first.
	if typ != msgInit && d.s.nvsp == 0 {
		d.bad("NVSP message before INIT", "type", typ)
		d.refuse(c, p, typ)
		return nil
	}
	switch typ {
	case msgInit:
		d.init(c, p)
	case msgSendNDISVersion:
		if len(m) < 12 {
			d.bad("NDIS version message too short", "len", len(m))
			d.complete(c, p, typ, statusFail)
			return nil
		}
		d.s.ndisMajor, d.s.ndisMinor = le32(m[4:]), le32(m[8:])
		d.st.NDIS = fmt.Sprintf("%d.%d", d.s.ndisMajor, d.s.ndisMinor)
		d.complete(c, p, typ, statusSuccess)
	case msgSendNDISConfig:
		if len(m) >= 8 {
			d.s.mtu = le32(m[4:])
		}
		d.complete(c, p, typ, statusSuccess)
	case msgSendRecvBuf:
		d.recvBuffer(c, p, g, gerr)
	case msgSendSendBuf:
		d.sendBuffer(c, p, g, gerr)
	case msgRevokeRecvBuf:
		d.s.recv, d.s.free, d.s.inUse, d.s.ctrl = nil, nil, nil, nil
		d.complete(c, p, typ, statusSuccess)
	case msgRevokeSendBuf:
		d.s.send = nil
		d.complete(c, p, typ, statusSuccess)
	case msgSendRNDIS:
		return d.rndis(c, p)
	case msgSubchannel:
		// One queue: sub-channels are declined (status, 0 allocated).
		d.complete(c, p, typ, statusFail, 0)
	default:
		d.bad("unknown NVSP message", "type", typ)
		d.refuse(c, p, typ)
	}
	return nil
}

// refuse answers a refused request that asked for an answer with the
// failure status, in the layout of its completion where it has one.
func (d *Device) refuse(c *vmbus.Channel, p ring.Packet, typ uint32) {
	switch typ {
	case msgInit:
		d.complete(c, p, msgInitComplete, 0, 0, statusFail)
	case msgSendRecvBuf:
		d.complete(c, p, msgSendRecvBufDone, statusFail)
	case msgSendSendBuf:
		d.complete(c, p, msgSendSendBufDone, statusFail)
	case msgSendRNDIS:
		d.complete(c, p, msgSendRNDISDone, statusFail)
	default:
		d.complete(c, p, typ, statusFail)
	}
}

// init negotiates the highest version in the guest's [min, max] range.
func (d *Device) init(c *vmbus.Channel, p ring.Packet) {
	m := p.Payload
	if len(m) < 12 {
		d.bad("NVSP INIT too short", "len", len(m))
		d.refuse(c, p, msgInit)
		return
	}
	lo, hi := le32(m[4:]), le32(m[8:])
	for _, v := range nvspVersions {
		if v >= lo && v <= hi {
			// A new INIT starts the session over.
			d.s = session{nvsp: v}
			d.st.NVSP = nvspVersionString(v)
			d.log.Info("netvsc: NVSP negotiated", "version", d.st.NVSP, "tap", d.cfg.TapName)
			// max_mdl_chain_len: how many page ranges a packet may use.
			d.complete(c, p, msgInitComplete, v, 34, statusSuccess)
			return
		}
	}
	d.complete(c, p, msgInitComplete, 0, 0, statusFail)
}

// sharedBuffer maps the buffer a SEND_RECV_BUF or SEND_SEND_BUF message
// names (GPADL g, or gerr), or answers the guest with done and a failure
// status and returns nil. inUse: the session has one already.
func (d *Device) sharedBuffer(c *vmbus.Channel, p ring.Packet, what string, done uint32, inUse bool, g *gpadl.GPADL, gerr error) *guestBuf {
	fail := func(why string, args ...any) {
		d.bad(what+" buffer refused: "+why, args...)
		d.complete(c, p, done, statusFail, 0)
	}
	switch {
	case len(p.Payload) < 10:
		fail("message too short", "len", len(p.Payload))
		return nil
	case inUse:
		fail("one is already in use")
		return nil
	case gerr != nil || g == nil:
		fail("no GPADL", "err", gerr)
		return nil
	}
	b, err := newGuestBuf(d.cfg.Mem, *g)
	if err != nil {
		fail(err.Error())
		return nil
	}
	return b
}

func (d *Device) recvBuffer(c *vmbus.Channel, p ring.Packet, g *gpadl.GPADL, gerr error) {
	b := d.sharedBuffer(c, p, "receive", msgSendRecvBufDone, d.s.recv != nil, g, gerr)
	if b == nil {
		return
	}
	n := b.size / recvSubAlloc
	if n == 0 {
		d.bad("receive buffer refused: smaller than one sub-allocation", "bytes", b.size)
		d.complete(c, p, msgSendRecvBufDone, statusFail, 0)
		return
	}
	d.s.recv, d.s.recvID = b, uint16(le32(p.Payload[8:]))
	d.s.inUse = make([]bool, n)
	d.s.free = make([]uint32, n)
	for i := range d.s.free {
		d.s.free[i] = n - 1 - uint32(i) // sub-allocation 0 on top
	}
	// One section at offset 0: {offset, sub_alloc_size, num_sub_allocs,
	// end_offset}.
	d.complete(c, p, msgSendRecvBufDone, statusSuccess, 1, 0, recvSubAlloc, n, n*recvSubAlloc)
}

func (d *Device) sendBuffer(c *vmbus.Channel, p ring.Packet, g *gpadl.GPADL, gerr error) {
	b := d.sharedBuffer(c, p, "send", msgSendSendBufDone, d.s.send != nil, g, gerr)
	if b == nil {
		return
	}
	if b.size < sendSectionSize {
		d.bad("send buffer refused: smaller than one section", "bytes", b.size)
		d.complete(c, p, msgSendSendBufDone, statusFail, 0)
		return
	}
	d.s.send = b
	d.complete(c, p, msgSendSendBufDone, statusSuccess, sendSectionSize)
}

// completion takes the guest's completion of a receive-buffer packet: the
// sub-allocation is free again. Unknown or repeated ids are counted.
func (d *Device) completion(p ring.Packet) {
	slot := p.TransID - xferBase
	if p.TransID < xferBase || slot >= uint64(len(d.s.inUse)) || !d.s.inUse[slot] {
		d.bad("completion for no outstanding receive packet", "id", p.TransID)
		return
	}
	d.s.inUse[slot] = false
	d.s.free = append(d.s.free, uint32(slot))
}

// rndis takes SEND_RNDIS_PKT: the RNDIS messages in a send-buffer section
// or in the packet's GPA ranges. It returns the frames for the tap.
func (d *Device) rndis(c *vmbus.Channel, p ring.Packet) []txFrame {
	m := p.Payload
	if len(m) < 16 {
		d.bad("SEND_RNDIS_PKT too short", "len", len(m))
		d.complete(c, p, msgSendRNDISDone, statusFail)
		return nil
	}
	idx, size := le32(m[8:]), le32(m[12:])
	// The messages lie in a send-buffer section, in the packet's GPA
	// ranges, or in both: when Linux batches a packet behind others in a
	// section and only its RNDIS header fits (cp_partial), the section
	// ends with that header and the frame follows in GPA ranges.
	var data []byte
	var err error
	switch {
	case idx == invalidSection && p.Type != ring.TypeDataGPADirect:
		err = fmt.Errorf("RNDIS message in neither a section nor GPA ranges")
	case idx == invalidSection:
	case d.s.send == nil:
		err = fmt.Errorf("section %d without a send buffer", idx)
	case idx >= d.s.send.size/sendSectionSize || size > sendSectionSize:
		err = fmt.Errorf("section %d of %d bytes in a %d-byte send buffer", idx, size, d.s.send.size)
	default:
		data = make([]byte, size, size+maxFrame)
		err = d.s.send.read(idx*sendSectionSize, data)
	}
	if err == nil && p.Type == ring.TypeDataGPADirect {
		var gpa []byte
		gpa, err = gatherGPA(d.cfg.Mem, p.Header, maxGather)
		data = append(data, gpa...)
	}
	if err != nil {
		d.bad("RNDIS message dropped", "err", err)
		d.complete(c, p, msgSendRNDISDone, statusInvalidRNDIS)
		return nil
	}
	frames, status := d.rndisMessages(data)
	d.complete(c, p, msgSendRNDISDone, status)
	return frames
}

// txFrame is a guest frame for the tap, with its virtio-net header.
type txFrame struct {
	hdr  [tapHeader]byte
	data []byte
}

// txFrame takes one RNDIS packet message: its frame, and the offloads its
// per-packet info asks for when the NIC offers them.
func (d *Device) txFrame(msg []byte) (txFrame, error) {
	f, ppi, err := parsePacket(msg)
	if err != nil {
		return txFrame{}, err
	}
	var info packetInfo
	if d.cfg.Offloads {
		if info, err = parsePPI(ppi); err != nil {
			return txFrame{}, err
		}
	}
	hdr, lso, err := txHeader(f, info)
	if err != nil {
		return txFrame{}, err
	}
	if hdr[0]&vnetNeedsCsum != 0 {
		d.st.TxChecksum++
	}
	if lso {
		d.st.TxLSO++
	}
	return txFrame{hdr, f}, nil
}

// rndisMessages walks the RNDIS messages in data (several when the guest
// packs them; each msg_len includes its alignment padding).
func (d *Device) rndisMessages(data []byte) ([]txFrame, uint32) {
	var frames []txFrame
	status := uint32(statusSuccess)
	for len(data) >= rndisHeader {
		typ, n := le32(data), le32(data[4:])
		if n < rndisHeader || uint64(n) > uint64(len(data)) {
			d.bad("RNDIS message length outside what carried it", "type", typ, "len", n, "have", len(data))
			return frames, statusInvalidRNDIS
		}
		msg := data[:n]
		data = data[n:]
		if typ == rndisPacket {
			f, err := d.txFrame(msg)
			if err != nil {
				d.bad("RNDIS packet dropped", "err", err)
				d.st.TxDropped++
				status = statusInvalidRNDIS
				continue
			}
			frames = append(frames, f)
			continue
		}
		if n > maxControl {
			d.bad("RNDIS control message too long", "type", typ, "len", n)
			status = statusInvalidRNDIS
			continue
		}
		resp, oid, err := d.s.rndis.control(msg, controlInfo{mac: d.mac, link: d.link, offloads: d.cfg.Offloads})
		if err != nil {
			d.bad("RNDIS message dropped", "err", err)
			status = statusInvalidRNDIS
			continue
		}
		switch typ {
		case rndisInit:
			d.st.RNDIS = fmt.Sprintf("%d.%d", d.s.rndis.major, d.s.rndis.minor)
			d.log.Info("netvsc: RNDIS initialized", "version", d.st.RNDIS, "tap", d.cfg.TapName)
		case rndisQuery:
			d.st.OIDsQueried = addOID(d.st.OIDsQueried, oid)
		case rndisSet:
			d.st.OIDsSet = addOID(d.st.OIDsSet, oid)
			if oid == oidPacketFilter {
				d.log.Debug("netvsc: packet filter", "filter", fmt.Sprintf("%#x", d.s.rndis.filter), "tap", d.cfg.TapName)
			}
		}
		if resp != nil {
			d.queueControl(resp)
		}
	}
	return frames, status
}

func addOID(list []string, oid uint32) []string {
	s := fmt.Sprintf("0x%08x", oid)
	for _, o := range list {
		if o == s {
			return list
		}
	}
	if len(list) >= maxOIDs {
		return list
	}
	return append(list, s)
}
