package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"
)

// KVP check (issue 14): Debian's hv_kvp_daemon, started by the agent once
// hv_utils made its device, registers with the kernel, so vmm's KVP
// service gets its answers (the auto pool: OS, kernel, addresses) and the
// key vmm pushed (vmm.kvp=KEY=VALUE, from vmm run --kvp) lands in the
// daemon's external pool file.

const (
	kvpDevice = "dev/vmbus/hv_kvp"
	kvpDaemon = "/usr/sbin/hv_kvp_daemon"
	// kvpPool0 is the external pool: records of a NUL-padded key
	// (HV_KVP_EXCHANGE_MAX_KEY_SIZE) and value (..._VALUE_SIZE).
	kvpPool0               = "var/lib/hyperv/.kvp_pool_0"
	kvpKeySize, kvpValSize = 512, 2048
	kvpWait                = 30 * time.Second
)

func checkKVP(e *env) (bool, string) { return kvpCheck(e, kvpWait, time.Sleep, startKVPDaemon) }

// startKVPDaemon runs hv_kvp_daemon in the foreground as the agent's
// child; exited is closed when it ends, with its error in *err.
func startKVPDaemon() (exited <-chan struct{}, err *error, _ error) {
	cmd := exec.Command(kvpDaemon, "-n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := os.MkdirAll("/var/lib", 0o755); err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	var werr error
	go func() {
		werr = cmd.Wait()
		if out.Len() > 0 {
			werr = fmt.Errorf("%w: %q", werr, out.String())
		}
		close(done)
	}()
	return done, &werr, nil
}

// kvpCheck waits for hv_kvp's device, starts the daemon and waits for the
// pushed key in the external pool, polling until wait has passed.
func kvpCheck(e *env, wait time.Duration, sleep func(time.Duration),
	start func() (<-chan struct{}, *error, error)) (bool, string) {
	key, want, ok := strings.Cut(e.opts.params["vmm.kvp"], "=")
	if !ok || key == "" {
		return false, "no vmm.kvp=KEY=VALUE on the command line"
	}
	const step = 200 * time.Millisecond
	waited := time.Duration(0)
	for ; ; waited += step {
		if _, err := fs.Stat(e.root, kvpDevice); err == nil {
			break
		} else if waited >= wait {
			return false, fmt.Sprintf("no /%s: %v", kvpDevice, err)
		}
		sleep(step)
	}
	exited, exitErr, err := start()
	if err != nil {
		return false, fmt.Sprintf("start %s: %v", kvpDaemon, err)
	}
	var pool map[string]string
	for ; ; waited += step {
		select {
		case <-exited:
			return false, fmt.Sprintf("%s exited: %v", kvpDaemon, *exitErr)
		default:
		}
		data, err := fs.ReadFile(e.root, kvpPool0)
		if err == nil {
			pool = parseKVPPool(data)
			if got, ok := pool[key]; ok {
				if got != want {
					return false, fmt.Sprintf("pool 0: %s=%q, want %q", key, got, want)
				}
				return true, fmt.Sprintf("hv_kvp_daemon running; pool 0 (%d keys) has %s=%s", len(pool), key, got)
			}
		}
		if waited >= wait {
			return false, fmt.Sprintf("no %s in /%s after %v (pool %v, read error %v)", key, kvpPool0, wait, pool, err)
		}
		sleep(step)
	}
}

// parseKVPPool reads a daemon pool file; a short last record is ignored.
func parseKVPPool(data []byte) map[string]string {
	cstr := func(b []byte) string {
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		return string(b)
	}
	out := map[string]string{}
	for len(data) >= kvpKeySize+kvpValSize {
		out[cstr(data[:kvpKeySize])] = cstr(data[kvpKeySize : kvpKeySize+kvpValSize])
		data = data[kvpKeySize+kvpValSize:]
	}
	return out
}
