package ic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/vmmdev/vmm/devices/vmbus"
)

// KVP (key-value pair exchange) IC class (hyperv.h HV_KVP_GUID) and vmm's
// instance.
var (
	KVPClass    = vmbus.MustGUID("a9a0f4e7-5a45-4d96-b827-8a841e8c03e6")
	kvpInstance = vmbus.MustGUID("a9a0f4e7-5a45-4d96-b827-8a841e8c03e6")
)

// TypeKVPExchange is the KVP service's message type (ICMSGTYPE_KVPEXCHANGE).
const TypeKVPExchange = 2

// KVP operations and pools (uapi hyperv.h enum hv_kvp_exchg_op and
// hv_kvp_exchg_pool).
const (
	KVPOpGet       = 0
	KVPOpSet       = 1
	KVPOpDelete    = 2
	KVPOpEnumerate = 3

	// PoolExternal holds the keys the host pushes (the daemon's
	// .kvp_pool_0); PoolGuest the keys guest programs publish
	// (.kvp_pool_1); PoolAuto the values hv_kvp_daemon computes on each
	// request (OS, kernel, addresses).
	PoolExternal = 0
	PoolGuest    = 1
	PoolAuto     = 2
)

// The message after the IC header (uapi hyperv.h struct hv_kvp_msg):
// {u8 operation, u8 pool, u16 pad}, then for GET and SET the value
// {u32 value_type, u32 key_size, u32 value_size, u8 key[512],
// u8 value[2048]}, for ENUMERATE {u32 index} and the value. Keys and
// values are UTF-16LE with a NUL, sizes in bytes including it.
const (
	KVPMaxKey   = 512
	KVPMaxValue = 2048
	kvpValueHdr = 12
	kvpValue    = kvpValueHdr + KVPMaxKey + KVPMaxValue
	// kvpBody is the request size: the guest answers in the request's
	// own buffer, so it must hold the largest key-value answer.
	kvpBody = 4 + 4 + kvpValue

	regSZ  = 1
	regU32 = 4
	regU64 = 8

	// kvpNoMore is HV_S_CONT: the end of an enumeration or a missing key.
	kvpNoMore = 0x80070103
)

// kvpRefresh is how often the host enumerates the guest's pools again
// (addresses change); kvpRetry how soon after a failed round (the guest's
// daemon not running yet answers every request with a failure).
const (
	kvpRefresh = 5 * time.Second
	kvpRetry   = time.Second
	// kvpMaxEntries bounds each pool the host keeps.
	kvpMaxEntries = 256
)

// ErrKVPSize: a key or value does not fit a KVP message.
var ErrKVPSize = errors.New("KVP key or value too long")

// KV is one key and its value.
type KV struct {
	Key, Value string
}

// CheckKV says whether kv fits a KVP message as Linux converts it: at most
// 511 bytes of UTF-8 and 512 of UTF-16 (with the NUL) for the key, 2047
// and 2048 for the value; the key is not empty.
func CheckKV(kv KV) error {
	if kv.Key == "" {
		return fmt.Errorf("%w: empty key", ErrKVPSize)
	}
	for _, s := range []struct {
		what, v string
		max     int
	}{{"key", kv.Key, KVPMaxKey}, {"value", kv.Value, KVPMaxValue}} {
		if !utf8.ValidString(s.v) {
			return fmt.Errorf("%w: %s is not UTF-8", ErrKVPSize, s.what)
		}
		if len(s.v) > s.max-1 || 2*(len(utf16.Encode([]rune(s.v)))+1) > s.max {
			return fmt.Errorf("%w: %s of %d bytes (at most %d)", ErrKVPSize, s.what, len(s.v), s.max-1)
		}
	}
	return nil
}

// KVP is the key-value exchange service: the host pushes its keys into
// the guest's external pool and reads the guest's auto and guest pools by
// enumeration, one request at a time, as Hyper-V does. The guest side is
// hv_utils' hv_kvp forwarding to the hv_kvp_daemon process.
type KVP struct {
	*framework
	now func() time.Time

	push []KV // host keys, pushed in order
	// pushed counts the keys of push the guest accepted on this open.
	pushed int
	// round: what the current request does; next when the next round
	// may start.
	op    uint8
	pool  uint8
	index uint32
	busy  bool
	next  time.Time
	// seen collects the pool being enumerated.
	seen map[string]string

	auto, guest map[string]string
	rounds      uint64
	failures    uint64
	lastStatus  uint32
}

// KVPStatus is the KVP service's state for the report.
type KVPStatus struct {
	Status
	// Auto is the guest's auto pool as hv_kvp_daemon fills it (OSName,
	// OSBuildNumber, NetworkAddressIPv4, ...); Guest its guest pool;
	// both as last enumerated.
	Auto  map[string]string `json:"auto"`
	Guest map[string]string `json:"guest"`
	// Pushed counts the host keys (--kvp) the guest accepted of Keys.
	Pushed int `json:"pushed"`
	Keys   int `json:"keys"`
	// Rounds counts complete enumerations; Failures the rounds the guest
	// failed (its daemon not running), LastFailure its last status.
	Rounds      uint64 `json:"rounds"`
	Failures    uint64 `json:"failures"`
	LastFailure string `json:"last_failure,omitempty"`
}

// NewKVP returns the KVP device that pushes keys push to the guest. now
// is the clock (nil: time.Now). Keys that fail CheckKV are refused.
func NewKVP(push []KV, now func() time.Time) (*KVP, error) {
	for _, kv := range push {
		if err := CheckKV(kv); err != nil {
			return nil, fmt.Errorf("KVP %q: %w", kv.Key, err)
		}
	}
	if now == nil {
		now = time.Now
	}
	k := &KVP{now: now, push: push, auto: map[string]string{}, guest: map[string]string{}}
	k.framework = newFramework(service{
		name:  "kvp",
		offer: vmbus.Offer{Class: KVPClass, Instance: kvpInstance},
		// hv_kvp.c: WIN8 (4.0), WIN7 (3.0), WS2008 (1.0).
		msgType:  TypeKVPExchange,
		versions: []uint32{Version(4, 0), Version(3, 0), Version(1, 0)},
		answer:   k.answer,
		reset:    func() { k.pushed, k.busy, k.next = 0, false, time.Time{} },
		ready:    k.pollLocked,
	})
	return k, nil
}

// Poll starts the next round of requests when it is due; vmm calls it
// periodically. A round enumerates the auto and the guest pool, then
// pushes the host keys the guest has not taken yet: a guest that sees a
// pushed key knows the host has read its pools.
func (k *KVP) Poll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pollLocked()
}

func (k *KVP) pollLocked() {
	if k.state != StateReady || k.busy || k.now().Before(k.next) {
		return
	}
	k.busy = true
	k.startEnumLocked(PoolAuto)
}

func (k *KVP) startEnumLocked(pool uint8) {
	k.seen = map[string]string{}
	k.sendLocked(KVPOpEnumerate, pool, 0)
}

// sendLocked sends one request; a failure to send ends the round.
func (k *KVP) sendLocked(op, pool uint8, index uint32) {
	k.op, k.pool, k.index = op, pool, index
	body := make([]byte, kvpBody)
	body[0], body[1] = op, pool
	le := binary.LittleEndian
	switch op {
	case KVPOpSet:
		kv := k.push[k.pushed]
		v := body[4:]
		le.PutUint32(v[0:], regSZ)
		key, val := putUTF16(v[kvpValueHdr:kvpValueHdr+KVPMaxKey], kv.Key), putUTF16(v[kvpValueHdr+KVPMaxKey:], kv.Value)
		le.PutUint32(v[4:], uint32(key))
		le.PutUint32(v[8:], uint32(val))
	case KVPOpEnumerate:
		le.PutUint32(body[4:], index)
	}
	if err := k.requestLocked(body); err != nil {
		k.endRoundLocked(false)
	}
}

// putUTF16 writes s as UTF-16LE with a NUL into b and returns the bytes
// written (CheckKV made sure it fits).
func putUTF16(b []byte, s string) int {
	u := utf16.Encode([]rune(s))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return 2 * (len(u) + 1)
}

func (k *KVP) endRoundLocked(ok bool) {
	k.busy = false
	if ok {
		k.rounds++
		k.next = k.now().Add(kvpRefresh)
		return
	}
	k.failures++
	k.next = k.now().Add(kvpRetry)
}

func (k *KVP) answer(status uint32, body []byte) {
	switch k.op {
	case KVPOpSet:
		if status != StatusOK {
			k.lastStatus = status
			k.endRoundLocked(false)
			return
		}
		k.pushed++
		k.pushLocked()
	case KVPOpEnumerate:
		if status != StatusOK {
			if status != kvpNoMore && k.index == 0 {
				// The daemon is not there: nothing was enumerated.
				k.lastStatus = status
				k.endRoundLocked(false)
				return
			}
			k.finishPoolLocked()
			return
		}
		if key, val, err := ParseKVPEnumerate(body); err == nil && len(k.seen) < kvpMaxEntries {
			k.seen[key] = val
		} else {
			k.ignored++
		}
		if k.index+1 >= kvpMaxEntries {
			k.finishPoolLocked()
			return
		}
		k.sendLocked(KVPOpEnumerate, k.pool, k.index+1)
	}
}

func (k *KVP) finishPoolLocked() {
	if k.pool == PoolAuto {
		k.auto = k.seen
		k.startEnumLocked(PoolGuest)
		return
	}
	k.guest = k.seen
	k.pushLocked()
}

// pushLocked sends the next host key, or ends the round when all are in.
func (k *KVP) pushLocked() {
	if k.pushed < len(k.push) {
		k.sendLocked(KVPOpSet, PoolExternal, 0)
		return
	}
	k.endRoundLocked(true)
}

// ParseKVPEnumerate reads a guest's ENUMERATE answer (the body after the
// IC header): the key and the value as text. The guest's sizes are
// checked against the message and the limits; a value of type REG_U32 or
// REG_U64 is printed in decimal.
func ParseKVPEnumerate(body []byte) (key, value string, err error) {
	if len(body) < 8+kvpValueHdr {
		return "", "", fmt.Errorf("KVP answer of %d bytes", len(body))
	}
	if body[0] != KVPOpEnumerate {
		return "", "", fmt.Errorf("KVP answer for operation %d", body[0])
	}
	return parseKVPValue(body[8:])
}

func parseKVPValue(v []byte) (key, value string, err error) {
	le := binary.LittleEndian
	typ, ks, vs := le.Uint32(v[0:]), le.Uint32(v[4:]), le.Uint32(v[8:])
	rest := v[kvpValueHdr:]
	if ks > KVPMaxKey || vs > KVPMaxValue || ks%2 != 0 {
		return "", "", fmt.Errorf("KVP key size %d, value size %d", ks, vs)
	}
	if uint64(len(rest)) < KVPMaxKey+uint64(vs) || uint64(len(rest)) < uint64(ks) {
		return "", "", fmt.Errorf("KVP answer cut short: %d bytes for key %d and value %d", len(rest), ks, vs)
	}
	key = utf16String(rest[:ks])
	if key == "" {
		return "", "", errors.New("KVP answer with an empty key")
	}
	val := rest[KVPMaxKey : KVPMaxKey+vs]
	switch typ {
	case regSZ:
		if vs%2 != 0 {
			return "", "", fmt.Errorf("KVP string value of %d bytes", vs)
		}
		value = utf16String(val)
	case regU32:
		if vs < 4 {
			return "", "", fmt.Errorf("KVP u32 value of %d bytes", vs)
		}
		value = strconv.FormatUint(uint64(le.Uint32(val)), 10)
	case regU64:
		if vs < 8 {
			return "", "", fmt.Errorf("KVP u64 value of %d bytes", vs)
		}
		value = strconv.FormatUint(le.Uint64(val), 10)
	default:
		return "", "", fmt.Errorf("KVP value type %d", typ)
	}
	return key, value, nil
}

// utf16String decodes UTF-16LE up to the first NUL; bad surrogates
// become U+FFFD.
func utf16String(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// Status reports the service's state.
func (k *KVP) Status() KVPStatus {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := KVPStatus{Status: k.statusLocked(), Auto: map[string]string{}, Guest: map[string]string{},
		Pushed: k.pushed, Keys: len(k.push), Rounds: k.rounds, Failures: k.failures}
	for key, v := range k.auto {
		s.Auto[key] = v
	}
	for key, v := range k.guest {
		s.Guest[key] = v
	}
	if k.lastStatus != 0 {
		s.LastFailure = fmt.Sprintf("%#x", k.lastStatus)
	}
	return s
}
