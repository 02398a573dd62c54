package ic

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/stretchr/testify/require"
)

// kvpDaemon is the guest's hv_kvp plus hv_kvp_daemon as the host sees
// them (hv_kvp.c kvp_respond_to_host, hv_kvp_daemon.c): SET stores the
// key in its pool, ENUMERATE answers entry index of a pool in UTF-16 with
// the NUL counted, or HV_S_CONT past the end; without a daemon every
// request fails with HV_E_FAIL.
type kvpDaemon struct {
	running bool
	pools   [5][]KV
	ops     []string // "op/pool" of each request
}

func (d *kvpDaemon) handle(t *testing.T) func(typ uint16, msg []byte) {
	return func(typ uint16, msg []byte) {
		require.Equal(t, uint16(TypeKVPExchange), typ)
		le := binary.LittleEndian
		b := msg[HeaderSize:]
		require.GreaterOrEqual(t, len(b), kvpBody, "the request holds the largest answer")
		status := uint32(StatusOK)
		op, pool := b[0], b[1]
		d.ops = append(d.ops, fmt.Sprintf("%d/%d", op, pool))
		switch {
		case !d.running:
			status = StatusFail
		case op == KVPOpSet:
			v := b[4:]
			require.Equal(t, uint32(regSZ), le.Uint32(v))
			ks, vs := le.Uint32(v[4:]), le.Uint32(v[8:])
			key := utf16String(v[kvpValueHdr : kvpValueHdr+ks])
			require.Equal(t, uint16(0), le.Uint16(v[kvpValueHdr+ks-2:]), "key NUL-terminated within key_size")
			val := utf16String(v[kvpValueHdr+KVPMaxKey : kvpValueHdr+KVPMaxKey+vs])
			d.pools[pool] = append(d.pools[pool], KV{key, val})
		case op == KVPOpEnumerate:
			i := le.Uint32(b[4:])
			if int(i) >= len(d.pools[pool]) {
				status = kvpNoMore
				break
			}
			kv := d.pools[pool][i]
			v := b[8:]
			le.PutUint32(v[0:], regSZ)
			le.PutUint32(v[4:], uint32(putUTF16(v[kvpValueHdr:], kv.Key)))
			le.PutUint32(v[8:], uint32(putUTF16(v[kvpValueHdr+KVPMaxKey:], kv.Value)))
		default:
			t.Fatalf("host sent KVP operation %d", op)
		}
		le.PutUint32(msg[offStatus:], status)
	}
}

func TestKVP(t *testing.T) {
	now := time.Unix(1000, 0)
	push := []KV{{"vmm-key", "vmm-value"}, {"ключ", "значение ✓"}}
	k, err := NewKVP(push, func() time.Time { return now })
	require.NoError(t, err)
	r, offers := newRig(t, k)
	require.Equal(t, [16]byte(KVPClass), offers[0].Class)
	c, _, err := r.g.Open(offers[0], 4, 4, 0)
	require.NoError(t, err)
	d := &kvpDaemon{}
	d.pools[PoolAuto] = []KV{{"FullyQualifiedDomainName", "guest"}, {"OSName", "Debian GNU/Linux"},
		{"OSBuildNumber", "6.1.0-28-amd64"}, {"NetworkAddressIPv4", "10.0.2.15"}}
	d.pools[PoolGuest] = []KV{{"app", "ready"}}
	g := &guestIC{c: c, fw: linuxFW, srv: []uint32{Version(4, 0), Version(3, 0), Version(1, 0)}, handle: d.handle(t)}

	// No daemon yet: the first enumeration fails and the round ends until
	// the retry.
	g.poll(t)
	st := k.Status()
	require.Equal(t, "4.0", st.Version)
	require.Equal(t, uint64(1), st.Failures)
	require.Equal(t, "0x80004005", st.LastFailure)
	require.Zero(t, st.Pushed)
	k.Poll()
	require.Zero(t, g.poll(t), "no retry before kvpRetry")

	d.running = true
	now = now.Add(kvpRetry)
	k.Poll()
	// 4+1 auto enumerations, 1+1 guest ones, then 2 SETs.
	d.ops = nil
	require.Equal(t, 9, g.poll(t))
	require.Equal(t, []string{"3/2", "3/2", "3/2", "3/2", "3/2", "3/1", "3/1", "1/0", "1/0"}, d.ops,
		"the pools are read before the keys are pushed")
	st = k.Status()
	require.Equal(t, 2, st.Pushed)
	require.Equal(t, uint64(1), st.Rounds)
	require.Equal(t, push, d.pools[PoolExternal])
	require.Equal(t, map[string]string{"FullyQualifiedDomainName": "guest", "OSName": "Debian GNU/Linux",
		"OSBuildNumber": "6.1.0-28-amd64", "NetworkAddressIPv4": "10.0.2.15"}, st.Auto)
	require.Equal(t, map[string]string{"app": "ready"}, st.Guest)

	// The next round only enumerates; a changed address shows.
	k.Poll()
	require.Zero(t, g.poll(t), "no round before kvpRefresh")
	now = now.Add(kvpRefresh)
	d.pools[PoolAuto][3].Value = "10.0.2.16"
	d.pools[PoolGuest] = nil
	k.Poll()
	require.Equal(t, 6, g.poll(t))
	st = k.Status()
	require.Equal(t, "10.0.2.16", st.Auto["NetworkAddressIPv4"])
	require.Empty(t, st.Guest)
	require.Len(t, d.pools[PoolExternal], 2, "keys pushed once per open")
}

func TestCheckKV(t *testing.T) {
	long := func(n int) string { return string(make([]byte, n)) }
	for _, c := range []struct {
		kv KV
		ok bool
	}{
		{KV{"k", "v"}, true},
		{KV{"", "v"}, false},
		{KV{"k", ""}, true},
		{KV{string([]byte{0xff}), "v"}, false},
		{KV{long(255), "v"}, true},
		{KV{long(256), "v"}, false}, // 514 bytes of UTF-16
		{KV{"k", long(1023)}, true},
		{KV{"k", long(1024)}, false},
		{KV{"ключ", "v"}, true},
	} {
		err := CheckKV(c.kv)
		require.Equal(t, c.ok, err == nil, "%q: %v", c.kv.Key, err)
	}
	_, err := NewKVP([]KV{{"", ""}}, nil)
	require.ErrorIs(t, err, ErrKVPSize)
}

func TestParseKVPEnumerate(t *testing.T) {
	msg := func(typ, ks, vs uint32, n int) []byte {
		b := make([]byte, kvpBody)
		b[0] = KVPOpEnumerate
		le := binary.LittleEndian
		le.PutUint32(b[8:], typ)
		le.PutUint32(b[12:], ks)
		le.PutUint32(b[16:], vs)
		for i, c := range utf16.Encode([]rune("key")) {
			le.PutUint16(b[20+2*i:], c)
		}
		le.PutUint64(b[20+KVPMaxKey:], 42)
		return b[:n]
	}
	k, v, err := ParseKVPEnumerate(msg(regU64, 8, 8, kvpBody))
	require.NoError(t, err)
	require.Equal(t, "key", k)
	require.Equal(t, "42", v)
	_, v, err = ParseKVPEnumerate(msg(regU32, 8, 4, kvpBody))
	require.NoError(t, err)
	require.Equal(t, "42", v)
	_, v, err = ParseKVPEnumerate(msg(regSZ, 8, 4, kvpBody))
	require.NoError(t, err)
	require.Equal(t, "*", v)
	for name, b := range map[string][]byte{
		"short":          msg(regSZ, 8, 4, 10),
		"key too big":    msg(regSZ, KVPMaxKey+2, 4, kvpBody),
		"value too big":  msg(regSZ, 8, KVPMaxValue+2, kvpBody),
		"value past end": msg(regSZ, 8, 100, 8+kvpValueHdr+KVPMaxKey+50),
		"odd key":        msg(regSZ, 7, 4, kvpBody),
		"empty key":      msg(regSZ, 0, 4, kvpBody),
		"u64 too short":  msg(regU64, 8, 4, kvpBody),
		"unknown type":   msg(3, 8, 4, kvpBody),
	} {
		_, _, err := ParseKVPEnumerate(b)
		require.Error(t, err, name)
	}
}
