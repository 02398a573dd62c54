// Package netboot is the outer machine's network boot service for a guest
// on a tap: a DHCP server (RFC 2131, RFC 2132) for one client that hands
// it a fixed address and a boot file URL, and an HTTP server for that
// file. iPXE's autoboot (DHCP, then fetch and run the boot file) is the
// client it is written for; only what it sends is answered.
package netboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// DHCP message types (option 53).
const (
	Discover = 1
	Offer    = 2
	Request  = 3
	Decline  = 4
	Ack      = 5
	Nak      = 6
	Release  = 7
	Inform   = 8
)

// Options (RFC 2132).
const (
	optPad         = 0
	optSubnetMask  = 1
	optRouter      = 3
	optRequestedIP = 50
	optLeaseTime   = 51
	optMessageType = 53
	optServerID    = 54
	optBootfile    = 67
	optEnd         = 255
)

// BOOTP layout: fixed header, then the magic cookie and options.
const (
	headerSize = 236
	fileOff    = 108
	fileSize   = 128
	cookieSize = 4
	minMessage = headerSize + cookieSize
	// maxMessage bounds what is read: a DHCP message fits an Ethernet
	// frame.
	maxMessage = 1500
	leaseTime  = 3600
)

var cookie = []byte{99, 130, 83, 99}

// ErrInvalid: not a DHCP request this server takes.
var ErrInvalid = errors.New("netboot: invalid DHCP message")

// Message is the part of a client's DHCP request the server uses.
type Message struct {
	Type  byte
	XID   uint32
	Flags uint16
	// CHAddr is the client's hardware address field (16 bytes).
	CHAddr [16]byte
	// RequestedIP (option 50) and ServerID (option 54), when present.
	RequestedIP, ServerID netip.Addr
}

// Parse decodes a client's DHCP message (op BOOTREQUEST, Ethernet).
func Parse(b []byte) (Message, error) {
	var m Message
	if len(b) < minMessage || len(b) > maxMessage {
		return m, fmt.Errorf("%w: %d bytes", ErrInvalid, len(b))
	}
	if b[0] != 1 || b[1] != 1 || b[2] != 6 {
		return m, fmt.Errorf("%w: op %d htype %d hlen %d", ErrInvalid, b[0], b[1], b[2])
	}
	if !bytes.Equal(b[headerSize:minMessage], cookie) {
		return m, fmt.Errorf("%w: no magic cookie", ErrInvalid)
	}
	m.XID = binary.BigEndian.Uint32(b[4:])
	m.Flags = binary.BigEndian.Uint16(b[10:])
	copy(m.CHAddr[:], b[28:44])
	opts := b[minMessage:]
	for len(opts) > 0 {
		code := opts[0]
		if code == optPad {
			opts = opts[1:]
			continue
		}
		if code == optEnd {
			break
		}
		if len(opts) < 2 || len(opts) < 2+int(opts[1]) {
			return m, fmt.Errorf("%w: option %d runs past the message", ErrInvalid, code)
		}
		val := opts[2 : 2+int(opts[1])]
		opts = opts[2+len(val):]
		switch code {
		case optMessageType:
			if len(val) != 1 {
				return m, fmt.Errorf("%w: message type of %d bytes", ErrInvalid, len(val))
			}
			m.Type = val[0]
		case optRequestedIP, optServerID:
			if len(val) != 4 {
				return m, fmt.Errorf("%w: option %d of %d bytes", ErrInvalid, code, len(val))
			}
			a := netip.AddrFrom4([4]byte(val))
			if code == optRequestedIP {
				m.RequestedIP = a
			} else {
				m.ServerID = a
			}
		}
	}
	if m.Type == 0 {
		return m, fmt.Errorf("%w: no message type", ErrInvalid)
	}
	return m, nil
}

// Lease is what the server hands its one client.
type Lease struct {
	// Server is the tap's address: server identifier, router, and the
	// host of the boot file URL; Client the address the guest gets.
	Server, Client netip.Addr
	Bits           int
	// Bootfile is the boot file's URL (option 67 and the file field).
	Bootfile string
}

// Answer returns the reply to m (nil: none is due): OFFER to DISCOVER, ACK
// to a REQUEST for the lease's address from this server (or any, when the
// client names none), NAK to a REQUEST for another address.
func (l Lease) Answer(m Message) []byte {
	switch m.Type {
	case Discover:
		return l.reply(m, Offer)
	case Request:
		if m.ServerID.IsValid() && m.ServerID != l.Server {
			return nil // the client took another server's offer
		}
		if m.RequestedIP.IsValid() && m.RequestedIP != l.Client {
			return l.reply(m, Nak)
		}
		return l.reply(m, Ack)
	}
	return nil
}

func (l Lease) reply(m Message, typ byte) []byte {
	b := make([]byte, minMessage, 400)
	b[0], b[1], b[2] = 2, 1, 6
	binary.BigEndian.PutUint32(b[4:], m.XID)
	binary.BigEndian.PutUint16(b[10:], m.Flags)
	copy(b[28:44], m.CHAddr[:])
	copy(b[headerSize:], cookie)
	server := l.Server.As4()
	b = append(b, optMessageType, 1, typ, optServerID, 4)
	b = append(b, server[:]...)
	if typ != Nak {
		client := l.Client.As4()
		copy(b[16:20], client[:])
		copy(b[20:24], server[:]) // siaddr: the next server
		copy(b[fileOff:fileOff+fileSize-1], l.Bootfile)
		var m4 [4]byte
		binary.BigEndian.PutUint32(m4[:], ^uint32(0)<<(32-l.Bits))
		b = append(b, optLeaseTime, 4)
		b = binary.BigEndian.AppendUint32(b, leaseTime)
		b = append(b, optSubnetMask, 4)
		b = append(b, m4[:]...)
		b = append(b, optRouter, 4)
		b = append(b, server[:]...)
		b = append(b, optBootfile, byte(len(l.Bootfile)))
		b = append(b, l.Bootfile...)
	}
	return append(b, optEnd)
}

// Check validates a lease: IPv4 addresses in one subnet, a URL that fits
// the file field and an option.
func (l Lease) Check() error {
	if !l.Server.Is4() || !l.Client.Is4() || l.Bits < 8 || l.Bits > 30 || l.Server == l.Client {
		return fmt.Errorf("netboot: lease %v for %v/%d", l.Client, l.Server, l.Bits)
	}
	if !netip.PrefixFrom(l.Server, l.Bits).Contains(l.Client) {
		return fmt.Errorf("netboot: client %v outside %v/%d", l.Client, l.Server, l.Bits)
	}
	if l.Bootfile == "" || len(l.Bootfile) >= fileSize {
		return fmt.Errorf("netboot: boot file URL of %d bytes", len(l.Bootfile))
	}
	return nil
}
