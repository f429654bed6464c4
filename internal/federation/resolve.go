package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"luxchat/internal/matrix/id"
)

// DNS is the part of *net.Resolver that server discovery uses; tests
// pass a fake.
type DNS interface {
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Destination is one place to send requests for a server name: the host
// to look up (or IP literal) and port to connect to, the Host header, and
// the name the certificate must be valid for (sent as SNI unless it is an
// IP address).
type Destination struct {
	Host       string // DNS name or IP, without brackets or port
	Port       string
	HostHeader string
	TLSName    string
}

// Addr is Host:Port for dialing.
func (d Destination) Addr() string { return net.JoinHostPort(d.Host, d.Port) }

// Well-known cache bounds (spec: default 24 h, at most 48 h; errors up to
// an hour with exponential back-off).
const (
	wellKnownDefaultTTL = 24 * time.Hour
	wellKnownMaxTTL     = 48 * time.Hour
	wellKnownErrorFirst = time.Minute
	wellKnownErrorMax   = time.Hour
	wellKnownMaxBody    = 64 << 10
)

// Resolver implements the spec's "Resolving server names". It caches
// /.well-known/matrix/server answers per hostname; it is safe for
// concurrent use (mu guards the cache only, never held across I/O).
type Resolver struct {
	DNS DNS
	// WellKnown fetches https://<hostname>/.well-known/matrix/server; it
	// must verify TLS and should refuse denied networks.
	WellKnown *http.Client
	Now       func() time.Time

	mu    sync.Mutex
	cache map[string]wellKnownEntry
}

type wellKnownEntry struct {
	server   string // delegated server name; "" after an error
	expires  time.Time
	failures int // consecutive errors, for the back-off
}

// NewResolver returns a resolver using dns and the well-known client.
func NewResolver(dns DNS, wellKnown *http.Client) *Resolver {
	return &Resolver{DNS: dns, WellKnown: wellKnown, Now: time.Now, cache: map[string]wellKnownEntry{}}
}

// Resolve returns the destinations of a server name, best first.
func (r *Resolver) Resolve(ctx context.Context, serverName string) ([]Destination, error) {
	sn, err := id.ParseServerName(serverName)
	if err != nil {
		return nil, err
	}
	host, port := sn.Hostname(), sn.Port()
	// 1. IP literal: that address, given port or 8448.
	if sn.IsIPLiteral() {
		return []Destination{{Host: host, Port: cmpPort(port), HostHeader: serverName, TLSName: host}}, nil
	}
	// 2. Explicit port: resolve the hostname, Host is the server name.
	if port != "" {
		return []Destination{{Host: host, Port: port, HostHeader: serverName, TLSName: host}}, nil
	}
	// 3. /.well-known/matrix/server delegation.
	if delegated := r.wellKnown(ctx, host); delegated != "" {
		d := id.ServerName(delegated)
		dh, dp := d.Hostname(), d.Port()
		switch {
		case d.IsIPLiteral(): // 3.1
			return []Destination{{Host: dh, Port: cmpPort(dp), HostHeader: delegated, TLSName: dh}}, nil
		case dp != "": // 3.2
			return []Destination{{Host: dh, Port: dp, HostHeader: delegated, TLSName: dh}}, nil
		}
		if dests := r.srv(ctx, dh); len(dests) > 0 { // 3.3, 3.4
			return dests, nil
		}
		return []Destination{{Host: dh, Port: "8448", HostHeader: dh, TLSName: dh}}, nil // 3.5
	}
	// 4, 5. SRV records of the hostname.
	if dests := r.srv(ctx, host); len(dests) > 0 {
		return dests, nil
	}
	// 6. The hostname on port 8448.
	return []Destination{{Host: host, Port: "8448", HostHeader: host, TLSName: host}}, nil
}

func cmpPort(p string) string {
	if p == "" {
		return "8448"
	}
	return p
}

// srv looks up _matrix-fed._tcp.<name>, then the deprecated
// _matrix._tcp.<name>. The targets keep name as Host header and
// certificate name. A lone "." target means "no service" (RFC 2782).
func (r *Resolver) srv(ctx context.Context, name string) []Destination {
	for _, service := range []string{"matrix-fed", "matrix"} {
		_, records, err := r.DNS.LookupSRV(ctx, service, "tcp", name)
		if err != nil || len(records) == 0 {
			continue
		}
		var out []Destination
		for _, rec := range records {
			target := strings.TrimSuffix(rec.Target, ".")
			if target == "" {
				continue
			}
			out = append(out, Destination{Host: target, Port: strconv.Itoa(int(rec.Port)), HostHeader: name, TLSName: name})
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// wellKnown returns the delegated server name of hostname, or "" when the
// well-known lookup fails (cached as the spec recommends).
func (r *Resolver) wellKnown(ctx context.Context, hostname string) string {
	now := r.Now()
	r.mu.Lock()
	e, ok := r.cache[hostname]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.server
	}
	server, ttl, err := r.fetchWellKnown(ctx, hostname, now)
	if err != nil {
		e = wellKnownEntry{failures: e.failures + 1}
		backoff := wellKnownErrorFirst << min(e.failures-1, 10)
		e.expires = now.Add(min(backoff, wellKnownErrorMax))
	} else {
		e = wellKnownEntry{server: server, expires: now.Add(ttl)}
	}
	r.mu.Lock()
	r.cache[hostname] = e
	r.mu.Unlock()
	return e.server
}

var errWellKnown = errors.New("invalid well-known response")

func (r *Resolver) fetchWellKnown(ctx context.Context, hostname string, now time.Time) (string, time.Duration, error) {
	if r.WellKnown == nil {
		return "", 0, errWellKnown
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+hostname+"/.well-known/matrix/server", nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := r.WellKnown.Do(req) // follows redirects, at most 10: no loops
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("%w: status %d", errWellKnown, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, wellKnownMaxBody+1))
	if err != nil || len(body) > wellKnownMaxBody {
		return "", 0, fmt.Errorf("%w: body unreadable or too large", errWellKnown)
	}
	var doc struct {
		Server *string `json:"m.server"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Server == nil {
		return "", 0, fmt.Errorf("%w: no m.server", errWellKnown)
	}
	if err := id.ValidServerName(*doc.Server); err != nil {
		return "", 0, fmt.Errorf("%w: %w", errWellKnown, err)
	}
	return *doc.Server, cacheTTL(resp.Header, now), nil
}

// cacheTTL reads Cache-Control max-age (no-store/no-cache: 0) or Expires,
// defaulting to 24 hours and capped at 48.
func cacheTTL(h http.Header, now time.Time) time.Duration {
	ttl, found := wellKnownDefaultTTL, false
	for _, directive := range strings.Split(h.Get("Cache-Control"), ",") {
		directive = strings.ToLower(strings.TrimSpace(directive))
		if directive == "no-store" || directive == "no-cache" {
			return 0
		}
		if v, ok := strings.CutPrefix(directive, "max-age="); ok {
			if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 {
				ttl, found = time.Duration(min(n, int64(wellKnownMaxTTL/time.Second)))*time.Second, true
			}
		}
	}
	if !found {
		if exp := h.Get("Expires"); exp != "" {
			if t, err := http.ParseTime(exp); err == nil {
				ttl = max(t.Sub(now), 0)
			} else {
				ttl = 0 // an invalid Expires means already expired (RFC 9111)
			}
		}
	}
	return min(ttl, wellKnownMaxTTL)
}
