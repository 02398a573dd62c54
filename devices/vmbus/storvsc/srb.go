package storvsc

import (
	"encoding/binary"
	"fmt"

	"github.com/vmmdev/vmm/devices/scsi"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

const pageSize = ring.PageSize

// executeSRB runs an EXECUTE_SRB request and returns its completion.
// Every accepted version (5.1 and later) has the Windows 8 layout.
func (c *Controller) executeSRB(p ring.Packet) []byte {
	c.stats.srbs.Add(1)
	req := p.Payload
	r := c.status(req, statusSuccess)
	le := binary.LittleEndian
	fail := func(srb byte) []byte {
		c.stats.bad.Add(1)
		r[offSRBStatus], r[offSCSIStatus], r[offSenseLength] = srb, 0, 0
		le.PutUint32(r[offTransferLen:], 0)
		return r
	}
	if len(req) < packetSize {
		return fail(srbInvalidRequest)
	}
	cdbLen := int(req[offCDBLength])
	if cdbLen == 0 || cdbLen > maxCDB {
		return fail(srbInvalidRequest)
	}
	cdb := append([]byte(nil), req[offCDB:offCDB+cdbLen]...)
	transfer := le.Uint32(req[offTransferLen:])
	var buf scsi.Buffer
	if p.Type == ring.TypeDataGPADirect {
		b, err := c.dataBuffer(p.Header)
		if err != nil {
			c.log.Debug("storvsc: bad data buffer", "err", err)
			return fail(srbInvalidRequest)
		}
		if int64(transfer) > int64(b.Len()) {
			return fail(srbInvalidRequest)
		}
		buf = b.Trim(int(transfer))
	} else if transfer != 0 {
		return fail(srbInvalidRequest)
	}
	// As Hyper-V: only channel 0 target 0 has LUNs; REPORT LUNS elsewhere
	// lists none, INQUIRY of an absent LUN says "not present", anything
	// else there is SRB_STATUS_INVALID_LUN.
	target := &c.target
	if req[offPathID] != 0 || req[offTargetID] != 0 {
		target = nil
	}
	var res scsi.Result
	if cdb[0] == scsi.OpReportLUNs {
		res = target.ReportLUNs(cdb, buf)
	} else if lun := target.Lookup(int(req[offLUN])); lun != nil {
		res = lun.Execute(cdb, buf)
	} else if r, ok := scsi.NotPresent(cdb, buf); ok {
		res = r
	} else {
		return fail(srbInvalidLUN)
	}
	le.PutUint32(r[offTransferLen:], uint32(res.N))
	sense := r[offCDB : offCDB+senseWin8]
	clear(sense)
	if res.Status == scsi.StatusGood {
		r[offSRBStatus], r[offSCSIStatus], r[offSenseLength] = srbSuccess, 0, 0
		return r
	}
	n := copy(sense, res.Sense.Bytes())
	r[offSRBStatus], r[offSCSIStatus], r[offSenseLength] = srbError|srbAutosenseValid, byte(res.Status), byte(n)
	return r
}

// dataBuffer resolves a GPA-direct header {u32 reserved, u32 rangecount,
// range {u32 len, u32 offset, u64 pfn[]}} into guest memory: one range
// (Linux and Windows send one), its page count matching its length, no
// more than the largest transfer, every page in guest RAM. Runs of
// consecutive PFNs become one buffer each: a guest buffer that is
// contiguous in guest RAM is one iovec for the image, not one per page.
func (c *Controller) dataBuffer(h []byte) (scsi.Buffer, error) {
	le := binary.LittleEndian
	if len(h) < 16 {
		return nil, fmt.Errorf("GPA header of %d bytes", len(h))
	}
	if n := le.Uint32(h[4:]); n != 1 {
		return nil, fmt.Errorf("%d page ranges", n)
	}
	length, off := uint64(le.Uint32(h[8:])), uint64(le.Uint32(h[12:]))
	if off >= pageSize || length == 0 || length > scsi.MaxTransfer {
		return nil, fmt.Errorf("range of %d bytes at offset %d", length, off)
	}
	pages := (off + length + pageSize - 1) / pageSize
	pfns := h[16:]
	if uint64(len(pfns)) < 8*pages {
		return nil, fmt.Errorf("range of %d pages with %d PFNs", pages, len(pfns)/8)
	}
	pfn := func(i uint64) uint64 { return le.Uint64(pfns[8*i:]) }
	var buf scsi.Buffer
	for i := uint64(0); i < pages; {
		first := pfn(i)
		j := i + 1
		for j < pages && pfn(j) == pfn(j-1)+1 {
			j++
		}
		if last := pfn(j - 1); first >= 1<<52 || last >= 1<<52 {
			return nil, fmt.Errorf("PFN %#x", max(first, last))
		}
		run, err := c.cfg.Mem.Slice(first*pageSize, (j-i)*pageSize)
		if err != nil {
			// Name the first page outside RAM (a run may also span
			// two RAM regions: then take it page by page).
			run = nil
			for k := i; k < j; k++ {
				p, err := c.cfg.Mem.Slice(pfn(k)*pageSize, pageSize)
				if err != nil {
					return nil, fmt.Errorf("PFN %#x: %w", pfn(k), err)
				}
				buf = append(buf, trimRange(p, k, k+1, off, length))
			}
			i = j
			continue
		}
		buf = append(buf, trimRange(run, i, j, off, length))
		i = j
	}
	return buf, nil
}

// trimRange cuts the bytes of pages [i, j) of a range (offset off into
// its first page, length bytes) out of their memory run.
func trimRange(run []byte, i, j, off, length uint64) []byte {
	lo, hi := uint64(0), (j-i)*pageSize
	if i == 0 {
		lo = off
	}
	if end := off + length - i*pageSize; end < hi {
		hi = end
	}
	return run[lo:hi]
}
