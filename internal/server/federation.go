package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"luxchat/internal/federation"
	"luxchat/internal/httpapi/fedapi"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/id"
	"luxchat/internal/media"
)

// newFederation builds the federation client, its policy and the key
// ring when federation is enabled.
func (s *Server) newFederation() error {
	cfg := s.Config
	if !cfg.Federation.Enabled {
		return nil
	}
	policy, err := federation.NewPolicy(cfg.ServerName, cfg.Federation.AllowedServers, cfg.Federation.DenyNetworks)
	if err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	roots, err := federation.LoadRoots(cfg.Federation.TrustedCAFile)
	if err != nil {
		return err
	}
	old, err := federation.LoadOldKeys(filepath.Join(cfg.DataDir, "old_signing.keys"))
	if err != nil {
		return fmt.Errorf("old signing keys: %w", err)
	}
	s.policy = policy
	s.Federation = federation.NewClient(cfg.ServerName, s.Key, policy, net.DefaultResolver, roots)
	s.Keys = federation.NewKeys(cfg.ServerName, s.Key, old, s.Store, s.Federation)
	return nil
}

// setupFederationListener builds the federation listener's handler (when
// federation is enabled), and adds /.well-known/matrix/server to the
// client router.
func (s *Server) setupFederationListener(clientRouter *httputil.Router) error {
	cfg := s.Config
	fedapi.RegisterWellKnown(clientRouter, cfg)
	if s.Federation == nil || cfg.Listen.Federation == "" {
		return nil
	}
	var cert tls.Certificate
	var err error
	if cfg.TLS.CACertFile != "" {
		cert, err = federation.IssueCertificate(cfg.TLS.CACertFile, cfg.TLS.CAKeyFile, strings.Trim(id.ServerName(cfg.ServerName).Hostname(), "[]"))
	} else {
		cert, err = tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	}
	if err != nil {
		return fmt.Errorf("federation tls certificate: %w", err)
	}
	s.fedTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	rt := httputil.NewRouter(nil, cfg.Limits.MaxRequestBytes, s.Log)
	guardRouter(rt, cfg)
	api := &fedapi.API{Config: cfg, Keys: s.Keys, Policy: s.policy, Accounts: s.Accounts, Media: s.Media, Directory: s.Directory,
		Rooms: s.Rooms, RoomFed: s.RoomFed, Exchange: s.Exchange, Contacted: s.Outbox.Contacted, E2EE: s.E2EE, DeviceStreamID: s.Exchange.DeviceListStreamID}
	rt.Servers = api // X-Matrix request authentication
	fedapi.Register(rt, api)
	s.fedHandler = rt
	return nil
}

// FederationHandler is the Server-Server API handler, nil when there is no
// federation listener.
func (s *Server) FederationHandler() http.Handler { return s.fedHandler }

// WrapFederationHandler puts w around the federation listener's handler
// (tests observe inbound requests so). Call before serving.
func (s *Server) WrapFederationHandler(w func(http.Handler) http.Handler) {
	if s.fedHandler != nil {
		s.fedHandler = w(s.fedHandler)
	}
}

// serveFederation starts the HTTPS federation server on ln (or on
// listen.federation when ln is nil); it returns nil when there is none.
func (s *Server) serveFederation(ln net.Listener, errc chan<- error) (*http.Server, error) {
	if s.fedHandler == nil {
		if ln != nil {
			ln.Close()
		}
		return nil, nil
	}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.Config.Listen.Federation); err != nil {
			return nil, fmt.Errorf("listen federation: %w", err)
		}
	}
	srv := &http.Server{Handler: s.fedHandler, TLSConfig: s.fedTLS, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { errc <- srv.Serve(tls.NewListener(ln, s.fedTLS)) }()
	s.Log.Info("federation listening", "address", ln.Addr().String())
	return srv, nil
}

// fetchRemoteMedia is the media service's Fetcher: a federation download,
// its errors told in the media service's terms.
func (s *Server) fetchRemoteMedia(ctx context.Context, origin, mediaID string, maxBytes int64) (*media.RemoteFile, error) {
	m, err := s.Federation.DownloadMedia(ctx, origin, mediaID, nil, maxBytes)
	if err != nil {
		return nil, mediaFetchError(err)
	}
	return &media.RemoteFile{ContentType: m.ContentType, FileName: m.FileName, Body: mediaBody{m.Body}}, nil
}

func mediaFetchError(err error) error {
	var re *federation.RemoteError
	switch {
	case errors.As(err, &re) && re.Status == http.StatusNotFound, errors.Is(err, federation.ErrNotAllowed):
		return fmt.Errorf("%w: %w", media.ErrRemoteNotFound, err)
	case errors.Is(err, federation.ErrMediaTooLarge):
		return fmt.Errorf("%w: %w", media.ErrRemoteTooLarge, err)
	}
	return err
}

type mediaBody struct{ io.ReadCloser }

func (b mediaBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = mediaFetchError(err)
	}
	return n, err
}
