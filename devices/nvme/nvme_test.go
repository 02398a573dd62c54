package nvme

import (
	"bytes"
	"encoding/binary"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRegistersAndEnable(t *testing.T) {
	d := newDriver(t, opts{})
	cap := d.read64(regCAP)
	if cap&0xffff != MaxQueueEntries-1 || cap&(1<<16) == 0 || (cap>>37)&0xff != 1 || (cap>>32)&0xf != 0 {
		t.Fatalf("CAP %#x", cap)
	}
	if d.read32(regVS) != 0x10400 {
		t.Fatalf("VS %#x", d.read32(regVS))
	}
	// Doorbells before the controller is enabled go nowhere.
	d.write32(doorbellAt, 5)
	d.write32(doorbellAt+4, 1)
	d.enable()
	if got := d.read64(regASQ); got != asqAt {
		t.Fatalf("ASQ reads %#x", got)
	}
	// Interrupt mask set / clear.
	d.write32(regINTMS, 0x5)
	d.write32(regINTMC, 0x1)
	if d.read32(regINTMS) != 0x4 {
		t.Fatalf("INTMS %#x", d.read32(regINTMS))
	}
}

func TestEnableRefusesBadSetup(t *testing.T) {
	d := newDriver(t, opts{})
	d.write32(regAQA, 0) // one-entry queues
	d.write64(regASQ, asqAt)
	d.write64(regACQ, acqAt)
	d.write32(regCC, ccEnable)
	if d.read32(regCSTS) != cstsCFS {
		t.Fatalf("CSTS %#x, want CFS only", d.read32(regCSTS))
	}
	d.write32(regCC, 0)
	// Admin queues outside RAM.
	d.write32(regAQA, 0x000f000f)
	d.write64(regASQ, memSize)
	d.write32(regCC, ccEnable)
	if d.read32(regCSTS) != cstsCFS {
		t.Fatalf("CSTS %#x, want CFS only", d.read32(regCSTS))
	}
	d.write32(regCC, 0)
	if d.read32(regCSTS) != 0 {
		t.Fatalf("CSTS %#x after disable", d.read32(regCSTS))
	}
	d.enable()
}

func TestIdentify(t *testing.T) {
	d := newDriver(t, opts{blocks: 4096})
	d.enable()
	d.ok(0, sqe{opc: adminIdentify, prp1: dataAt, cdw10: cnsController})
	id := d.mem[dataAt : dataAt+4096]
	le := binary.LittleEndian
	if le.Uint16(id[0:]) != VendorID || strings.TrimSpace(string(id[4:24])) != "SN123" ||
		strings.TrimSpace(string(id[24:64])) != modelName || id[77] != mdts || le.Uint32(id[80:]) != Version ||
		le.Uint32(id[516:]) != 1 || id[512] != 0x66 || id[513] != 0x44 || id[525] != 1 {
		t.Fatalf("identify controller: % x", id[:96])
	}
	if !strings.HasPrefix(string(id[768:]), "nqn.2026-01.dev.vmm:nvme:SN123") {
		t.Fatalf("SUBNQN %q", id[768:820])
	}
	// Namespace, across a page boundary: PRP1 with an offset and PRP2.
	d.ok(0, sqe{opc: adminIdentify, nsid: 1, prp1: dataAt + 0x2800, prp2: dataAt + 0x4000, cdw10: cnsNamespace})
	ns := append(append([]byte{}, d.mem[dataAt+0x2800:dataAt+0x3000]...), d.mem[dataAt+0x4000:dataAt+0x4800]...)
	if le.Uint64(ns[0:]) != 4096 || le.Uint64(ns[8:]) != 4096 || le.Uint32(ns[128:]) != 9<<16 || ns[99] != 0 {
		t.Fatalf("identify namespace: % x", ns[:32])
	}
	d.ok(0, sqe{opc: adminIdentify, prp1: dataAt, cdw10: cnsActiveNSList})
	if le.Uint32(d.mem[dataAt:]) != 1 || le.Uint32(d.mem[dataAt+4:]) != 0 {
		t.Fatalf("active namespaces % x", d.mem[dataAt:dataAt+8])
	}
	d.ok(0, sqe{opc: adminIdentify, nsid: 1, prp1: dataAt, cdw10: cnsActiveNSList})
	if le.Uint32(d.mem[dataAt:]) != 0 {
		t.Fatal("active namespaces above 1 are not empty")
	}
	d.ok(0, sqe{opc: adminIdentify, nsid: 1, prp1: dataAt, cdw10: cnsNSDescriptors})
	for name, c := range map[string]struct {
		e    sqe
		want uint16
	}{
		"namespace 2":        {sqe{opc: adminIdentify, nsid: 2, prp1: dataAt}, scInvalidNamespace},
		"namespace 0":        {sqe{opc: adminIdentify, prp1: dataAt}, scInvalidNamespace},
		"broadcast":          {sqe{opc: adminIdentify, nsid: 0xffffffff, prp1: dataAt}, scInvalidNamespace},
		"CNS 6":              {sqe{opc: adminIdentify, prp1: dataAt, cdw10: 6}, scInvalidField},
		"PRP outside RAM":    {sqe{opc: adminIdentify, prp1: memSize, cdw10: cnsController}, scDataTransfer},
		"PRP not dword":      {sqe{opc: adminIdentify, prp1: dataAt + 2, cdw10: cnsController}, scPRPOffset},
		"PRP2 not page":      {sqe{opc: adminIdentify, prp1: dataAt + 8, prp2: dataAt + 0x1008, cdw10: cnsController}, scPRPOffset},
		"SGL":                {sqe{opc: adminIdentify, flags: 0x40, prp1: dataAt, cdw10: cnsController}, scInvalidField},
		"fused":              {sqe{opc: adminIdentify, flags: 0x1, prp1: dataAt, cdw10: cnsController}, scInvalidField},
		"unknown opcode":     {sqe{opc: 0x7f}, scInvalidOpcode},
		"I/O opcode (admin)": {sqe{opc: 0x80}, scInvalidOpcode},
	} {
		if got := d.status(0, c.e); got != c.want {
			t.Errorf("%s: status %#x, want %#x", name, got, c.want)
		}
	}
}

func TestFeatures(t *testing.T) {
	d := newDriver(t, opts{queues: 4})
	d.enable()
	c := d.ok(0, sqe{opc: adminSetFeatures, cdw10: featNumQueues, cdw11: 31<<16 | 31})
	if c.dw0 != 3<<16|3 {
		t.Fatalf("number of queues %#x", c.dw0)
	}
	if c := d.ok(0, sqe{opc: adminGetFeatures, cdw10: featWriteCache}); c.dw0 != 1 {
		t.Fatalf("write cache %#x", c.dw0)
	}
	d.ok(0, sqe{opc: adminSetFeatures, cdw10: featWriteCache, cdw11: 0})
	if c := d.ok(0, sqe{opc: adminGetFeatures, cdw10: featWriteCache}); c.dw0 != 0 {
		t.Fatalf("write cache %#x after disabling it", c.dw0)
	}
	if c := d.ok(0, sqe{opc: adminGetFeatures, cdw10: 1<<8 | featWriteCache}); c.dw0 != 1 {
		t.Fatalf("default write cache %#x", c.dw0)
	}
	if c := d.ok(0, sqe{opc: adminGetFeatures, cdw10: 3<<8 | featArbitration}); c.dw0 != 4 {
		t.Fatalf("capabilities %#x", c.dw0)
	}
	if c := d.ok(0, sqe{opc: adminGetFeatures, cdw10: featTempThreshold}); c.dw0 != tempWarning {
		t.Fatalf("temperature threshold %#x", c.dw0)
	}
	for _, f := range []uint32{featArbitration, featIRQCoalescing, featAsyncEvent, featWriteAtomicity, featSWProgress, featErrorRecovery} {
		d.ok(0, sqe{opc: adminSetFeatures, cdw10: f, cdw11: 1})
		if c := d.ok(0, sqe{opc: adminGetFeatures, cdw10: f}); c.dw0 != 1 {
			t.Errorf("feature %#x reads %#x after setting 1", f, c.dw0)
		}
	}
	d.ok(0, sqe{opc: adminSetFeatures, cdw10: featTempThreshold, cdw11: 1<<20 | 200})
	if c := d.ok(0, sqe{opc: adminGetFeatures, cdw10: featTempThreshold, cdw11: 1 << 20}); c.dw0 != 200 {
		t.Fatalf("under-temperature threshold %#x", c.dw0)
	}
	for name, c := range map[string]struct {
		e    sqe
		want uint16
	}{
		"unknown feature":    {sqe{opc: adminGetFeatures, cdw10: 0x0e}, scInvalidField},
		"unknown set":        {sqe{opc: adminSetFeatures, cdw10: 0x0c}, scInvalidField},
		"save":               {sqe{opc: adminSetFeatures, cdw10: 1<<31 | featArbitration}, scNotSaveable},
		"power state 3":      {sqe{opc: adminSetFeatures, cdw10: featPower, cdw11: 3}, scInvalidField},
		"65536 queues":       {sqe{opc: adminSetFeatures, cdw10: featNumQueues, cdw11: 0xffff}, scInvalidField},
		"vector beyond":      {sqe{opc: adminGetFeatures, cdw10: featIRQVector, cdw11: 99}, scInvalidField},
		"temperature sensor": {sqe{opc: adminGetFeatures, cdw10: featTempThreshold, cdw11: 3 << 16}, scInvalidField},
	} {
		if got := d.status(0, c.e); got != c.want {
			t.Errorf("%s: status %#x, want %#x", name, got, c.want)
		}
	}
}

func TestLogPagesAERAbort(t *testing.T) {
	d := newDriver(t, opts{})
	d.enable()
	for _, lid := range []uint32{logError, logSMART, logFirmware} {
		d.ok(0, sqe{opc: adminGetLogPage, prp1: dataAt, cdw10: 127<<16 | lid})
	}
	if d.mem[dataAt] != 1 || strings.TrimSpace(string(d.mem[dataAt+8:dataAt+16])) != firmwareRev {
		t.Fatalf("firmware slot log % x", d.mem[dataAt:dataAt+16])
	}
	if got := d.status(0, sqe{opc: adminGetLogPage, prp1: dataAt, cdw10: 127<<16 | 0x05}); got != scInvalidLogPage {
		t.Fatalf("effects log: %#x", got)
	}
	if got := d.status(0, sqe{opc: adminGetLogPage, prp1: dataAt, cdw10: 127<<16 | logSMART, cdw12: 4096}); got != scInvalidField {
		t.Fatalf("offset beyond the log: %#x", got)
	}
	if got := d.status(0, sqe{opc: adminGetLogPage, prp1: dataAt, cdw10: 0xffff<<16 | logSMART, cdw11: 0xffff}); got != scInvalidField {
		t.Fatalf("16 GiB log read: %#x", got)
	}
	// AERs are held; one more than the limit fails at once.
	for range aerLimit {
		d.submit(0, sqe{opc: adminAsyncEvent})
	}
	if got := d.status(0, sqe{opc: adminAsyncEvent}); got != scAERLimit {
		t.Fatalf("AER over the limit: %#x", got)
	}
	if c := d.ok(0, sqe{opc: adminAbort, cdw10: 1 << 16}); c.dw0 != 1 {
		t.Fatalf("abort dw0 %#x", c.dw0)
	}
}

func TestReadWriteFlush(t *testing.T) {
	d := newDriver(t, opts{})
	d.enable()
	d.createQueuePair(1, 64)
	le := binary.LittleEndian

	// 40 blocks (20 KiB) from a buffer starting 0x200 into a page: PRP1,
	// then a PRP list of 5 entries.
	pattern := make([]byte, 40*BlockSize)
	for i := range pattern {
		pattern[i] = byte(i*7 + 3)
	}
	list := uint64(dataAt + 0x40000)
	first := uint64(dataAt + 0x200)
	copy(d.mem[first:], pattern[:0xe00])
	for i := range 5 {
		page := uint64(dataAt + 0x10000 + 0x2000*i) // scattered pages
		le.PutUint64(d.mem[list+uint64(8*i):], page)
		copy(d.mem[page:], pattern[0xe00+0x1000*i:])
	}
	d.ok(1, rw(true, 100, 40, first, list))
	d.ok(1, sqe{opc: ioFlush, nsid: 1})
	if img := d.image(); !bytes.Equal(img[100*BlockSize:140*BlockSize], pattern) {
		t.Fatal("image does not hold the written pattern")
	}
	// Read it back into one contiguous page run: PRP2 is then the list too.
	clear(d.mem[dataAt+0x80000 : dataAt+0x90000])
	for i := range 5 {
		le.PutUint64(d.mem[list+uint64(8*i):], uint64(dataAt+0x81000+0x1000*i))
	}
	d.ok(1, rw(false, 100, 40, dataAt+0x80000, list))
	if !bytes.Equal(d.mem[dataAt+0x80000:dataAt+0x80000+40*BlockSize], pattern) {
		t.Fatal("read back differs")
	}
	// Two pages: PRP2 is the second page.
	d.ok(1, rw(false, 0, 16, dataAt, dataAt+0x3000))
	if d.mem[dataAt+0x3000] != 8 || d.mem[dataAt+0xfff] != 7 {
		t.Fatal("two-page read landed wrong")
	}
	// Force unit access and write-through.
	d.ok(1, sqe{opc: ioWrite, nsid: 1, prp1: dataAt, cdw10: 3, cdw12: cdw12FUA})
	d.ok(0, sqe{opc: adminSetFeatures, cdw10: featWriteCache})
	d.ok(1, rw(true, 4, 1, dataAt, 0))
	d.ok(1, sqe{opc: ioFlush, nsid: nsidAll})
	st := d.c.Stats()
	if st.Writes != 3 || st.Reads != 2 || st.BlocksWritten != 42 {
		t.Fatalf("stats %+v", st)
	}
	d.ok(0, sqe{opc: adminGetLogPage, prp1: dataAt, cdw10: 127<<16 | logSMART})
	if le.Uint64(d.mem[dataAt+80:]) != 3 {
		t.Fatal("SMART log does not count the writes")
	}
}

func TestWriteZeroesAndDeallocate(t *testing.T) {
	d := newDriver(t, opts{})
	d.enable()
	d.createQueuePair(1, 16)
	d.ok(1, sqe{opc: ioWriteZeroes, nsid: 1, cdw10: 10, cdw12: 3})
	le := binary.LittleEndian
	r := d.mem[dataAt:]
	// Two ranges: {attrs, NLB, SLBA}.
	le.PutUint32(r[4:], 2)
	le.PutUint64(r[8:], 20)
	le.PutUint32(r[20:], 8)
	le.PutUint64(r[24:], 64)
	d.ok(1, sqe{opc: ioDSM, nsid: 1, prp1: dataAt, cdw10: 1, cdw11: dsmDeallocat})
	img := d.image()
	zero := func(blk, n int) bool {
		return bytes.Equal(img[blk*BlockSize:(blk+n)*BlockSize], make([]byte, n*BlockSize))
	}
	if !zero(10, 4) || img[9*BlockSize] != 9 || img[14*BlockSize] != 14 {
		t.Fatal("write zeroes")
	}
	if img[22*BlockSize] != 22 || img[19*BlockSize] != 19 {
		t.Fatal("deallocate touched blocks outside its ranges")
	}
	// A range beyond the namespace fails the whole command.
	le.PutUint64(r[24:], 2047)
	if got := d.status(1, sqe{opc: ioDSM, nsid: 1, prp1: dataAt, cdw10: 1, cdw11: dsmDeallocat}); got != scLBARange {
		t.Fatalf("DSM beyond the end: %#x", got)
	}
	// Without AD the command is a hint.
	d.ok(1, sqe{opc: ioDSM, nsid: 1, prp1: dataAt, cdw10: 1})
}

func TestIOErrors(t *testing.T) {
	d := newDriver(t, opts{blocks: 2048})
	d.enable()
	d.createQueuePair(1, 16)
	for name, c := range map[string]struct {
		e    sqe
		want uint16
	}{
		"past the end":        {rw(false, 2048, 1, dataAt, 0), scLBARange},
		"over the end":        {rw(true, 2040, 16, dataAt, dataAt+0x1000), scLBARange},
		"LBA wraps":           {rw(false, 1<<63, 1, dataAt, 0), scLBARange},
		"zeroes over the end": {sqe{opc: ioWriteZeroes, nsid: 1, cdw10: 2047, cdw12: 1}, scLBARange},
		"over MDTS":           {rw(false, 0, 2048, dataAt, dataAt+0x1000), scInvalidField},
		"namespace 2":         {sqe{opc: ioRead, nsid: 2, prp1: dataAt}, scInvalidNamespace},
		"flush namespace 0":   {sqe{opc: ioFlush}, scInvalidNamespace},
		"compare":             {sqe{opc: 0x05, nsid: 1}, scInvalidOpcode},
		"admin opcode":        {sqe{opc: adminIdentify, nsid: 1}, scInvalidOpcode},
		"PRP1 outside RAM":    {rw(false, 0, 1, memSize-256, memSize), scDataTransfer},
		"PRP2 outside RAM":    {rw(false, 0, 16, dataAt, 1<<40), scDataTransfer},
		"list outside RAM":    {rw(false, 0, 24, dataAt, memSize), scDataTransfer},
		"list entry outside":  {rw(false, 0, 24, dataAt, dataAt+0x8000), scDataTransfer},
		"list misaligned":     {rw(false, 0, 24, dataAt, dataAt+0x8004), scPRPOffset},
		"SGL":                 {sqe{opc: ioRead, flags: 0x40, nsid: 1, prp1: dataAt}, scInvalidField},
	} {
		if name == "list entry outside" {
			binary.LittleEndian.PutUint64(d.mem[dataAt+0x8000:], memSize)
			binary.LittleEndian.PutUint64(d.mem[dataAt+0x8008:], memSize)
		}
		if got := d.status(1, c.e); got != c.want {
			t.Errorf("%s: status %#x, want %#x", name, got, c.want)
		}
	}
}

func TestReadOnly(t *testing.T) {
	d := newDriver(t, opts{readOnly: true})
	d.enable()
	// Identify Namespace says so (NSATTR bit 0), as it does not for a
	// writable image (TestIdentify).
	d.ok(0, sqe{opc: adminIdentify, nsid: 1, prp1: dataAt, cdw10: cnsNamespace})
	if d.mem[dataAt+99] != 1 {
		t.Errorf("NSATTR %#x, want write protected", d.mem[dataAt+99])
	}
	d.createQueuePair(1, 16)
	d.ok(1, rw(false, 0, 1, dataAt, 0))
	for name, e := range map[string]sqe{
		"write":        rw(true, 0, 1, dataAt, 0),
		"write zeroes": {opc: ioWriteZeroes, nsid: 1},
		"deallocate":   {opc: ioDSM, nsid: 1, prp1: dataAt, cdw11: dsmDeallocat},
	} {
		if got := d.status(1, e); got != scWriteProtected {
			t.Errorf("%s: status %#x, want write protected", name, got)
		}
	}
	d.ok(1, sqe{opc: ioFlush, nsid: 1})
}

func TestLoopingPRPList(t *testing.T) {
	d := newDriver(t, opts{})
	d.enable()
	d.createQueuePair(1, 16)
	// A list page whose every entry, the chain entry included, points at
	// itself: 1024 blocks (MDTS) walk it twice over and end.
	list := uint64(dataAt + 0x8000)
	for i := range 512 {
		binary.LittleEndian.PutUint64(d.mem[list+uint64(8*i):], list)
	}
	d.ok(1, rw(false, 0, 1024, dataAt, list))
	img := d.image()
	if !bytes.Equal(d.mem[dataAt:dataAt+BlockSize], img[:BlockSize]) {
		t.Fatal("first page")
	}
}

func TestQueueCommandErrors(t *testing.T) {
	d := newDriver(t, opts{queues: 2})
	d.enable()
	d.createQueuePair(1, 16)
	cq := func(qid, size uint32, at uint64, cdw11 uint32) sqe {
		return sqe{opc: adminCreateCQ, prp1: at, cdw10: (size-1)<<16 | qid, cdw11: cdw11}
	}
	sq := func(qid, size uint32, at uint64, cqid uint32) sqe {
		return sqe{opc: adminCreateSQ, prp1: at, cdw10: (size-1)<<16 | qid, cdw11: cqid<<16 | 1}
	}
	free := uint64(0x400000)
	for name, c := range map[string]struct {
		e    sqe
		want uint16
	}{
		"CQ 0":               {cq(0, 16, free, 1), scInvalidQID},
		"CQ 3 of 2":          {cq(3, 16, free, 1), scInvalidQID},
		"CQ twice":           {cq(1, 16, free, 1), scInvalidQID},
		"CQ of one entry":    {cq(2, 1, free, 1), scInvalidQSize},
		"CQ too big":         {cq(2, 4096, free, 1), scInvalidQSize},
		"CQ not contiguous":  {cq(2, 16, free, 0), scInvalidField},
		"CQ vector beyond":   {cq(2, 16, free, 9<<16|3), scInvalidVector},
		"CQ misaligned":      {cq(2, 16, free+8, 1), scPRPOffset},
		"CQ outside RAM":     {cq(2, 16, memSize, 1), scInvalidField},
		"CQ over admin SQ":   {cq(2, 16, asqAt, 1), scInvalidField},
		"CQ over I/O SQ":     {cq(2, 16, ioSQAt, 1), scInvalidField},
		"SQ twice":           {sq(1, 16, free, 1), scInvalidQID},
		"SQ on missing CQ":   {sq(2, 16, free, 2), scInvalidCQ},
		"SQ on admin CQ":     {sq(2, 16, free, 0), scInvalidCQ},
		"SQ on CQ beyond":    {sq(2, 16, free, 9), scInvalidCQ},
		"SQ size 65536":      {sq(2, 65536, free, 1), scInvalidQSize},
		"delete SQ 0":        {sqe{opc: adminDeleteSQ}, scInvalidQID},
		"delete missing SQ":  {sqe{opc: adminDeleteSQ, cdw10: 2}, scInvalidQID},
		"delete CQ in use":   {sqe{opc: adminDeleteCQ, cdw10: 1}, scInvalidQDeletion},
		"delete missing CQ":  {sqe{opc: adminDeleteCQ, cdw10: 2}, scInvalidQID},
		"delete CQ beyond":   {sqe{opc: adminDeleteCQ, cdw10: 0xffff}, scInvalidQID},
		"doorbell buf unal.": {sqe{opc: adminDoorbellBufC, prp1: free + 4, prp2: free + 0x1000}, scInvalidField},
		"doorbell buf 0":     {sqe{opc: adminDoorbellBufC, prp2: free}, scInvalidField},
	} {
		if got := d.status(0, c.e); got != c.want {
			t.Errorf("%s: status %#x, want %#x", name, got, c.want)
		}
	}
	// A second SQ may share CQ 1; then deletion order matters.
	d.ok(0, sq(2, 16, free, 1))
	d.ok(0, sqe{opc: adminDeleteSQ, cdw10: 1})
	if got := d.status(0, sqe{opc: adminDeleteCQ, cdw10: 1}); got != scInvalidQDeletion {
		t.Fatalf("delete CQ still used by SQ 2: %#x", got)
	}
	d.ok(0, sqe{opc: adminDeleteSQ, cdw10: 2})
	d.ok(0, sqe{opc: adminDeleteCQ, cdw10: 1})
	d.createQueuePair(1, 16)
	d.ok(1, rw(false, 0, 1, dataAt, 0))
}

func TestHostileDoorbells(t *testing.T) {
	d := newDriver(t, opts{})
	d.enable()
	d.createQueuePair(1, 16)
	for _, w := range []struct {
		off uint64
		v   []byte
	}{
		{doorbellAt + 8, []byte{99, 0, 0, 0}}, // tail beyond the queue
		{doorbellAt + 12, []byte{0xff, 0xff, 0xff, 0xff}},
		{doorbellAt + 8*50, []byte{1, 0, 0, 0}},  // queue that does not exist
		{doorbellAt + 0xff0, []byte{1, 0, 0, 0}}, // far beyond
		{doorbellAt + 2, []byte{1, 0}},           // misaligned, narrow
		{doorbellAt, []byte{1}},
		{doorbellAt + 8, []byte{1, 0, 0, 0, 0, 0, 0, 0}},
	} {
		barDevice{d.c}.Write(w.off, w.v)
	}
	if d.c.Stats().BadDoorbells != 7 {
		t.Fatalf("bad doorbells %d", d.c.Stats().BadDoorbells)
	}
	// The queues still work.
	d.ok(1, rw(false, 0, 1, dataAt, 0))
	d.ok(0, sqe{opc: adminIdentify, prp1: dataAt, cdw10: cnsController})
}

func TestResetTearsDownQueues(t *testing.T) {
	d := newDriver(t, opts{})
	d.enable()
	d.createQueuePair(1, 16)
	d.submit(0, sqe{opc: adminAsyncEvent})
	d.write32(regCC, 0)
	if d.read32(regCSTS)&cstsRDY != 0 {
		t.Fatal("still ready after reset")
	}
	// The old I/O queue is gone: its doorbell does nothing.
	d.submit(1, rw(false, 0, 1, dataAt, 0))
	if _, ok := d.poll(1, 50*time.Millisecond); ok {
		t.Fatal("a deleted queue completed a command")
	}
	clear(d.mem[asqAt : asqAt+0x2000])
	d.enable()
	if got := d.status(0, sqe{opc: adminDeleteSQ, cdw10: 1}); got != scInvalidQID {
		t.Fatalf("SQ 1 survived the reset: %#x", got)
	}
	// Held AERs were dropped: the limit is free again.
	for range aerLimit {
		d.submit(0, sqe{opc: adminAsyncEvent})
	}
	if got := d.status(0, sqe{opc: adminAsyncEvent}); got != scAERLimit {
		t.Fatalf("AER limit after reset: %#x", got)
	}
	d.createQueuePair(1, 16)
	d.ok(1, rw(false, 0, 1, dataAt, 0))
}

func TestShutdown(t *testing.T) {
	d := newDriver(t, opts{})
	d.enable()
	d.createQueuePair(1, 16)
	d.ok(1, rw(true, 0, 1, dataAt, 0))
	d.write32(regCC, ccEnable|1<<ccSHNShift)
	deadline := time.Now().Add(5 * time.Second)
	for d.read32(regCSTS)&cstsSHSTMask != cstsSHSTDone {
		if time.Now().After(deadline) {
			t.Fatalf("CSTS %#x: shutdown never completes", d.read32(regCSTS))
		}
		time.Sleep(time.Millisecond)
	}
	d.write32(regCC, 0)
	if d.read32(regCSTS) != 0 {
		t.Fatalf("CSTS %#x after disable", d.read32(regCSTS))
	}
}

// enableMSIX turns MSI-X on with every vector unmasked.
func (d *driver) enableMSIX() {
	f := d.c.Function()
	for v := range d.c.msix.Vectors() {
		e := make([]byte, 16)
		binary.LittleEndian.PutUint32(e[0:], 0xfee00000)
		binary.LittleEndian.PutUint32(e[8:], uint32(0x30+v))
		barDevice{d.c}.Write(msixTableOff+uint64(16*v), e)
	}
	f.WriteConfig(0x42, []byte{0, 0x80})
}

func TestInterruptsAndFullCQ(t *testing.T) {
	d := newDriver(t, opts{})
	d.enableMSIX()
	d.enable()
	d.ok(0, sqe{opc: adminIdentify, prp1: dataAt, cdw10: cnsController})
	if d.msi.count(0) == 0 {
		t.Fatal("admin completion raised no vector 0")
	}
	// SQ 1 is larger than CQ 1: twelve commands with nobody consuming
	// completions fill the CQ (3 usable entries) and the queue waits.
	d.createQueuePair(1, 4)
	d.qs[1].size = 4
	q := d.qs[1]
	sqAt := uint64(0x300000)
	d.ok(0, sqe{opc: adminDeleteSQ, cdw10: 1})
	d.ok(0, sqe{opc: adminCreateSQ, prp1: sqAt, cdw10: 15<<16 | 1, cdw11: 1<<16 | 1})
	sqQ := &hostQueue{sqAt: sqAt, cqAt: q.cqAt, size: 16, phase: 1}
	d.qs[1] = sqQ
	// Separate buffers: the reads run concurrently.
	for i := range 12 {
		d.submit(1, rw(false, 0, 1, dataAt+uint64(i)*pageSize, 0))
	}
	time.Sleep(20 * time.Millisecond)
	d.qs[1] = q
	got := 0
	for got < 12 {
		e := d.wait(1)
		if e.status != 0 {
			t.Fatalf("status %#x", e.status)
		}
		got++
	}
	if d.msi.count(1) == 0 {
		t.Fatal("I/O completions raised no vector 1")
	}
}

func TestQueuesInParallel(t *testing.T) {
	d := newDriver(t, opts{queues: 4, blocks: 8192})
	d.enable()
	for qid := uint16(1); qid <= 4; qid++ {
		d.createQueuePair(qid, 32)
	}
	// Each queue is driven by its own goroutine; queues are independent.
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for qid := uint16(1); qid <= 4; qid++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := d.qs[qid]
			buf := uint64(0x400000 + 0x10000*uint64(qid))
			for i := range 50 {
				e := d.mem[q.sqAt+uint64(q.tail)*sqeSize:][:sqeSize]
				clear(e)
				binary.LittleEndian.PutUint32(e[0:], ioWrite|uint32(i)<<16)
				binary.LittleEndian.PutUint32(e[4:], 1)
				binary.LittleEndian.PutUint64(e[24:], buf)
				binary.LittleEndian.PutUint32(e[40:], uint32(qid)*1000+uint32(i))
				q.tail = (q.tail + 1) % q.size
				d.write32(doorbellAt+uint64(8*qid), q.tail)
				if c, ok := d.poll(qid, 5*time.Second); !ok || c.status != 0 || c.sqid != qid {
					errs <- "queue failed"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func TestShadowDoorbells(t *testing.T) {
	d := newDriver(t, opts{queues: 2})
	d.c.barMoved(0xc0000000, true)
	d.enable()
	d.createQueuePair(1, 16)
	d.ok(1, rw(false, 0, 1, dataAt, 0)) // the queue existed before the buffer
	shadow, ei := uint64(0x500000), uint64(0x501000)
	d.ok(0, sqe{opc: adminDoorbellBufC, prp1: shadow, prp2: ei})
	if got := binary.LittleEndian.Uint32(d.mem[shadow+8:]); got != 1 {
		t.Fatalf("shadow tail of SQ 1 is %d, want the current tail 1", got)
	}
	if len(d.ev.fns) != 4 {
		t.Fatalf("%d ioeventfds, want 4 (two queues, SQ and CQ doorbells)", len(d.ev.fns))
	}
	d.qs[1].shadowDB, d.qs[1].shadEI = shadow, ei
	d.createQueuePair(2, 16)
	d.qs[2].shadowDB, d.qs[2].shadEI = shadow, ei
	for i := range 40 {
		qid := uint16(1 + i%2)
		d.ok(qid, rw(true, uint64(i), 1, dataAt, 0))
	}
	// A reset turns shadowing and the ioeventfds off.
	d.write32(regCC, 0)
	if len(d.ev.fns) != 0 {
		t.Fatalf("%d ioeventfds left after reset", len(d.ev.fns))
	}
}
