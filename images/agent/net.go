package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/pattern"
	"github.com/vmmdev/vmm/images/scenario"
)

// netSpec is vmm.net=ADDR/PREFIX,PEER:PORT,BYTES.
type netSpec struct {
	addr  netip.Prefix
	peer  netip.AddrPort
	bytes int64
}

func parseNetSpec(s string) (netSpec, error) {
	f := strings.Split(s, ",")
	if len(f) != 3 {
		return netSpec{}, fmt.Errorf("vmm.net %q: want ADDR/PREFIX,PEER:PORT,BYTES", s)
	}
	var n netSpec
	var err error
	if n.addr, err = netip.ParsePrefix(f[0]); err != nil || !n.addr.Addr().Is4() {
		return netSpec{}, fmt.Errorf("vmm.net %q: address %q", s, f[0])
	}
	if n.peer, err = netip.ParseAddrPort(f[1]); err != nil || !n.addr.Contains(n.peer.Addr()) {
		return netSpec{}, fmt.Errorf("vmm.net %q: peer %q must be in %s", s, f[1], n.addr.Masked())
	}
	if n.bytes, err = strconv.ParseInt(f[2], 10, 64); err != nil || n.bytes <= 0 || n.bytes > 1<<30 {
		return netSpec{}, fmt.Errorf("vmm.net %q: bytes %q", s, f[2])
	}
	return n, nil
}

// netInterface is the first interface other than lo.
func (e *env) netInterface() (string, error) {
	ents, err := fs.ReadDir(e.root, "sys/class/net")
	if err != nil {
		return "", fmt.Errorf("list interfaces: %w", err)
	}
	for _, ent := range ents {
		if ent.Name() != "lo" {
			return ent.Name(), nil
		}
	}
	return "", fmt.Errorf("no network interface besides lo")
}

// macWait bounds the wait for the interface vmm.net_mac names: a NIC on
// VMBus appears only after hv_vmbus's offers are probed, in work items
// that may finish after the agent starts.
const macWait = 30 * time.Second

// interfaceWithMAC polls sys/class/net until an interface has address mac.
func (e *env) interfaceWithMAC(mac string, wait time.Duration, sleep func(time.Duration)) (string, error) {
	const step = 200 * time.Millisecond
	for waited := time.Duration(0); ; waited += step {
		ents, err := fs.ReadDir(e.root, "sys/class/net")
		if err != nil {
			return "", fmt.Errorf("list interfaces: %w", err)
		}
		var seen []string
		for _, ent := range ents {
			a, _ := e.readTrimmed("sys/class/net/" + ent.Name() + "/address")
			if strings.EqualFold(a, mac) {
				return ent.Name(), nil
			}
			seen = append(seen, ent.Name()+"="+a)
		}
		if waited >= wait {
			return "", fmt.Errorf("no interface with MAC %s after %v (have %s)", mac, wait, strings.Join(seen, " "))
		}
		sleep(step)
	}
}

// netTimeout bounds the whole network check.
const netTimeout = 90 * time.Second

// checkNet configures the guest's interface, pings the peer on the host's
// tap, and moves vmm.net's byte count to and from it over TCP, each stream
// checked against its pattern.
func checkNet(e *env) (bool, string) {
	spec, err := parseNetSpec(e.opts.params["vmm.net"])
	if err != nil {
		return false, err.Error()
	}
	var ifname string
	if want := e.opts.params["vmm.net_mac"]; want != "" {
		// The NIC must come up with the address vmm was given.
		ifname, err = e.interfaceWithMAC(want, macWait, time.Sleep)
	} else {
		ifname, err = e.netInterface()
	}
	if err != nil {
		return false, err.Error()
	}
	mac, _ := e.readTrimmed("sys/class/net/" + ifname + "/address")
	if err := e.io.configureNet(ifname, spec.addr); err != nil {
		return false, fmt.Sprintf("configure %s: %v", ifname, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	rtt, err := e.io.ping(ctx, spec.peer.Addr())
	if err != nil {
		return false, fmt.Sprintf("%s %s: ping %s: %v", ifname, spec.addr, spec.peer.Addr(), err)
	}
	up, err := upload(ctx, e, spec)
	if err != nil {
		return false, fmt.Sprintf("upload to %s: %v", spec.peer, err)
	}
	down, err := download(ctx, e, spec)
	if err != nil {
		return false, fmt.Sprintf("download from %s: %v", spec.peer, err)
	}
	detail := fmt.Sprintf("%s mac=%s addr=%s ping=%v tx=%dB@%s rx=%dB@%s", ifname, mac, spec.addr,
		rtt.Round(time.Microsecond), spec.bytes, mbps(spec.bytes, up), spec.bytes, mbps(spec.bytes, down))
	if s := e.opts.params["vmm.net_flap"]; s != "" {
		flap, err := linkFlap(e, spec, ifname, s, time.Sleep)
		if err != nil {
			return false, detail + ": link flap: " + err.Error()
		}
		detail += " " + flap
	}
	return true, detail + " tcp_retrans=" + e.tcpStat("RetransSegs")
}

// maxFlapHold bounds vmm.net_flap, the milliseconds the peer holds its tap
// down.
const maxFlapHold = 10_000

// linkFlap is vmm.net_flap=MS: it asks the peer to take its tap down for
// MS milliseconds and up again, waits until the kernel has counted the
// interface's carrier going down and coming back (counters, so that an
// outage shorter than a poll is not missed), and moves the byte count
// each way over TCP again.
func linkFlap(e *env, spec netSpec, ifname, hold string, sleep func(time.Duration)) (string, error) {
	ms, err := strconv.ParseInt(hold, 10, 64)
	if err != nil || ms < 1 || ms > maxFlapHold {
		return "", fmt.Errorf("vmm.net_flap %q: want 1 to %d milliseconds", hold, maxFlapHold)
	}
	counts := func() (down, up int64, carrier string, err error) {
		dir := "sys/class/net/" + ifname + "/"
		var s [3]string
		for i, f := range []string{"carrier_down_count", "carrier_up_count", "carrier"} {
			if s[i], err = e.readTrimmed(dir + f); err != nil && i < 2 {
				return 0, 0, "", err
			}
		}
		down, err = strconv.ParseInt(s[0], 10, 64)
		if err == nil {
			up, err = strconv.ParseInt(s[1], 10, 64)
		}
		return down, up, s[2], err
	}
	down0, up0, _, err := counts()
	if err != nil {
		return "", fmt.Errorf("carrier counts: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	c, err := dialPeer(ctx, e, spec)
	if err != nil {
		return "", err
	}
	_, err = c.Write(request('L', ms))
	if err == nil {
		var reply string
		reply, err = bufio.NewReader(c).ReadString('\n')
		if err == nil && reply != scenario.PeerOK {
			err = fmt.Errorf("peer says %q", strings.TrimSpace(reply))
		}
	}
	c.Close()
	if err != nil {
		return "", fmt.Errorf("request: %w", err)
	}
	const step = 50 * time.Millisecond
	var back time.Duration
	for ; ; back += step {
		down, up, carrier, err := counts()
		if err != nil {
			return "", fmt.Errorf("carrier counts: %w", err)
		}
		if down > down0 && up > up0 && carrier == "1" {
			break
		}
		if back >= netTimeout {
			return "", fmt.Errorf("carrier down %d, up %d times, carrier %q %v after the request: want down and up again",
				down-down0, up-up0, carrier, netTimeout)
		}
		sleep(step)
	}
	// The transfers get their own bound: the wait may have used most of
	// the request's.
	tctx, tcancel := context.WithTimeout(context.Background(), netTimeout)
	defer tcancel()
	upT, err := upload(tctx, e, spec)
	if err != nil {
		return "", fmt.Errorf("upload after the flap: %w", err)
	}
	downT, err := download(tctx, e, spec)
	if err != nil {
		return "", fmt.Errorf("download after the flap: %w", err)
	}
	return fmt.Sprintf("flap=%dms carrier_back<=%v then tx=%dB@%s rx=%dB@%s", ms, back.Round(time.Millisecond),
		spec.bytes, mbps(spec.bytes, upT), spec.bytes, mbps(spec.bytes, downT)), nil
}

// tcpStat reads one counter of the Tcp lines of /proc/net/snmp ("?" if absent):
// retransmissions tell lost frames from slow ones.
func (e *env) tcpStat(name string) string {
	b, err := fs.ReadFile(e.root, "proc/net/snmp")
	if err != nil {
		return "?"
	}
	var keys []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if keys == nil {
			keys = f
			continue
		}
		for i, k := range keys {
			if k == name && i < len(f) {
				return f[i]
			}
		}
	}
	return "?"
}

func request(kind byte, n int64) []byte {
	b := []byte{kind, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint64(b[1:], uint64(n))
	return b
}

// dialPeer connects to the outer peer, bounded by ctx's deadline.
func dialPeer(ctx context.Context, e *env, spec netSpec) (net.Conn, error) {
	c, err := e.io.dial(ctx, spec.peer.String())
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	return c, nil
}

// upload sends the upload pattern and waits for the peer's verdict.
func upload(ctx context.Context, e *env, spec netSpec) (time.Duration, error) {
	c, err := dialPeer(ctx, e, spec)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write(request('U', spec.bytes)); err != nil {
		return 0, err
	}
	if _, err := io.CopyBuffer(c, pattern.NewReader(scenario.UploadSeed, spec.bytes), make([]byte, 256<<10)); err != nil {
		return 0, err
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("reply: %w", err)
	}
	if reply != scenario.PeerOK {
		return 0, fmt.Errorf("peer says %q: the stream arrived corrupted", strings.TrimSpace(reply))
	}
	return time.Since(start), nil
}

// timedUpload is upload for the benchmark: the bytes are made before the
// clock starts, the peer makes the ones it expects before saying ready
// (scenario.ReceiveTimed), and the clock runs from the first byte sent to
// the peer's verdict, so it times the network path rather than the pattern
// generators at both ends.
func timedUpload(ctx context.Context, e *env, spec netSpec) (time.Duration, error) {
	if spec.bytes > scenario.MaxTimed {
		return 0, fmt.Errorf("timed upload of %d bytes: at most %d", spec.bytes, scenario.MaxTimed)
	}
	data := make([]byte, spec.bytes)
	pattern.Fill(data, scenario.UploadSeed, 0)
	c, err := dialPeer(ctx, e, spec)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Write(request('T', spec.bytes)); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	ready := make([]byte, len(scenario.PeerReady))
	if _, err := io.ReadFull(r, ready); err != nil || string(ready) != scenario.PeerReady {
		return 0, fmt.Errorf("peer not ready (%q): %v", ready, err)
	}
	start := time.Now()
	if _, err := c.Write(data); err != nil {
		return 0, err
	}
	reply, err := r.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("reply: %w", err)
	}
	if reply != scenario.PeerOK {
		return 0, fmt.Errorf("peer says %q: the stream arrived corrupted", strings.TrimSpace(reply))
	}
	return time.Since(start), nil
}

// timedDownload is download for the benchmark: the peer makes the bytes
// before saying ready (scenario.SendTimed), and the clock runs from the
// agent's go byte until the last byte is in memory; the pattern is checked
// afterwards.
func timedDownload(ctx context.Context, e *env, spec netSpec) (time.Duration, error) {
	if spec.bytes > scenario.MaxTimed {
		return 0, fmt.Errorf("timed download of %d bytes: at most %d", spec.bytes, scenario.MaxTimed)
	}
	data := make([]byte, spec.bytes)
	c, err := dialPeer(ctx, e, spec)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Write(request('R', spec.bytes)); err != nil {
		return 0, err
	}
	ready := make([]byte, len(scenario.PeerReady))
	if _, err := io.ReadFull(c, ready); err != nil || string(ready) != scenario.PeerReady {
		return 0, fmt.Errorf("peer not ready (%q): %v", ready, err)
	}
	start := time.Now()
	if _, err := c.Write([]byte{'G'}); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, data); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if bad := pattern.Mismatch(data, scenario.DownloadSeed, 0); bad >= 0 {
		return 0, fmt.Errorf("byte %d differs from the pattern", bad)
	}
	return d, nil
}

// download receives the download pattern and checks it.
func download(ctx context.Context, e *env, spec netSpec) (time.Duration, error) {
	c, err := dialPeer(ctx, e, spec)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write(request('D', spec.bytes)); err != nil {
		return 0, err
	}
	chk := pattern.NewChecker(scenario.DownloadSeed)
	if _, err := io.CopyBuffer(chk, c, make([]byte, 256<<10)); err != nil {
		return 0, err
	}
	n, bad := chk.Result()
	switch {
	case n != spec.bytes:
		return 0, fmt.Errorf("got %d bytes, want %d", n, spec.bytes)
	case bad >= 0:
		return 0, fmt.Errorf("byte %d differs from the pattern", bad)
	}
	return time.Since(start), nil
}
