package sso

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"luxchat/internal/config"
)

// provider is one configured upstream provider. Discovery runs on first
// use and again after a failure, so that a provider down at start does not
// keep the server from starting nor from using it once it is back.
type provider struct {
	cfg      config.OIDCProvider
	secret   string
	redirect string
	client   *http.Client
	mapping  *mapping

	mu       sync.Mutex
	op       *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    *oauth2.Config
	// promptCreate: the discovery document lists create in
	// prompt_values_supported (Initiating User Registration via OpenID
	// Connect 1.0), so a registration hint may be passed on.
	promptCreate bool
	// After a failed discovery, requests fail at once until retryAt, so
	// that a burst of logins while the provider is down does not queue
	// one timeout after another behind mu.
	lastErr error
	retryAt time.Time
}

// discoveryRetry is how long a failed discovery is remembered.
const discoveryRetry = 5 * time.Second

func newProvider(pc config.OIDCProvider, redirect string) (*provider, error) {
	secret, err := pc.Secret()
	if err != nil {
		return nil, err
	}
	issuer, err := url.Parse(pc.Issuer)
	if err != nil {
		return nil, fmt.Errorf("oidc provider %s: issuer: %w", pc.ID, err)
	}
	m, err := newMapping(pc)
	if err != nil {
		return nil, fmt.Errorf("oidc provider %s: %w", pc.ID, err)
	}
	return &provider{cfg: pc, secret: secret, redirect: redirect, client: upstreamClient(issuer, pc.RequestTimeout()), mapping: m}, nil
}

// discovered returns the provider's metadata, verifier and OAuth client
// configuration, fetching the discovery document when not done yet. The
// context bounds the fetch.
func (p *provider) discovered(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, *oauth2.Config, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.op != nil {
		return p.op, p.verifier, p.oauth, nil
	}
	if p.lastErr != nil && time.Now().Before(p.retryAt) {
		return nil, nil, nil, p.lastErr
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, p.client), p.cfg.RequestTimeout())
	defer cancel()
	op, err := oidc.NewProvider(ctx, p.cfg.Issuer)
	if err != nil {
		p.lastErr, p.retryAt = fmt.Errorf("discover %s: %w", p.cfg.Issuer, err), time.Now().Add(discoveryRetry)
		return nil, nil, nil, p.lastErr
	}
	// The key set outlives this request: it refetches the JWKS when a
	// token names a key it has not seen (the provider rotated its keys),
	// with the bounded client.
	keysCtx := oidc.ClientContext(context.Background(), p.client)
	var endpoints struct {
		JWKS   string   `json:"jwks_uri"`
		Prompt []string `json:"prompt_values_supported"`
	}
	if err := op.Claims(&endpoints); err != nil || endpoints.JWKS == "" {
		return nil, nil, nil, fmt.Errorf("discover %s: no jwks_uri", p.cfg.Issuer)
	}
	verifier := oidc.NewVerifier(p.cfg.Issuer, oidc.NewRemoteKeySet(keysCtx, endpoints.JWKS), &oidc.Config{ClientID: p.cfg.ClientID})
	scopes := []string{oidc.ScopeOpenID}
	if p.cfg.Scopes == nil {
		scopes = append(scopes, "profile", "email")
	}
	for _, sc := range p.cfg.Scopes {
		if sc != oidc.ScopeOpenID {
			scopes = append(scopes, sc)
		}
	}
	p.op, p.verifier = op, verifier
	p.promptCreate = slices.Contains(endpoints.Prompt, "create")
	p.oauth = &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.secret, Endpoint: op.Endpoint(), RedirectURL: p.redirect, Scopes: scopes}
	return p.op, p.verifier, p.oauth, nil
}

// upstreamClient is the HTTP client of one provider: every request
// bounded by timeout; redirects followed only within the issuer's own
// scheme and host; connections to private, loopback and link-local
// addresses refused except to the issuer's host, which the operator chose.
func upstreamClient(issuer *url.URL, timeout time.Duration) *http.Client {
	deny := make([]netip.Prefix, 0, len(config.DefaultDenyNetworks))
	for _, n := range config.DefaultDenyNetworks {
		deny = append(deny, netip.MustParsePrefix(n))
	}
	dialer := &net.Dialer{Timeout: timeout}
	issuerHost := issuer.Hostname()
	tr := &http.Transport{
		Proxy:                 nil,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       time.Minute,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if strings.EqualFold(host, issuerHost) {
				return dialer.DialContext(ctx, network, addr)
			}
			ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			if err != nil {
				return nil, err
			}
			for _, ip := range ips {
				ip = ip.Unmap()
				if denied(deny, ip) {
					continue
				}
				return dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
			}
			return nil, fmt.Errorf("%s is on a private network and is not the issuer's host", host)
		},
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 || req.URL.Scheme != issuer.Scheme || !strings.EqualFold(req.URL.Host, issuer.Host) {
				return errors.New("redirect away from the issuer refused")
			}
			return nil
		},
	}
}

func denied(deny []netip.Prefix, ip netip.Addr) bool {
	for _, p := range deny {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// supportsPromptCreate reports whether the provider's discovery document
// lists create in prompt_values_supported. Call after discovered.
func (p *provider) supportsPromptCreate() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.promptCreate
}
