package netboot

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

var testLease = Lease{
	Server: netip.MustParseAddr("10.0.5.1"), Client: netip.MustParseAddr("10.0.5.15"), Bits: 24,
	Bootfile: "http://10.0.5.1/boot.ipxe",
}

// request builds a client message with iPXE's options: message type,
// maximum size, parameter list, vendor class, client id, then opts.
func request(typ byte, xid uint32, opts ...byte) []byte {
	b := make([]byte, headerSize)
	b[0], b[1], b[2] = 1, 1, 6
	binary.BigEndian.PutUint32(b[4:], xid)
	binary.BigEndian.PutUint16(b[10:], 0x8000)
	copy(b[28:], []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x58})
	b = append(b, cookie...)
	b = append(b, optMessageType, 1, typ, 57, 2, 0x05, 0xc0, 55, 3, 1, 3, 67)
	b = append(b, 60, 9)
	b = append(b, "PXEClient"...)
	b = append(b, 61, 7, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x58, optPad)
	b = append(b, opts...)
	return append(b, optEnd)
}

type reply struct {
	op             byte
	xid            uint32
	yiaddr, siaddr netip.Addr
	file           string
	opts           map[byte][]byte
	chaddr         []byte
	broadcast      bool
}

func parseReply(t *testing.T, b []byte) reply {
	t.Helper()
	require.GreaterOrEqual(t, len(b), minMessage)
	require.Equal(t, cookie, b[headerSize:minMessage])
	r := reply{op: b[0], xid: binary.BigEndian.Uint32(b[4:]), yiaddr: netip.AddrFrom4([4]byte(b[16:20])),
		siaddr: netip.AddrFrom4([4]byte(b[20:24])), chaddr: b[28:34], opts: map[byte][]byte{},
		broadcast: binary.BigEndian.Uint16(b[10:]) == 0x8000}
	file := b[fileOff : fileOff+fileSize]
	for i, c := range file {
		if c == 0 {
			file = file[:i]
			break
		}
	}
	r.file = string(file)
	o := b[minMessage:]
	for len(o) > 0 && o[0] != optEnd {
		require.GreaterOrEqual(t, len(o), 2)
		r.opts[o[0]] = o[2 : 2+o[1]]
		o = o[2+o[1]:]
	}
	require.NotEmpty(t, o, "options end with END")
	return r
}

func TestDiscoverRequest(t *testing.T) {
	m, err := Parse(request(Discover, 0xabcd))
	require.NoError(t, err)
	require.Equal(t, byte(Discover), m.Type)
	r := parseReply(t, testLease.Answer(m))
	require.Equal(t, byte(2), r.op)
	require.Equal(t, uint32(0xabcd), r.xid)
	require.True(t, r.broadcast, "flags echoed")
	require.Equal(t, []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x58}, r.chaddr)
	require.Equal(t, testLease.Client, r.yiaddr)
	require.Equal(t, testLease.Server, r.siaddr)
	require.Equal(t, testLease.Bootfile, r.file)
	require.Equal(t, []byte{Offer}, r.opts[optMessageType])
	require.Equal(t, []byte{10, 0, 5, 1}, r.opts[optServerID])
	require.Equal(t, []byte{255, 255, 255, 0}, r.opts[optSubnetMask])
	require.Equal(t, []byte{10, 0, 5, 1}, r.opts[optRouter])
	require.Equal(t, testLease.Bootfile, string(r.opts[optBootfile]))
	require.Len(t, r.opts[optLeaseTime], 4)

	req := request(Request, 0xabce, optRequestedIP, 4, 10, 0, 5, 15, optServerID, 4, 10, 0, 5, 1)
	m, err = Parse(req)
	require.NoError(t, err)
	require.Equal(t, testLease.Client, m.RequestedIP)
	r = parseReply(t, testLease.Answer(m))
	require.Equal(t, []byte{Ack}, r.opts[optMessageType])
	require.Equal(t, uint32(0xabce), r.xid)
	require.Equal(t, testLease.Client, r.yiaddr)

	m, err = Parse(request(Request, 1, optRequestedIP, 4, 10, 0, 5, 99))
	require.NoError(t, err)
	r = parseReply(t, testLease.Answer(m))
	require.Equal(t, []byte{Nak}, r.opts[optMessageType])
	require.False(t, r.yiaddr.IsValid() && r.yiaddr != netip.IPv4Unspecified(), "no address in a NAK")

	m, err = Parse(request(Request, 1, optServerID, 4, 10, 0, 5, 2))
	require.NoError(t, err)
	require.Nil(t, testLease.Answer(m), "another server's offer taken: silence")
	m, err = Parse(request(Release, 1))
	require.NoError(t, err)
	require.Nil(t, testLease.Answer(m))
}

func TestParseRefuses(t *testing.T) {
	good := request(Discover, 1)
	for name, b := range map[string][]byte{
		"short":           good[:minMessage-1],
		"reply op":        append([]byte{2}, good[1:]...),
		"no cookie":       append(append(append([]byte(nil), good[:headerSize]...), 1, 2, 3, 4), good[minMessage:]...),
		"option past end": append(append([]byte(nil), good[:len(good)-1]...), 12, 40, 'x'),
		"no type":         append(append([]byte(nil), good[:minMessage]...), optEnd),
		"type of 2 bytes": append(append([]byte(nil), good[:minMessage]...), optMessageType, 2, 1, 1, optEnd),
		"server id of 3":  append(append([]byte(nil), good[:len(good)-1]...), optServerID, 3, 1, 2, 3, optEnd),
		"huge":            make([]byte, maxMessage+1),
	} {
		_, err := Parse(b)
		require.ErrorIs(t, err, ErrInvalid, name)
	}
}

func TestLeaseCheck(t *testing.T) {
	require.NoError(t, testLease.Check())
	for _, l := range []Lease{
		{Server: testLease.Server, Client: netip.MustParseAddr("10.0.6.15"), Bits: 24, Bootfile: "x"},
		{Server: testLease.Server, Client: testLease.Server, Bits: 24, Bootfile: "x"},
		{Server: testLease.Server, Client: testLease.Client, Bits: 24},
		{Server: testLease.Server, Client: testLease.Client, Bits: 24, Bootfile: string(make([]byte, 128))},
		{Server: netip.MustParseAddr("::1"), Client: testLease.Client, Bits: 24, Bootfile: "x"},
		{Server: testLease.Server, Client: testLease.Client, Bits: 31, Bootfile: "x"},
	} {
		require.Error(t, l.Check(), "%+v", l)
	}
}

// FuzzParse: any input parses or is refused, and a parsed request gets a
// well-formed answer or none.
func FuzzParse(f *testing.F) {
	f.Add(request(Discover, 1))
	f.Add(request(Request, 2, optRequestedIP, 4, 10, 0, 5, 15, optServerID, 4, 10, 0, 5, 1))
	f.Add(request(Inform, 3, optPad, optPad))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		if r := testLease.Answer(m); r != nil {
			parseReply(t, r)
		}
	})
}
