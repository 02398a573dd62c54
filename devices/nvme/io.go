package nvme

import "encoding/binary"

// NVM command set opcodes (NVMe 1.4 §6).
const (
	ioFlush       = 0x00
	ioWrite       = 0x01
	ioRead        = 0x02
	ioWriteZeroes = 0x08
	ioDSM         = 0x09
)

// Command fields.
const (
	cdw12FUA     = 1 << 30
	dsmDeallocat = 1 << 2 // CDW11 AD
	dsmRangeSize = 16
	nsidAll      = 0xffffffff
)

// io executes one NVM command on a goroutine of its submission queue,
// concurrently with the queue's other commands; it never takes the
// controller lock.
func (c *Controller) io(_ *subQueue, cmd *command) completion {
	if cmd.fuse != 0 || cmd.psdt != 0 {
		return fail(scInvalidField)
	}
	if cmd.nsid != nsid && !(cmd.opc == ioFlush && cmd.nsid == nsidAll) {
		return fail(scInvalidNamespace)
	}
	switch cmd.opc {
	case ioRead, ioWrite:
		return c.readWrite(cmd, cmd.opc == ioWrite)
	case ioFlush:
		if err := c.img.Flush(); err != nil {
			c.log.Warn("nvme: flush", "device", c.name, "err", err)
			return completion{status: scWriteFault}
		}
		return completion{}
	case ioWriteZeroes:
		return c.writeZeroes(cmd)
	case ioDSM:
		return c.datasetManagement(cmd)
	}
	return fail(scInvalidOpcode)
}

// lbaRange decodes SLBA and NLB and checks them against the namespace.
func (c *Controller) lbaRange(cmd *command) (off, n uint64, sc uint16) {
	slba := uint64(cmd.cdw10) | uint64(cmd.cdw11)<<32
	nlb := uint64(cmd.cdw12&0xffff) + 1
	blocks := c.img.Size() / BlockSize
	if slba > blocks || nlb > blocks-slba {
		return 0, 0, scLBARange
	}
	return slba * BlockSize, nlb * BlockSize, scSuccess
}

func (c *Controller) readWrite(cmd *command, write bool) completion {
	off, n, sc := c.lbaRange(cmd)
	if sc != scSuccess {
		return fail(sc)
	}
	if n > maxTransfer {
		return fail(scInvalidField)
	}
	if write && c.img.ReadOnly() {
		return fail(scWriteProtected)
	}
	bufs, sc := prpBuffers(c.mem, cmd.prp1, cmd.prp2, n)
	if sc != scSuccess {
		return fail(sc)
	}
	if !write {
		c.stats.reads.Add(1)
		if err := c.img.ReadV(bufs, off); err != nil {
			c.log.Warn("nvme: read", "device", c.name, "offset", off, "err", err)
			return completion{status: scUnrecoveredRead}
		}
		c.stats.blocksRead.Add(n / BlockSize)
		return completion{}
	}
	c.stats.writes.Add(1)
	if err := c.img.WriteV(bufs, off); err != nil {
		c.log.Warn("nvme: write", "device", c.name, "offset", off, "err", err)
		return completion{status: scWriteFault}
	}
	c.stats.blocksWrt.Add(n / BlockSize)
	// Force Unit Access, or no volatile write cache: durable before done.
	if cmd.cdw12&cdw12FUA != 0 || !c.wce.Load() {
		if err := c.img.Flush(); err != nil {
			c.log.Warn("nvme: write-through flush", "device", c.name, "err", err)
			return completion{status: scWriteFault}
		}
	}
	return completion{}
}

func (c *Controller) writeZeroes(cmd *command) completion {
	off, n, sc := c.lbaRange(cmd)
	if sc != scSuccess {
		return fail(sc)
	}
	if c.img.ReadOnly() {
		return fail(scWriteProtected)
	}
	if err := c.img.WriteZeroes(off, n); err != nil {
		c.log.Warn("nvme: write zeroes", "device", c.name, "offset", off, "err", err)
		return completion{status: scWriteFault}
	}
	if cmd.cdw12&cdw12FUA != 0 || !c.wce.Load() {
		if err := c.img.Flush(); err != nil {
			return completion{status: scWriteFault}
		}
	}
	return completion{}
}

// datasetManagement deallocates the ranges the command lists (attribute
// AD); the other attributes are hints and need nothing done.
func (c *Controller) datasetManagement(cmd *command) completion {
	nr := uint64(cmd.cdw10&0xff) + 1
	bufs, sc := prpBuffers(c.mem, cmd.prp1, cmd.prp2, nr*dsmRangeSize)
	if sc != scSuccess {
		return fail(sc)
	}
	if cmd.cdw11&dsmDeallocat == 0 {
		return completion{}
	}
	if c.img.ReadOnly() {
		return fail(scWriteProtected)
	}
	// Copy the ranges before checking them: the guest may change them.
	ranges := gather(bufs)
	blocks := c.img.Size() / BlockSize
	for i := uint64(0); i < nr; i++ {
		r := ranges[i*dsmRangeSize:]
		nlb := uint64(binary.LittleEndian.Uint32(r[4:]))
		slba := binary.LittleEndian.Uint64(r[8:])
		if slba > blocks || nlb > blocks-slba {
			return fail(scLBARange)
		}
	}
	for i := uint64(0); i < nr; i++ {
		r := ranges[i*dsmRangeSize:]
		nlb := uint64(binary.LittleEndian.Uint32(r[4:]))
		slba := binary.LittleEndian.Uint64(r[8:])
		if err := c.img.Discard(slba*BlockSize, nlb*BlockSize); err != nil {
			c.log.Warn("nvme: deallocate", "device", c.name, "lba", slba, "err", err)
			return completion{status: scInternal}
		}
	}
	return completion{}
}
