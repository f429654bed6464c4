package federation

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"luxchat/internal/matrix/signing"
)

// maxResponseBytes bounds what we read from another server.
const maxResponseBytes = 16 << 20

// RemoteError is a non-2xx answer of another server: the one error type
// of every request this package makes. Callers look for it with
// errors.As.
type RemoteError struct {
	Server string
	Status int
	Body   []byte
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s answered %d: %.200s", e.Server, e.Status, e.Body)
}

// MatrixError returns the errcode and error of a standard Matrix error
// body; code is empty when the body is not one.
func (e *RemoteError) MatrixError() (code, message string) {
	var body struct {
		ErrCode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(e.Body, &body) != nil {
		return "", ""
	}
	return body.ErrCode, body.Error
}

// Client sends requests to other servers: it resolves server names, dials
// only addresses outside the denied networks, verifies their certificate
// against the system roots plus the configured CAs, and signs requests
// with the X-Matrix header. It is safe for concurrent use.
type Client struct {
	ServerName string
	Key        signing.KeyPair
	Policy     *Policy
	Resolver   *Resolver
	DNS        DNS

	roots  *x509.CertPool
	http   *http.Client
	dialer net.Dialer
	cut    atomic.Pointer[func(host string) bool] // see SetPartition
}

// LoadRoots returns the system roots plus the PEM bundle at caFile. Without
// a bundle it returns nil, which makes TLS use the system roots, loaded on
// first use: parsing them at start would cost every server memory, even one
// that never federates.
func LoadRoots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read federation.trusted_ca_file: %w", err)
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("federation.trusted_ca_file %s holds no PEM certificate", caFile)
	}
	return roots, nil
}

// NewClient builds a client. dns resolves SRV and address records
// (net.DefaultResolver in production); roots verify server certificates.
func NewClient(serverName string, key signing.KeyPair, policy *Policy, dns DNS, roots *x509.CertPool) *Client {
	c := &Client{ServerName: serverName, Key: key, Policy: policy, DNS: dns, roots: roots}
	c.dialer = net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	// Well-known lookups are plain HTTPS to the hostname (port 443), with
	// the same roots and network policy.
	wk := &http.Client{Timeout: 30 * time.Second, CheckRedirect: httpsRedirectsOnly, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return c.dial(ctx, host, port)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}}
	c.Resolver = NewResolver(dns, wk)
	c.http = &http.Client{Timeout: 60 * time.Second, Transport: partitionable{c, &http.Transport{
		DialTLSContext:      c.dialTLS,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c
}

// SetPartition makes every request to a host for which cut returns true
// fail as an unreachable network would, pooled connections included (a
// DNS that stops resolving would not stop those). Tests partition servers
// with it; nil ends the partition.
func (c *Client) SetPartition(cut func(host string) bool) { c.cut.Store(&cut) }

// partitionable is the federation transport, refusing the hosts that
// SetPartition cuts off.
type partitionable struct {
	c    *Client
	next http.RoundTripper
}

func (p partitionable) RoundTrip(req *http.Request) (*http.Response, error) {
	if cut := p.c.cut.Load(); cut != nil && *cut != nil && (*cut)(req.URL.Hostname()) {
		return nil, fmt.Errorf("dial %s: network unreachable (partition)", req.URL.Host)
	}
	return p.next.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections through.
func (p partitionable) CloseIdleConnections() {
	if n, ok := p.next.(interface{ CloseIdleConnections() }); ok {
		n.CloseIdleConnections()
	}
}

// CloseIdleConnections closes the pooled connections to other servers
// that are not in use. Tests call it when a server in the same process
// stops: a connection dialled but never used holds the stopping server's
// graceful shutdown for 5 s (http.Server.Shutdown), where a process that
// exits would have closed it.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// httpsRedirectsOnly follows at most 10 redirects (no loops), all to
// https URLs.
func httpsRedirectsOnly(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("too many redirects")
	}
	if req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to non-https %s", req.URL.Redacted())
	}
	return nil
}

type destKey struct{}

// dialTLS connects to the destination carried by the request context and
// verifies its certificate for Destination.TLSName. Connections are pooled
// per TLS name and port (the request URL's host), so a pooled connection
// is always one verified for the name the request needs.
func (c *Client) dialTLS(ctx context.Context, _, _ string) (net.Conn, error) {
	d, ok := ctx.Value(destKey{}).(Destination)
	if !ok {
		return nil, errors.New("federation: dial without a destination")
	}
	conn, err := c.dial(ctx, d.Host, d.Port)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: c.roots, ServerName: d.TLSName, MinVersion: tls.VersionTLS12}
	tc := tls.Client(conn, cfg) // an IP ServerName sends no SNI and is checked against IP SANs
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tls with %s (%s): %w", d.TLSName, d.Addr(), err)
	}
	return tc, nil
}

// dial resolves host and connects to the first address outside the
// denied networks that answers.
func (c *Client) dial(ctx context.Context, host, port string) (net.Conn, error) {
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		addrs, err = c.DNS.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	var errs []error
	for _, a := range addrs {
		if c.Policy.DeniedAddr(a) {
			errs = append(errs, fmt.Errorf("%w: %s (%s)", ErrDeniedNetwork, a, host))
			continue
		}
		conn, err := c.dialer.DialContext(ctx, "tcp", net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("resolve %s: no address", host)
	}
	return nil, errors.Join(errs...)
}

// Do sends a signed request to destination and decodes a 2xx JSON answer
// into out (when non-nil). uri is the escaped path with query, starting
// at /_matrix; body is encoded as JSON when non-nil.
func (c *Client) Do(ctx context.Context, destination, method, uri string, body, out any) error {
	return c.do(ctx, destination, method, uri, body, out, true)
}

// DoUnsigned is Do without the Authorization header, for the key
// endpoints, which need none.
func (c *Client) DoUnsigned(ctx context.Context, destination, method, uri string, body, out any) error {
	return c.do(ctx, destination, method, uri, body, out, false)
}

func (c *Client) do(ctx context.Context, destination, method, uri string, body, out any, sign bool) error {
	if err := c.Policy.Allowed(destination); err != nil {
		return err
	}
	var content []byte
	if body != nil {
		var err error
		if content, err = json.Marshal(body); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}
	var auth string
	if sign {
		x, err := signing.SignRequest(c.Key, c.ServerName, destination, method, uri, content)
		if err != nil {
			return fmt.Errorf("sign request: %w", err)
		}
		auth = x.String()
	}
	dests, err := c.Resolver.Resolve(ctx, destination)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", destination, err)
	}
	var errs []error
	for _, d := range dests {
		data, err := c.send(ctx, d, method, uri, content, auth)
		if err != nil {
			var re *RemoteError
			if errors.As(err, &re) {
				re.Server = destination
				return re
			}
			errs = append(errs, err)
			continue
		}
		if out != nil {
			if err := json.Unmarshal(data, out); err != nil {
				return fmt.Errorf("decode answer of %s: %w", destination, err)
			}
		}
		return nil
	}
	return fmt.Errorf("request to %s: %w", destination, errors.Join(errs...))
}

func (c *Client) send(ctx context.Context, d Destination, method, uri string, content []byte, auth string) ([]byte, error) {
	u, err := url.Parse("https://" + net.JoinHostPort(d.TLSName, d.Port) + uri)
	if err != nil {
		return nil, fmt.Errorf("bad uri %q: %w", uri, err)
	}
	var rd io.Reader
	if content != nil {
		rd = bytes.NewReader(content)
	}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, destKey{}, d), method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Host = d.HostHeader
	if content != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if len(data) > maxResponseBytes {
		return nil, errors.New("answer too large")
	}
	if resp.StatusCode/100 != 2 {
		return nil, &RemoteError{Status: resp.StatusCode, Body: data}
	}
	return data, nil
}

// SetDNS replaces the resolver of addresses and SRV records; call it
// before the client is used (tests point *.test names at loopback).
func (c *Client) SetDNS(dns DNS) {
	c.DNS = dns
	c.Resolver.DNS = dns
}
