package netvsc

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// tcpFrame is an Ethernet frame with a TCP segment of payload bytes over
// IPv4 or IPv6, as Linux hands an LSO packet to hv_netvsc: IP length 0,
// IPv4 header checksum 0, the TCP checksum field holding the
// pseudo-header sum without the length.
func tcpFrame(v6 bool, payload int) []byte {
	be := binary.BigEndian
	eth := []byte{0x52, 0x54, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 2, 0x08, 0x00}
	var ip []byte
	var pseudo uint64
	if v6 {
		eth[12], eth[13] = 0x86, 0xdd
		ip = make([]byte, 40)
		ip[0], ip[6], ip[7] = 0x60, 6, 64
		for i := 8; i < 40; i++ {
			ip[i] = byte(i)
		}
		pseudo = sum16(ip[8:40], 6)
	} else {
		ip = []byte{0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 3, 15, 10, 0, 3, 1}
		pseudo = sum16(ip[12:20], 6)
	}
	tcp := make([]byte, 20+payload)
	be.PutUint16(tcp[0:], 40000)
	be.PutUint16(tcp[2:], 7778)
	tcp[12] = 5 << 4
	be.PutUint16(tcp[16:], fold(pseudo))
	for i := 20; i < len(tcp); i++ {
		tcp[i] = byte(i * 7)
	}
	return append(append(eth, ip...), tcp...)
}

// ppiEntry is one per-packet info entry holding v.
func ppiEntry(typ, v uint32) []byte {
	le := binary.LittleEndian
	e := le.AppendUint32(nil, csumPPISize)
	e = le.AppendUint32(e, typ)
	e = le.AppendUint32(e, ppiHeader)
	return le.AppendUint32(e, v)
}

// ppiMessage is an RNDIS packet message of frame with per-packet info.
func ppiMessage(frame []byte, entries ...[]byte) []byte {
	var ppi []byte
	for _, e := range entries {
		ppi = append(ppi, e...)
	}
	m := make([]byte, rndisPacketSize, rndisPacketSize+len(ppi)+len(frame))
	le := binary.LittleEndian
	le.PutUint32(m[0:], rndisPacket)
	le.PutUint32(m[4:], uint32(rndisPacketSize+len(ppi)+len(frame)))
	le.PutUint32(m[8:], uint32(rndisPacketSize-rndisHeader+len(ppi)))
	le.PutUint32(m[12:], uint32(len(frame)))
	le.PutUint32(m[28:], rndisPacketSize-rndisHeader)
	le.PutUint32(m[32:], uint32(len(ppi)))
	return append(append(m, ppi...), frame...)
}

// tcpChecksumOK reports whether a frame's TCP checksum verifies.
func tcpChecksumOK(t *testing.T, f []byte, v6 bool) bool {
	t.Helper()
	if v6 {
		return fold(sum16(f[14+40:], sum16(f[14+8:14+40], 6+uint64(len(f)-54)))) == 0xffff
	}
	return fold(sum16(f[34:], sum16(f[26:34], 6+uint64(len(f)-34)))) == 0xffff
}

func TestOffloadCaps(t *testing.T) {
	le := binary.LittleEndian
	off := offloadCaps(false)
	require.Equal(t, make([]byte, ndisOffloadSize-4), off[4:], "no offloads on a tap without them")
	on := offloadCaps(true)
	require.Equal(t, []byte{0xA7, 1, ndisOffloadSize, 0}, on[:4])
	// What Linux's rndis_netdev_set_hwcaps needs for each feature.
	require.Equal(t, uint32(0x14), le.Uint32(on[8:])&0x14, "IPv4 TCP checksum")
	require.NotZero(t, le.Uint32(on[8:])&0x40, "IPv4 UDP checksum")
	require.Equal(t, uint32(0x15), le.Uint32(on[24:])&0x15, "IPv6 TCP checksum")
	require.NotZero(t, le.Uint32(on[80:])&encap8023, "LSOv2 IPv4")
	require.Equal(t, uint32(lsoMaxSize), le.Uint32(on[84:]))
	require.NotZero(t, le.Uint32(on[92:])&encap8023, "LSOv2 IPv6")
	require.Equal(t, uint32(5), le.Uint32(on[104:])&5, "LSOv2 IPv6 options")
}

func TestTxLSO(t *testing.T) {
	le := binary.LittleEndian
	for _, v6 := range []bool{false, true} {
		f := tcpFrame(v6, 5000)
		thoff := 34
		lso := uint32(lsoV2 | 1448)
		if v6 {
			thoff = 54
			lso |= 1 << 31
		}
		info, err := parsePPI(append(ppiEntry(9, 77), ppiEntry(ppiLSO, lso|uint32(thoff)<<20)...))
		require.NoError(t, err)
		hdr, isLSO, err := txHeader(f, info)
		require.NoError(t, err)
		require.True(t, isLSO)
		gso := byte(gsoTCPv4)
		if v6 {
			gso = gsoTCPv6
			require.Equal(t, uint16(len(f)-54), binary.BigEndian.Uint16(f[18:]), "IPv6 payload length")
		} else {
			require.Equal(t, uint16(len(f)-14), binary.BigEndian.Uint16(f[16:]), "IPv4 total length")
			require.Equal(t, uint16(0xffff), fold(sum16(f[14:34], 0)), "IPv4 header checksum")
		}
		require.Equal(t, []byte{vnetNeedsCsum, gso}, hdr[:2])
		require.Equal(t, uint16(thoff+20), le.Uint16(hdr[2:]), "header length")
		require.Equal(t, uint16(1448), le.Uint16(hdr[4:]), "MSS")
		require.Equal(t, uint16(thoff), le.Uint16(hdr[6:]))
		require.Equal(t, uint16(16), le.Uint16(hdr[8:]))
		// What the tap's kernel does with NEEDS_CSUM: sum from csum_start,
		// the seed included; the result must verify.
		c := ^fold(sum16(f[thoff:], 0))
		binary.BigEndian.PutUint16(f[thoff+16:], c)
		require.True(t, tcpChecksumOK(t, f, v6))
	}
	// An LSO packet whose payload fits one segment goes unsegmented.
	hdr, _, err := txHeader(tcpFrame(false, 100), packetInfo{lso: lsoV2 | 34<<20 | 1448, hasLSO: true})
	require.NoError(t, err)
	require.Equal(t, []byte{vnetNeedsCsum, gsoNone}, hdr[:2])

	for name, tc := range map[string]struct {
		frame []byte
		lso   uint32
	}{
		"MSS 0":             {tcpFrame(false, 3000), lsoV2 | 34<<20},
		"TCP past the end":  {tcpFrame(false, 3000)[:40], lsoV2 | 34<<20 | 1448},
		"TCP inside IP":     {tcpFrame(false, 3000), lsoV2 | 20<<20 | 1448},
		"IPv6 info on IPv4": {tcpFrame(false, 3000), lsoV2 | 1<<31 | 54<<20 | 1448},
		"LSOv1":             {tcpFrame(false, 3000), 34<<20 | 1448},
		"UDP":               {func() []byte { f := tcpFrame(false, 3000); f[23] = 17; return f }(), lsoV2 | 34<<20 | 1448},
		"too long":          {append(tcpFrame(false, 3000), make([]byte, 70000)...), lsoV2 | 34<<20 | 1448},
	} {
		_, _, err := txHeader(tc.frame, packetInfo{lso: tc.lso, hasLSO: true})
		require.Error(t, err, name)
	}
}

func TestTxChecksum(t *testing.T) {
	le := binary.LittleEndian
	f := tcpFrame(false, 1000)
	hdr, lso, err := txHeader(f, packetInfo{csum: txCsumIPv4 | txCsumTCP | 34<<16, hasCsum: true})
	require.NoError(t, err)
	require.False(t, lso)
	require.Equal(t, byte(vnetNeedsCsum), hdr[0])
	require.Equal(t, uint16(34), le.Uint16(hdr[6:]))
	require.Equal(t, uint16(16), le.Uint16(hdr[8:]))
	hdr, _, err = txHeader(f, packetInfo{csum: txCsumIPv4 | txCsumUDP | txCsumIPHeader | 34<<16, hasCsum: true})
	require.NoError(t, err)
	require.Equal(t, uint16(6), le.Uint16(hdr[8:]))
	require.Equal(t, uint16(0xffff), fold(sum16(f[14:34], 0)), "IPv4 header checksum asked for")
	// No checksum asked: a plain header; a frame past the MTU needs LSO.
	hdr, _, err = txHeader(f, packetInfo{})
	require.NoError(t, err)
	require.Equal(t, [tapHeader]byte{}, hdr)
	_, _, err = txHeader(tcpFrame(false, 2000), packetInfo{})
	require.Error(t, err)
	_, _, err = txHeader(f[:40], packetInfo{csum: txCsumTCP | 34<<16, hasCsum: true})
	require.Error(t, err, "checksum field past the end")
}

func TestParsePPI(t *testing.T) {
	for name, ppi := range map[string][]byte{
		"short":        {1, 2, 3},
		"size past":    append(ppiEntry(ppiChecksum, 1), 0, 0, 0, 0)[:14],
		"size 0":       make([]byte, 12),
		"value past":   func() []byte { e := ppiEntry(ppiLSO, 1); e[8] = 13; return e }(),
		"value inside": func() []byte { e := ppiEntry(ppiLSO, 1); e[8] = 4; return e }(),
	} {
		_, err := parsePPI(ppi)
		require.Error(t, err, name)
	}
	info, err := parsePPI(append(ppiEntry(9, 5), ppiEntry(ppiChecksum, 6)...))
	require.NoError(t, err)
	require.Equal(t, packetInfo{csum: 6, hasCsum: true}, info)
}

func TestRxChecksum(t *testing.T) {
	le := binary.LittleEndian
	for _, v6 := range []bool{false, true} {
		f := tcpFrame(v6, 1200)
		thoff := 34
		if v6 {
			thoff = 54
			binary.BigEndian.PutUint16(f[18:], uint16(len(f)-54))
			// The seed with the length, as the host kernel leaves it.
			binary.BigEndian.PutUint16(f[thoff+16:], fold(sum16(f[22:54], 6+uint64(len(f)-54))))
		} else {
			binary.BigEndian.PutUint16(f[16:], uint16(len(f)-14))
			binary.BigEndian.PutUint16(f[thoff+16:], fold(sum16(f[26:34], 6+uint64(len(f)-34))))
		}
		var hdr [tapHeader]byte
		hdr[0] = vnetNeedsCsum
		le.PutUint16(hdr[6:], uint16(thoff))
		le.PutUint16(hdr[8:], 16)
		info, ok := rxChecksum(hdr[:], f)
		require.True(t, ok)
		require.Equal(t, uint32(rxCsumTCPOK), info)
		require.True(t, tcpChecksumOK(t, f, v6))
	}
	f := tcpFrame(false, 100)
	info, ok := rxChecksum([]byte{vnetDataValid, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, f)
	require.True(t, ok)
	require.Equal(t, uint32(rxCsumTCPOK), info, "verified by the host kernel")
	info, ok = rxChecksum(make([]byte, tapHeader), f)
	require.True(t, ok)
	require.Zero(t, info, "nothing known: the guest verifies")
	_, ok = rxChecksum([]byte{0, gsoTCPv4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, f)
	require.False(t, ok, "segmentation was not offered")
	_, ok = rxChecksum([]byte{vnetNeedsCsum, 0, 0, 0, 0, 0, 0xff, 0, 16, 0, 0, 0}, f)
	require.False(t, ok, "checksum field past the end")
}

// TestOffloadsEndToEnd: on a tap that takes offloads, the guest's LSO
// packet reaches the tap with its GSO header and a tap frame whose
// checksum was left to the NIC reaches the guest summed and marked
// verified; the report counts both.
func TestOffloadsEndToEnd(t *testing.T) {
	n := newGuestNICOffloads(t, true)
	n.connect()
	n.probe()
	st, caps := n.query(oidOffloadHWCaps)
	require.Equal(t, uint32(rndisStatusOK), st)
	require.Equal(t, offloadCaps(true), caps)

	f := tcpFrame(false, 20000)
	require.Equal(t, uint32(statusSuccess), n.sendGPA(ppiMessage(f, ppiEntry(ppiLSO, lsoV2|34<<20|1448)), 100))
	hdr, out := n.tapOutHdr()
	require.Equal(t, []byte{vnetNeedsCsum, gsoTCPv4}, hdr[:2])
	require.Len(t, out, len(f))
	require.Equal(t, f[54:], out[54:], "payload as sent")

	rx := tcpFrame(false, 1400)
	binary.BigEndian.PutUint16(rx[16:], uint16(len(rx)-14))
	binary.BigEndian.PutUint16(rx[50:], fold(sum16(rx[26:34], 6+uint64(len(rx)-34))))
	raw := make([]byte, tapHeader, tapHeader+len(rx))
	raw[0] = vnetNeedsCsum
	binary.LittleEndian.PutUint16(raw[6:], 34)
	binary.LittleEndian.PutUint16(raw[8:], 16)
	n.tap.inRaw <- append(raw, rx...)
	msg := n.recvRNDIS()
	data, ppi, err := parsePacket(msg)
	require.NoError(t, err)
	require.True(t, tcpChecksumOK(t, data, false))
	info, err := parsePPI(ppi)
	require.NoError(t, err)
	require.Equal(t, packetInfo{csum: rxCsumTCPOK, hasCsum: true}, info)

	s := n.dev.Status()
	require.Equal(t, uint64(1), s.TxLSO)
	require.Equal(t, uint64(1), s.TxChecksum)
	require.Equal(t, uint64(1), s.RxChecksum)
}
