package main

import (
	"errors"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
)

var errNotStarted = errors.New("not started")

func kvpRecord(k, v string) []byte {
	b := make([]byte, kvpKeySize+kvpValSize)
	copy(b, k)
	copy(b[kvpKeySize:], v)
	return b
}

func TestKVPCheck(t *testing.T) {
	opts := options{params: map[string]string{"vmm.kvp": "vmm-e2e=hello=world"}}
	var slept time.Duration
	sleep := func(d time.Duration) { slept += d }
	started := 0
	running := func() (<-chan struct{}, *error, error) { started++; return make(chan struct{}), nil, nil }

	pool := append(kvpRecord("other", "x"), kvpRecord("vmm-e2e", "hello=world")...)
	root := fstest.MapFS{kvpDevice: {}, kvpPool0: {Data: pool}}
	pass, detail := kvpCheck(&env{root: root, opts: opts}, time.Second, sleep, running)
	assert.True(t, pass, detail)
	assert.Contains(t, detail, "pool 0 (2 keys) has vmm-e2e=hello=world")
	assert.Equal(t, 1, started)
	assert.Zero(t, slept)

	exited := make(chan struct{})
	close(exited)
	dead := errors.New("exit status 1")
	for name, c := range map[string]struct {
		root  fstest.MapFS
		opts  options
		start func() (<-chan struct{}, *error, error)
		want  string
	}{
		"no key":       {root, options{}, running, "no vmm.kvp"},
		"no device":    {fstest.MapFS{}, opts, running, "no /dev/vmbus/hv_kvp"},
		"no pool":      {fstest.MapFS{kvpDevice: {}}, opts, running, "no vmm-e2e in"},
		"wrong value":  {fstest.MapFS{kvpDevice: {}, kvpPool0: {Data: kvpRecord("vmm-e2e", "bye")}}, opts, running, `"bye"`},
		"daemon fails": {root, opts, func() (<-chan struct{}, *error, error) { return exited, &dead, nil }, "exited: exit status 1"},
		"no daemon":    {root, opts, func() (<-chan struct{}, *error, error) { return nil, nil, errNotStarted }, "not started"},
	} {
		pass, detail := kvpCheck(&env{root: c.root, opts: c.opts}, time.Second, sleep, c.start)
		assert.False(t, pass, "%s: %s", name, detail)
		assert.Contains(t, detail, c.want, name)
	}
	assert.Equal(t, map[string]string{"a": "b"}, parseKVPPool(append(kvpRecord("a", "b"), 1, 2, 3)))
}
