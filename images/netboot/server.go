package netboot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Server answers DHCP on one interface and serves one file over HTTP on
// the lease's server address, port 80.
type Server struct {
	lease  Lease
	path   string
	body   []byte
	udp    net.PacketConn
	http   *http.Server
	ln     net.Listener
	wg     sync.WaitGroup
	once   sync.Once
	mu     sync.Mutex
	acks   int
	served int
	issues []string
}

// Start serves lease on interface ifname and body at path (which the
// lease's Bootfile names) until Stop.
func Start(ifname string, lease Lease, path string, body []byte) (*Server, error) {
	if err := lease.Check(); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = errors.Join(
				unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
		})
		return errors.Join(err, serr)
	}}
	udp, err := lc.ListenPacket(context.Background(), "udp4", ":67")
	if err != nil {
		return nil, fmt.Errorf("netboot: DHCP on %s: %w", ifname, err)
	}
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(lease.Server, 80).String())
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("netboot: HTTP: %w", err)
	}
	s := &Server{lease: lease, path: path, body: body, udp: udp, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		s.served++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(2)
	go s.serveDHCP()
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.note("HTTP: " + err.Error())
		}
	}()
	return s, nil
}

func (s *Server) serveDHCP() {
	defer s.wg.Done()
	buf := make([]byte, maxMessage+1)
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: 68}
	for {
		n, _, err := s.udp.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.note("DHCP read: " + err.Error())
			}
			return
		}
		m, err := Parse(buf[:n])
		if err != nil {
			continue // not for us, or garbage: DHCP servers stay silent
		}
		r := s.lease.Answer(m)
		if r == nil {
			continue
		}
		if _, err := s.udp.WriteTo(r, bcast); err != nil {
			s.note("DHCP reply: " + err.Error())
			continue
		}
		if m.Type == Request && (!m.RequestedIP.IsValid() || m.RequestedIP == s.lease.Client) {
			s.mu.Lock()
			s.acks++
			s.mu.Unlock()
		}
	}
}

func (s *Server) note(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issues = append(s.issues, "netboot: "+msg)
}

// Stop closes both servers and waits for them.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.udp.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.http.Shutdown(ctx)
		s.wg.Wait()
	})
}

// Problems is what went wrong, including a client that never got its
// lease or never fetched the file.
func (s *Server) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := append([]string(nil), s.issues...)
	if s.acks == 0 {
		p = append(p, "netboot: no DHCP REQUEST answered")
	}
	if s.served == 0 {
		p = append(p, "netboot: "+s.path+" never fetched over HTTP")
	}
	return p
}
