package netvsc

import (
	"encoding/binary"
	"log/slog"
	"testing"

	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// FuzzNVSP sends a connected NIC one guest packet of fuzzer type, flags,
// header (GPA ranges, transfer pages) and NVSP payload: nothing may panic,
// and the NIC must still answer an NVSP INIT afterwards.
func FuzzNVSP(f *testing.F) {
	le := binary.LittleEndian
	f.Add(uint8(ring.TypeDataInband), uint8(1), []byte{}, nvsp(msgSendRNDIS, 1, 0, 100))
	f.Add(uint8(ring.TypeDataInband), uint8(1), []byte{}, nvsp(msgSendRNDIS, 1, 1000, 100))
	f.Add(uint8(ring.TypeDataInband), uint8(1), []byte{}, nvsp(msgSendRecvBuf, 7, 0xcafe))
	f.Add(uint8(ring.TypeDataInband), uint8(1), []byte{}, nvsp(msgRevokeRecvBuf, 0xcafe))
	f.Add(uint8(ring.TypeDataInband), uint8(0), []byte{}, nvsp(msgSubchannel, 1, 2))
	f.Add(uint8(ring.TypeCompletion), uint8(0), []byte{}, nvsp(msgSendRNDISDone, 1))
	gpa := le.AppendUint32(nil, 0)
	gpa = le.AppendUint32(gpa, 1)
	gpa = le.AppendUint32(gpa, 200)
	gpa = le.AppendUint32(gpa, 4000)
	gpa = le.AppendUint64(gpa, 300)
	gpa = le.AppendUint64(gpa, 301)
	f.Add(uint8(ring.TypeDataGPADirect), uint8(1), gpa, nvsp(msgSendRNDIS, 0, invalidSection, 0))
	f.Fuzz(func(t *testing.T, typ, flags uint8, hdr, payload []byte) {
		if len(hdr) > 512 || len(payload) > 512 {
			return
		}
		hdr = append(hdr, make([]byte, (8-len(hdr)%8)%8)...)
		n := newGuestNIC(t)
		n.connect()
		if err := n.c.SendHdr(uint16(typ), uint16(flags), 99, hdr, payload); err != nil {
			t.Fatal(err)
		}
		n.sync()
		for {
			if _, ok := n.c.In.Read(); !ok {
				break
			}
		}
		r := n.request(nvsp(msgInit, nvspV1, nvspV61))
		if le.Uint32(r[12:]) != statusSuccess {
			t.Fatalf("INIT after fuzz input: %x", r)
		}
	})
}

// FuzzRNDIS walks fuzzer bytes as the RNDIS messages of one SEND_RNDIS_PKT:
// nothing may panic, every frame lies inside the input and within the
// frame limits, and every answer's msg_len is its length.
func FuzzRNDIS(f *testing.F) {
	g := &guestNIC{reqID: 1}
	f.Add(g.rndisRequest(rndisInit, 1, 0, 0x4000))
	f.Add(g.rndisRequest(rndisQuery, oidOffloadHWCaps, 0, 20, 0))
	f.Add(g.rndisRequest(rndisSet, oidPacketFilter, 4, 20, 0, 0xb))
	f.Add(g.rndisRequest(rndisSet, oidPacketFilter, 4, 4000, 0, 0xb))
	f.Add(frameMessage(testFrame(100, 1)))
	f.Add(append(frameMessage(testFrame(60, 1)), g.rndisRequest(rndisKeepalive)...))
	tcp := tcpFrame(false, 3000)
	f.Add(ppiMessage(tcp, ppiEntry(ppiLSO, lsoV2|34<<20|1448)))
	f.Add(ppiMessage(tcpFrame(true, 200), ppiEntry(ppiChecksum, 2|txCsumTCP|54<<16)))
	f.Add(ppiMessage(tcpFrame(false, 100), ppiEntry(ppiChecksum, txCsumIPv4|txCsumIPHeader|txCsumUDP|34<<16), ppiEntry(9, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, offloads := range []bool{false, true} {
			d := &Device{log: slog.New(slog.DiscardHandler), link: true, cfg: Config{Offloads: offloads}}
			d.s.rndis.initialized = true
			frames, _ := d.rndisMessages(append([]byte(nil), data...))
			for _, fr := range frames {
				if len(fr.data) < 14 || len(fr.data) > maxFrame && (!offloads || fr.hdr[0]&vnetNeedsCsum == 0) {
					t.Fatalf("frame of %d bytes, header %x, offloads %v", len(fr.data), fr.hdr, offloads)
				}
				if !offloads && fr.hdr != [tapHeader]byte{} {
					t.Fatalf("header %x without offloads", fr.hdr)
				}
			}
			check(t, d)
		}
	})
}

// check holds for the answers a fuzzed NIC queued: bounded, each msg_len
// its length, each fitting a sub-allocation.
func check(t *testing.T, d *Device) {
	t.Helper()
	if len(d.s.ctrl) > maxHeld {
		t.Fatalf("%d answers held", len(d.s.ctrl))
	}
	for _, r := range d.s.ctrl {
		if len(r) < rndisHeader || binary.LittleEndian.Uint32(r[4:]) != uint32(len(r)) || len(r) > recvSubAlloc {
			t.Fatalf("answer %x", r)
		}
	}
}
