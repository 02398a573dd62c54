// Package linkwatch follows a host network interface's link state (its
// administrative IFF_UP and its carrier) through rtnetlink, so that a
// guest NIC on a tap can show what `ip link set TAP down` or a lost
// carrier did to the host side.
//
// The socket is opened, bound to the link multicast group and asked for
// the interface's current state before the caller installs its seccomp
// filter; afterwards only read, write and close are used on it.
package linkwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Watcher reports one interface's link state changes.
type Watcher struct {
	f     *os.File
	index int32
	set   func(up bool)
	log   *slog.Logger
	wg    sync.WaitGroup
	once  sync.Once
}

// Watch calls set with name's link state (up: IFF_UP and carrier) now and
// whenever it changes, from its own goroutine, until Close.
func Watch(name string, set func(up bool), log *slog.Logger) (*Watcher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("linkwatch %s: %w", name, err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("linkwatch %s: netlink socket: %w", name, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("linkwatch %s: bind: %w", name, err)
	}
	w := &Watcher{f: os.NewFile(uintptr(fd), "rtnetlink:"+name), index: int32(ifc.Index), set: set, log: log}
	if err := w.request(); err != nil {
		w.f.Close()
		return nil, fmt.Errorf("linkwatch %s: %w", name, err)
	}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// Close stops the watcher; set is not called after it returns.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		err = w.f.Close()
		w.wg.Wait()
	})
	return err
}

// request asks the kernel for the interface's state: the answer is an
// RTM_NEWLINK like the announcements.
func (w *Watcher) request() error {
	if _, err := w.f.Write(getLinkRequest(w.index)); err != nil {
		return fmt.Errorf("RTM_GETLINK: %w", err)
	}
	return nil
}

func (w *Watcher) run() {
	defer w.wg.Done()
	buf := make([]byte, 1<<16)
	known, last := false, false
	for {
		n, err := w.f.Read(buf)
		if errors.Is(err, unix.ENOBUFS) {
			// Announcements were lost: ask again.
			if err := w.request(); err != nil {
				w.log.Warn("linkwatch: link state no longer followed", "err", err)
				return
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.log.Warn("linkwatch: link state no longer followed", "err", err)
			}
			return
		}
		up, ok := LinkState(buf[:n], w.index)
		if !ok || known && up == last {
			continue
		}
		known, last = true, up
		w.set(up)
	}
}

// getLinkRequest is RTM_GETLINK for one interface index.
func getLinkRequest(index int32) []byte {
	b := make([]byte, unix.SizeofNlMsghdr+unix.SizeofIfInfomsg)
	le := binary.NativeEndian
	le.PutUint32(b[0:], uint32(len(b)))
	le.PutUint16(b[4:], unix.RTM_GETLINK)
	le.PutUint16(b[6:], unix.NLM_F_REQUEST)
	le.PutUint32(b[8:], 1)
	b[16] = unix.AF_UNSPEC
	le.PutUint32(b[20:], uint32(index))
	return b
}

// LinkState reads the netlink messages in buf and returns the last state
// they give interface index: up when it is IFF_UP with carrier
// (IFF_LOWER_UP), down when it is not or was deleted. ok is false when no
// message names the interface. Malformed messages end the walk.
func LinkState(buf []byte, index int32) (up, ok bool) {
	ne := binary.NativeEndian
	for len(buf) >= unix.SizeofNlMsghdr {
		n := int(ne.Uint32(buf))
		if n < unix.SizeofNlMsghdr || n > len(buf) {
			return up, ok
		}
		typ := ne.Uint16(buf[4:])
		body := buf[unix.SizeofNlMsghdr:n]
		if (typ == unix.RTM_NEWLINK || typ == unix.RTM_DELLINK) && len(body) >= unix.SizeofIfInfomsg &&
			int32(ne.Uint32(body[4:])) == index {
			flags := ne.Uint32(body[8:])
			up, ok = typ == unix.RTM_NEWLINK && flags&unix.IFF_UP != 0 && flags&unix.IFF_LOWER_UP != 0, true
		}
		// Messages are padded to 4 bytes (NLMSG_ALIGN).
		n = (n + 3) &^ 3
		if n >= len(buf) {
			break
		}
		buf = buf[n:]
	}
	return up, ok
}
