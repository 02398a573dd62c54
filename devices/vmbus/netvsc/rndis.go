package netvsc

import (
	"encoding/binary"
	"fmt"
)

// RNDIS message types (include/linux/rndis.h); a completion is its
// request's type | rndisCompletion.
const (
	rndisPacket      = 1
	rndisInit        = 2
	rndisHalt        = 3
	rndisQuery       = 4
	rndisSet         = 5
	rndisReset       = 6
	rndisIndicate    = 7
	rndisKeepalive   = 8
	rndisCompletion  = 0x80000000
	rndisHeader      = 8  // {u32 type, u32 msg_len}
	rndisPacketSize  = 44 // header + struct rndis_packet
	rndisStatusOK    = 0
	rndisNotSupp     = 0xC00000BB
	rndisInvalidData = 0xC0010015
	rndisInvalidLen  = 0xC0010014
	// Link status indications (RNDIS_STATUS_MEDIA_[DIS]CONNECT).
	rndisMediaConnect    = 0x4001000B
	rndisMediaDisconnect = 0x4001000C
	// maxControl bounds a control message the host takes (a SET carries
	// at most an RSS indirection table and key).
	maxControl = 4096
)

// OIDs the host answers (rndis.h, hyperv_net.h).
const (
	oidSupportedList       = 0x00010101
	oidHardwareStatus      = 0x00010102
	oidMediaSupported      = 0x00010103
	oidMediaInUse          = 0x00010104
	oidMaxFrameSize        = 0x00010106
	oidLinkSpeed           = 0x00010107
	oidPacketFilter        = 0x0001010E
	oidMaxTotalSize        = 0x00010111
	oidMediaConnectStatus  = 0x00010114
	oidMaxSendPackets      = 0x00010115
	oidRSSCapabilities     = 0x00010203
	oidPermanentAddress    = 0x01010101
	oidCurrentAddress      = 0x01010102
	oidMulticastList       = 0x01010103
	oidMaxMulticastList    = 0x01010104
	oidOffloadEncapsulaton = 0x0101010A
	oidOffloadParameters   = 0xFC01020C
	oidOffloadHWCaps       = 0xFC01020D
)

// MTU is the largest frame payload the NIC takes and gives (no jumbo
// frames: a frame plus its RNDIS header fits one receive sub-allocation).
const MTU = 1500

// maxFrame is the largest Ethernet frame either way: MTU, header, VLAN tag.
const maxFrame = MTU + 14 + 4

// linkSpeed is what OID_GEN_LINK_SPEED answers, in 100 bps units: 10 Gbps.
const linkSpeed = 100_000_000

// ndisOffloadSize is NDIS_OFFLOAD_SIZE_6_0 (struct ndis_offload up to
// ipsecv2), the smallest NDIS_OFFLOAD Linux accepts.
const ndisOffloadSize = 112

var supportedOIDs = []uint32{oidSupportedList, oidHardwareStatus, oidMediaSupported, oidMediaInUse, oidMaxFrameSize,
	oidLinkSpeed, oidPacketFilter, oidMaxTotalSize, oidMediaConnectStatus, oidMaxSendPackets, oidPermanentAddress,
	oidCurrentAddress, oidMulticastList, oidMaxMulticastList, oidOffloadHWCaps}

// rndisState is the guest's RNDIS session.
type rndisState struct {
	initialized  bool
	major, minor uint32
	filter       uint32
}

// parsePacket checks an RNDIS packet message (msg is exactly msg_len
// bytes) and returns its frame and per-packet info: data_offset counts from
// the data_offset field, and both must lie inside. The frame's size is
// checked against the offloads it asks for (txHeader).
func parsePacket(msg []byte) (frame, ppi []byte, err error) {
	if len(msg) < rndisPacketSize {
		return nil, nil, fmt.Errorf("RNDIS packet of %d bytes", len(msg))
	}
	le := binary.LittleEndian
	off, n := uint64(le.Uint32(msg[8:])), uint64(le.Uint32(msg[12:]))
	start := rndisHeader + off
	if start < rndisPacketSize || start+n > uint64(len(msg)) {
		return nil, nil, fmt.Errorf("RNDIS packet data [%d, +%d) outside its %d bytes", start, n, len(msg))
	}
	if ppiOff, ppiLen := uint64(le.Uint32(msg[28:])), uint64(le.Uint32(msg[32:])); ppiLen != 0 {
		p := rndisHeader + ppiOff
		if p < rndisPacketSize || p+ppiLen > uint64(len(msg)) {
			return nil, nil, fmt.Errorf("RNDIS per-packet info [%d, +%d) outside its %d bytes", p, ppiLen, len(msg))
		}
		ppi = msg[p : p+ppiLen]
	}
	if n < 14 || n > maxLSOFrame {
		return nil, nil, fmt.Errorf("frame of %d bytes", n)
	}
	return msg[start : start+n], ppi, nil
}

// packetMessage builds the RNDIS packet header for a frame of n bytes,
// with a checksum entry in its per-packet info when csum is not 0.
func packetMessage(n int, csum uint32) []byte {
	ppi := 0
	if csum != 0 {
		ppi = csumPPISize
	}
	m := make([]byte, rndisPacketSize+ppi)
	le := binary.LittleEndian
	le.PutUint32(m[0:], rndisPacket)
	le.PutUint32(m[4:], uint32(len(m)+n))
	le.PutUint32(m[8:], uint32(len(m)-rndisHeader)) // data right after the header and info
	le.PutUint32(m[12:], uint32(n))
	if csum != 0 {
		le.PutUint32(m[28:], rndisPacketSize-rndisHeader)
		le.PutUint32(m[32:], csumPPISize)
		e := m[rndisPacketSize:]
		le.PutUint32(e[0:], csumPPISize)
		le.PutUint32(e[4:], ppiChecksum)
		le.PutUint32(e[8:], ppiHeader)
		le.PutUint32(e[12:], csum)
	}
	return m
}

// indicateMessage builds a status indication (media connect/disconnect).
func indicateMessage(status uint32) []byte {
	m := make([]byte, rndisHeader+12)
	le := binary.LittleEndian
	le.PutUint32(m[0:], rndisIndicate)
	le.PutUint32(m[4:], uint32(len(m)))
	le.PutUint32(m[8:], status)
	le.PutUint32(m[16:], 12) // status_buf_offset: right after the body, empty
	return m
}

// controlInfo is what the NIC knows that control answers need.
type controlInfo struct {
	mac      [6]byte
	link     bool
	offloads bool
}

// control answers one RNDIS control message (msg is exactly msg_len
// bytes). It returns the completion (nil: none is sent, as for HALT) and
// the OID a QUERY or SET named (0 for others).
func (s *rndisState) control(msg []byte, info controlInfo) (resp []byte, oid uint32, err error) {
	le := binary.LittleEndian
	typ := le.Uint32(msg)
	need := map[uint32]int{rndisInit: 24, rndisHalt: 12, rndisQuery: 28, rndisSet: 28, rndisReset: 12, rndisKeepalive: 12}[typ]
	if need == 0 {
		return nil, 0, fmt.Errorf("RNDIS message type %#x", typ)
	}
	if len(msg) < need {
		return nil, 0, fmt.Errorf("RNDIS message type %#x of %d bytes", typ, len(msg))
	}
	reqID := le.Uint32(msg[8:])
	reply := func(body ...uint32) []byte {
		r := make([]byte, rndisHeader+4*len(body))
		le.PutUint32(r[0:], typ|rndisCompletion)
		le.PutUint32(r[4:], uint32(len(r)))
		for i, v := range body {
			le.PutUint32(r[8+4*i:], v)
		}
		return r
	}
	switch typ {
	case rndisInit:
		s.initialized = true
		s.major, s.minor = le.Uint32(msg[12:]), le.Uint32(msg[16:])
		s.filter = 0
		// status, version 1.0, connectionless, 802.3, 8 packets per
		// message, max transfer, 8-byte alignment (factor 3), no AF list.
		return reply(reqID, rndisStatusOK, 1, 0, 1, 0, maxPacketsPerMessage, maxTransfer, 3, 0, 0), 0, nil
	case rndisHalt:
		s.initialized = false
		s.filter = 0
		return nil, 0, nil
	case rndisReset:
		// Body {status, addressing_reset}: no request id.
		return reply(rndisStatusOK, 0), 0, nil
	case rndisKeepalive:
		return reply(reqID, rndisStatusOK), 0, nil
	case rndisQuery:
		oid = le.Uint32(msg[12:])
		data, status := s.query(oid, info)
		r := append(reply(reqID, status, uint32(len(data)), 16), data...)
		le.PutUint32(r[4:], uint32(len(r)))
		return r, oid, nil
	default: // rndisSet
		oid = le.Uint32(msg[12:])
		n, off := uint64(le.Uint32(msg[16:])), uint64(le.Uint32(msg[20:]))
		start := rndisHeader + off
		if n != 0 && (start < 28 || start+n > uint64(len(msg))) {
			return reply(reqID, rndisInvalidLen), oid, nil
		}
		var data []byte
		if n != 0 {
			data = msg[start : start+n]
		}
		return reply(reqID, s.set(oid, data)), oid, nil
	}
}

func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// query returns an OID's value and the RNDIS status.
func (s *rndisState) query(oid uint32, info controlInfo) ([]byte, uint32) {
	switch oid {
	case oidSupportedList:
		var b []byte
		for _, o := range supportedOIDs {
			b = binary.LittleEndian.AppendUint32(b, o)
		}
		return b, rndisStatusOK
	case oidHardwareStatus, oidMediaSupported, oidMediaInUse:
		return u32(0), rndisStatusOK // ready; 802.3
	case oidMaxFrameSize:
		return u32(MTU), rndisStatusOK
	case oidMaxTotalSize:
		return u32(MTU + 14), rndisStatusOK
	case oidLinkSpeed:
		return u32(linkSpeed), rndisStatusOK
	case oidPacketFilter:
		return u32(s.filter), rndisStatusOK
	case oidMediaConnectStatus:
		if info.link {
			return u32(0), rndisStatusOK // NdisMediaStateConnected
		}
		return u32(1), rndisStatusOK
	case oidMaxSendPackets:
		return u32(maxPacketsPerMessage), rndisStatusOK
	case oidPermanentAddress, oidCurrentAddress:
		return append([]byte(nil), info.mac[:]...), rndisStatusOK
	case oidMaxMulticastList:
		return u32(32), rndisStatusOK
	case oidOffloadHWCaps:
		// Checksums and LSOv2 when the tap takes them; never IPsec or
		// receive coalescing.
		return offloadCaps(info.offloads), rndisStatusOK
	}
	// Receive-side scaling capabilities among them: no answer means one
	// queue, so the guest asks for no sub-channels.
	return nil, rndisNotSupp
}

// set applies an OID and returns the RNDIS status.
func (s *rndisState) set(oid uint32, data []byte) uint32 {
	switch oid {
	case oidPacketFilter:
		if len(data) < 4 {
			return rndisInvalidLen
		}
		s.filter = binary.LittleEndian.Uint32(data)
		return rndisStatusOK
	case oidMulticastList, oidOffloadEncapsulaton:
		// Every frame from the tap goes to the guest; its stack filters.
		return rndisStatusOK
	case oidOffloadParameters:
		// The guest turns offloads on or off; the host honours each
		// packet's info as it comes, so there is nothing to switch.
		return rndisStatusOK
	}
	return rndisNotSupp
}
