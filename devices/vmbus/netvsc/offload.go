package netvsc

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Checksum and segmentation offloads, as Hyper-V offers them to its guests
// and the tap takes them: the guest's per-packet info (checksum, LSOv2)
// becomes the tap's virtio-net header, and a tap frame whose checksum the
// host kernel left to the NIC is summed here and told to the guest as
// verified. Sources: Linux drivers/net/hyperv (netvsc_drv.c netvsc_xmit,
// rndis_filter.c rndis_netdev_set_hwcaps), include/uapi/linux/virtio_net.h.

// Per-packet info types (enum ndis_per_pkt_info_type) and the header of
// each entry (struct rndis_per_packet_info: size, type, offset).
const (
	ppiChecksum = 0
	ppiLSO      = 2
	ppiHeader   = 12
	ppiInternal = 1 << 31
	// csumPPISize is a checksum entry: header and one u32.
	csumPPISize = ppiHeader + 4
)

// ndis_tcp_ip_checksum_info bits: transmit (guest asks) and receive (host
// tells).
const (
	txCsumIPv4     = 1 << 0
	txCsumTCP      = 1 << 2
	txCsumUDP      = 1 << 3
	txCsumIPHeader = 1 << 4
	rxCsumTCPOK    = 1 << 3
	rxCsumUDPOK    = 1 << 4
)

// ndis_tcp_lso_info, LSOv2 transmit: mss in bits 0-19, TCP header offset
// in 20-29, type (1: v2) in 30, IP version (1: IPv6) in 31.
const lsoV2 = 1 << 30

// The tap's virtio-net header (struct virtio_net_hdr_v1: flags, gso_type,
// hdr_len, gso_size, csum_start, csum_offset, num_buffers).
const (
	vnetNeedsCsum = 1
	vnetDataValid = 2
	gsoNone       = 0
	gsoTCPv4      = 1
	gsoTCPv6      = 4
)

// What NDIS_OFFLOAD offers (hyperv_net.h): 802.3 encapsulation, TCP and
// UDP checksums over IPv4 (with options) and IPv6 (with extension
// headers), and LSOv2 for both.
const (
	encap8023   = 2
	csumCapsV4  = 0x004 | 0x010 | 0x040 // TCP4OPT, TCP4, UDP4
	csumCapsV6  = 0x001 | 0x004 | 0x010 | 0x040
	lsoV6Opts   = 0x001 | 0x004 // NDIS_LSOV2_CAP_IP6
	lsoMinSegs  = 2
	lsoMaxSize  = 62 << 10
	maxLSOFrame = 14 + 4 + 65535
)

// offloadCaps is the NDIS_OFFLOAD answer: header {0xA7, revision 1, size},
// then the capabilities when the tap takes offloads, zeros otherwise.
func offloadCaps(on bool) []byte {
	b := make([]byte, ndisOffloadSize)
	b[0], b[1] = 0xA7, 1
	le := binary.LittleEndian
	le.PutUint16(b[2:], ndisOffloadSize)
	if !on {
		return b
	}
	// struct ndis_csum_offload at 4: {ip4 tx encap, tx caps, rx encap,
	// rx caps, ip6 the same}.
	for i, v := range []uint32{encap8023, csumCapsV4, encap8023, csumCapsV4, encap8023, csumCapsV6, encap8023, csumCapsV6} {
		le.PutUint32(b[4+4*i:], v)
	}
	// struct ndis_lsov2_offload at 80: {ip4 encap, max size, min
	// segments, ip6 encap, max size, min segments, ip6 options}.
	for i, v := range []uint32{encap8023, lsoMaxSize, lsoMinSegs, encap8023, lsoMaxSize, lsoMinSegs, lsoV6Opts} {
		le.PutUint32(b[80+4*i:], v)
	}
	return b
}

// packetInfo is what a guest packet's per-packet info asks of the host.
type packetInfo struct {
	csum, lso       uint32
	hasCsum, hasLSO bool
}

// parsePPI walks the per-packet info entries of a guest packet (ppi lies
// inside its message). Entries other than checksum and LSO are skipped.
func parsePPI(ppi []byte) (packetInfo, error) {
	var info packetInfo
	for len(ppi) > 0 {
		if len(ppi) < ppiHeader {
			return info, fmt.Errorf("per-packet info entry of %d bytes", len(ppi))
		}
		size, typ, off := le32(ppi), le32(ppi[4:]), le32(ppi[8:])
		if size < ppiHeader || uint64(size) > uint64(len(ppi)) {
			return info, fmt.Errorf("per-packet info entry of size %d in %d bytes", size, len(ppi))
		}
		if typ == ppiChecksum || typ == ppiLSO {
			if off < ppiHeader || uint64(off)+4 > uint64(size) {
				return info, fmt.Errorf("per-packet info type %d: value at %d of %d bytes", typ, off, size)
			}
			v := le32(ppi[off:])
			if typ == ppiChecksum {
				info.csum, info.hasCsum = v, true
			} else {
				info.lso, info.hasLSO = v, true
			}
		}
		ppi = ppi[size:]
	}
	return info, nil
}

// txHeader returns the tap's virtio-net header for a guest frame with
// info, fixing the frame up as the tap needs it: for LSO, the IP length
// (Linux sends 0) and header checksum, and the TCP pseudo-header sum with
// the segment length. The frame is the host's copy, never guest memory.
func txHeader(frame []byte, info packetInfo) (hdr [tapHeader]byte, lso bool, err error) {
	le := binary.LittleEndian
	switch {
	case info.hasLSO && info.lso&lsoV2 != 0:
		mss, thoff, v6 := info.lso&0xfffff, int(info.lso>>20&0x3ff), info.lso>>31 == 1
		hdrLen, err := fixLSO(frame, thoff, v6)
		if err != nil {
			return hdr, false, err
		}
		if mss == 0 || mss > 0xffff {
			return hdr, false, fmt.Errorf("LSO MSS %d", mss)
		}
		hdr[0] = vnetNeedsCsum
		if len(frame)-hdrLen > int(mss) {
			hdr[1] = gsoTCPv4
			if v6 {
				hdr[1] = gsoTCPv6
			}
		}
		le.PutUint16(hdr[2:], uint16(hdrLen))
		le.PutUint16(hdr[4:], uint16(mss))
		le.PutUint16(hdr[6:], uint16(thoff))
		le.PutUint16(hdr[8:], 16)
		return hdr, true, nil
	case info.hasLSO && info.lso != 0:
		return hdr, false, fmt.Errorf("LSO info %#x: only LSOv2 is offered", info.lso)
	case len(frame) > maxFrame:
		return hdr, false, fmt.Errorf("frame of %d bytes without LSO", len(frame))
	case info.hasCsum && info.csum&(txCsumTCP|txCsumUDP) != 0:
		thoff := int(info.csum >> 16 & 0x3ff)
		field := 16 // TCP's checksum
		if info.csum&txCsumTCP == 0 {
			field = 6 // UDP's
		}
		if thoff < 14 || thoff+field+2 > len(frame) {
			return hdr, false, fmt.Errorf("checksum at %d+%d in a %d-byte frame", thoff, field, len(frame))
		}
		if info.csum&(txCsumIPv4|txCsumIPHeader) == txCsumIPv4|txCsumIPHeader {
			if l3, ok := ipStart(frame, 0x0800); ok && l3+20 <= len(frame) {
				ipHeaderChecksum(frame[l3:])
			}
		}
		hdr[0] = vnetNeedsCsum
		le.PutUint16(hdr[6:], uint16(thoff))
		le.PutUint16(hdr[8:], uint16(field))
	}
	return hdr, false, nil
}

// ipStart returns where the IP header of ethertype typ starts in an
// Ethernet frame (after one VLAN tag, if any).
func ipStart(frame []byte, typ uint16) (int, bool) {
	if len(frame) < 14 {
		return 0, false
	}
	be := binary.BigEndian
	l3, et := 14, be.Uint16(frame[12:])
	if et == 0x8100 && len(frame) >= 18 {
		l3, et = 18, be.Uint16(frame[16:])
	}
	return l3, et == typ
}

// fixLSO checks an LSO frame's IP and TCP headers (the TCP header at
// thoff) and writes the lengths and sums the tap's segmentation relies on;
// it returns the length of all headers.
func fixLSO(frame []byte, thoff int, v6 bool) (int, error) {
	be := binary.BigEndian
	typ, ipMin := uint16(0x0800), 20
	if v6 {
		typ, ipMin = 0x86DD, 40
	}
	l3, ok := ipStart(frame, typ)
	if !ok || thoff < l3+ipMin || thoff+20 > len(frame) {
		return 0, fmt.Errorf("LSO frame of %d bytes: no IPv%d header before TCP at %d", len(frame), map[bool]int{false: 4, true: 6}[v6], thoff)
	}
	hdrLen := thoff + int(frame[thoff+12]>>4)*4
	if hdrLen < thoff+20 || hdrLen > len(frame) || len(frame)-l3 > 0xffff {
		return 0, fmt.Errorf("LSO frame of %d bytes: headers of %d", len(frame), hdrLen)
	}
	tcpLen := uint64(len(frame) - thoff)
	var sum uint64
	if v6 {
		ip := frame[l3:]
		be.PutUint16(ip[4:], uint16(len(frame)-l3-40))
		sum = sum16(ip[8:40], 6+tcpLen)
	} else {
		ip := frame[l3:]
		ihl := int(ip[0]&0xf) * 4
		if ip[0]>>4 != 4 || ihl < 20 || l3+ihl > thoff || ip[9] != 6 {
			return 0, errors.New("LSO frame: not TCP over IPv4")
		}
		be.PutUint16(ip[2:], uint16(len(frame)-l3))
		ipHeaderChecksum(ip)
		sum = sum16(ip[12:20], 6+tcpLen)
	}
	be.PutUint16(frame[thoff+16:], fold(sum))
	return hdrLen, nil
}

// ipHeaderChecksum fills in an IPv4 header's checksum.
func ipHeaderChecksum(ip []byte) {
	ihl := int(ip[0]&0xf) * 4
	if ihl < 20 || ihl > len(ip) {
		return
	}
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^fold(sum16(ip[:ihl], 0)))
}

// rxChecksum completes a tap frame's checksum when the host kernel left
// it to the NIC (NEEDS_CSUM: the field holds the pseudo-header sum) and
// returns the receive checksum info for the guest: TCP or UDP verified
// (0: nothing to tell). ok is false for a frame the NIC cannot pass on.
func rxChecksum(hdr, frame []byte) (info uint32, ok bool) {
	le := binary.LittleEndian
	if hdr[1] != gsoNone {
		return 0, false // segmentation was not offered to the tap
	}
	switch {
	case hdr[0]&vnetNeedsCsum != 0:
		start, off := int(le.Uint16(hdr[6:])), int(le.Uint16(hdr[8:]))
		if start+off+2 > len(frame) {
			return 0, false
		}
		c := ^fold(sum16(frame[start:], 0))
		if c == 0 && off == 6 {
			c = 0xffff // UDP's "no checksum" is 0
		}
		binary.BigEndian.PutUint16(frame[start+off:], c)
		switch off {
		case 16:
			return rxCsumTCPOK, true
		case 6:
			return rxCsumUDPOK, true
		}
	case hdr[0]&vnetDataValid != 0:
		switch l4Proto(frame) {
		case 6:
			return rxCsumTCPOK, true
		case 17:
			return rxCsumUDPOK, true
		}
	}
	return 0, true
}

// l4Proto is an IPv4 or IPv6 frame's transport protocol (0: neither, or an
// IPv6 extension header first).
func l4Proto(frame []byte) byte {
	if l3, ok := ipStart(frame, 0x0800); ok && l3+20 <= len(frame) {
		return frame[l3+9]
	}
	if l3, ok := ipStart(frame, 0x86DD); ok && l3+40 <= len(frame) {
		return frame[l3+6]
	}
	return 0
}

// sum16 adds b's big-endian 16-bit words (a last odd byte padded) to s,
// 32 bits at a time into 64; fold reduces it to the Internet checksum's
// one's complement sum.
func sum16(b []byte, s uint64) uint64 {
	be := binary.BigEndian
	for len(b) >= 8 {
		v := be.Uint64(b)
		s += v>>32 + v&0xffffffff
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(be.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

func fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
