package testserver

import (
	"fmt"
	"net"
	"testing"
)

// ServerNamed is like Server but the server is called host:PORT, and it
// keeps its federation address across Restart, so that other servers
// reach it again under the same name.
func (f *Federation) ServerNamed(host string) Option {
	f.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	addr := ln.Addr().String()
	certFile, keyFile := f.Issue(host)
	port := ln.Addr().(*net.TCPAddr).Port
	name := fmt.Sprintf("%s:%d", host, port)
	first := true
	return func(s *setup) {
		if first {
			first = false
		} else if ln, err = net.Listen("tcp", addr); err != nil {
			f.t.Fatalf("listen again on %s: %v", addr, err)
		}
		f.t.Cleanup(func() { ln.Close() })
		s.cfg.ServerName = name
		s.cfg.Listen.Federation = addr
		s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile = certFile, keyFile
		s.cfg.Federation.Enabled = true
		s.cfg.Federation.TrustedCAFile = f.CAFile
		s.cfg.Federation.DenyNetworks = []string{}
		s.fedLn = ln
		s.dns = TestDNS{}
		s.cut = func(to string) bool { return f.isCut(host, to) }
		s.fed = f
	}
}

// Cut makes the servers named a and b (hosts, without ports) unreachable
// from each other until Heal, as in a network partition.
func (f *Federation) Cut(a, b string) {
	f.cutMu.Lock()
	defer f.cutMu.Unlock()
	if f.cuts == nil {
		f.cuts = map[[2]string]bool{}
	}
	f.cuts[[2]string{a, b}], f.cuts[[2]string{b, a}] = true, true
}

// Heal ends every partition made by Cut.
func (f *Federation) Heal() {
	f.cutMu.Lock()
	defer f.cutMu.Unlock()
	f.cuts = nil
}

func (f *Federation) isCut(a, b string) bool {
	f.cutMu.Lock()
	defer f.cutMu.Unlock()
	return f.cuts[[2]string{a, b}]
}

// Restart stops the server (if it runs) and starts it again on the same
// data, database, client address and federation address.
func (s *Server) Restart(t testing.TB) *Server {
	t.Helper()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	dir, addr := s.Config.DataDir, s.Config.Listen.Client
	opts := append(append([]Option(nil), s.opts...), func(su *setup) {
		su.cfg.DataDir = dir
		su.clientAddr = addr
	})
	return New(t, opts...)
}
