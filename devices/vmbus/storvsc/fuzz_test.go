package storvsc

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmmdev/vmm/devices/internal/fakeram"
	"github.com/vmmdev/vmm/devices/scsi"
	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
	"github.com/vmmdev/vmm/storage/raw"
)

type noSubChannels struct{ asked int }

func (n *noSubChannels) AddSubChannel(vmbus.Device, uint16) (uint32, error) {
	n.asked++
	return 0, nil
}

// FuzzPacket hands an initialised controller one arbitrary guest packet
// (type, GPA header, payload) on its primary channel: it must not panic,
// must answer with a full COMPLETE_IO packet or nothing, and the image
// keeps its size.
func FuzzPacket(f *testing.F) {
	le := binary.LittleEndian
	srbReq := func(cdb []byte, transfer uint32) []byte {
		p := vstor(opExecuteSRB, packetSize)
		p[offCDBLength] = byte(len(cdb))
		copy(p[offCDB:], cdb)
		le.PutUint32(p[offTransferLen:], transfer)
		return p
	}
	f.Add(uint16(ring.TypeDataGPADirect), gpaHeader(4096, 0, 16), srbReq(cdb10(scsi.OpRead10, 0, 8), 4096))
	f.Add(uint16(ring.TypeDataGPADirect), gpaHeader(8192, 512, 16, 17, 18), srbReq(cdb10(scsi.OpWrite10, 2040, 8), 4096))
	f.Add(uint16(ring.TypeDataGPADirect), gpaHeader(512, 4000, 255, 1<<40), srbReq([]byte{scsi.OpInquiry, 1, 0x83, 0, 255, 0}, 512))
	f.Add(uint16(ring.TypeDataInband), []byte{}, srbReq([]byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0}, 0))
	sub := vstor(opCreateSubChannels, packetSize)
	le.PutUint16(sub[hdrSize:], 1)
	f.Add(uint16(ring.TypeDataInband), []byte{}, sub)
	f.Add(uint16(ring.TypeDataInband), []byte{}, vstor(opQueryVersion, minPacket))
	f.Add(uint16(ring.TypeDataXferPages), []byte{1, 2, 3}, []byte{})
	f.Fuzz(func(t *testing.T, typ uint16, hdr, payload []byte) {
		path := filepath.Join(t.TempDir(), "disk.img")
		if err := os.WriteFile(path, make([]byte, diskBlocks*scsi.BlockSize), 0o600); err != nil {
			t.Fatal(err)
		}
		im, err := raw.Open(raw.Options{Path: path}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer im.Close()
		c, err := New(Config{Disks: []*scsi.Disk{scsi.NewDisk("f", im, "S", nil)}, Mem: make(fakeram.RAM, 1<<20),
			VPs: 2, Bus: &noSubChannels{}})
		if err != nil {
			t.Fatal(err)
		}
		w := &worker{c: c, primary: true}
		for _, op := range []uint32{opBeginInit, opQueryVersion, opQueryProperties, opEndInit} {
			p := vstor(op, packetSize)
			le.PutUint16(p[hdrSize:], Version6_2)
			c.handle(w, ring.Packet{Type: ring.TypeDataInband, Payload: p})
		}
		r, after := c.handle(w, ring.Packet{Type: typ, Header: hdr, Payload: payload})
		if r != nil && (len(r) != packetSize || le.Uint32(r) != opCompleteIO) {
			t.Fatalf("answer %x", r)
		}
		if after != nil {
			after()
			c.wg.Wait()
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() != diskBlocks*scsi.BlockSize {
			t.Fatalf("image size changed: %v", err)
		}
	})
}
