package testdev

import (
	"encoding/binary"
	"log/slog"
)

// HyperVSize is hyperv-testdev's control port (0x3000).
const HyperVSize = 4

// hyperv-testdev's commands (QEMU hw/misc/hyperv_testdev.c), in bits 16-23
// of the value written.
const (
	hvSINTRouteCreate  = 1
	hvSINTRouteDestroy = 2
	hvSINTRouteSetSINT = 3
	hvMsgConnCreate    = 4
	hvMsgConnDestroy   = 5
	hvEvtConnCreate    = 6
	hvEvtConnDestroy   = 7
)

// SynIC is what hyperv-testdev drives: the routes and connections of the
// VMM's SynIC (vmm/hyperv's Partition).
type SynIC interface {
	CreateSINTRoute(vp, sint int) error
	DestroySINTRoute(vp, sint int)
	SetSINT(vp, sint int)
	CreateMessageConnection(vp, sint int, conn uint32) error
	DestroyMessageConnection(conn uint32)
	CreateEventConnection(vp, sint int, conn uint32) error
	DestroyEventConnection(conn uint32)
}

// HyperV is hyperv-testdev: a 32-bit write of SINT (bits 0-7), VP index
// (8-15), command (16-23) and connection ID (24-31) creates or destroys a
// SINT route, raises a route's SINT, or creates or destroys a message or
// event connection, so that a guest's HvPostMessage and HvSignalEvent on
// that connection come back to it. Reads give 0.
type HyperV struct {
	synic SynIC
	log   *slog.Logger
}

// NewHyperV returns hyperv-testdev over synic.
func NewHyperV(synic SynIC, log *slog.Logger) *HyperV {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &HyperV{synic: synic, log: log}
}

// Read implements bus.Device.
func (*HyperV) Read(_ uint64, data []byte) { clear(data) }

// Write implements bus.Device.
func (h *HyperV) Write(off uint64, data []byte) {
	if off != 0 || len(data) != 4 {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	sint, vp, cmd, conn := int(v&0xff), int(v>>8&0xff), v>>16&0xff, v>>24
	var err error
	switch cmd {
	case hvSINTRouteCreate:
		err = h.synic.CreateSINTRoute(vp, sint)
	case hvSINTRouteDestroy:
		h.synic.DestroySINTRoute(vp, sint)
	case hvSINTRouteSetSINT:
		h.synic.SetSINT(vp, sint)
	case hvMsgConnCreate:
		err = h.synic.CreateMessageConnection(vp, sint, conn)
	case hvMsgConnDestroy:
		h.synic.DestroyMessageConnection(conn)
	case hvEvtConnCreate:
		err = h.synic.CreateEventConnection(vp, sint, conn)
	case hvEvtConnDestroy:
		h.synic.DestroyEventConnection(conn)
	default:
		h.log.Debug("hyperv-testdev: unknown command", "value", v)
	}
	if err != nil {
		h.log.Warn("hyperv-testdev", "value", v, "err", err)
	}
}
