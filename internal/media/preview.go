package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/sync/singleflight"

	"luxchat/internal/matrix/errcode"
)

// Limits of URL previews.
const (
	previewMaxBytes     = 1 << 20 // read at most this much of a page or an image
	previewTimeout      = 10 * time.Second
	previewMaxRedirects = 3
	previewCacheTTL     = time.Hour
	previewCacheMax     = 10000
	previewMaxValue     = 2000 // characters kept of one OpenGraph value
	previewMaxKeys      = 64
)

// errRefusedAddress is returned when a URL's host resolves to no address
// the server may connect to.
var errRefusedAddress = errors.New("media: URL preview refused: the host has no public address")

// Previewer answers GET /_matrix/client/v1/media/preview_url: it fetches a
// public http(s) page, reads its title and OpenGraph tags and stores the
// og:image as local media.
//
// Server-side request forgery is the risk: every connection, including
// those after a redirect, goes through dial, which resolves the host
// itself, keeps only public unicast addresses (see checkPreviewAddr) and
// connects to the address it vetted, so a DNS answer that changes between
// the check and the connection cannot send it elsewhere. No proxy is used.
//
// Safe for concurrent use: the cache is guarded by mu, and concurrent
// requests for one URL share one fetch.
type Previewer struct {
	media  *Service
	log    *slog.Logger
	client *http.Client
	now    func() time.Time

	// lookup resolves a host name (tests replace it).
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// allowAddr is one loopback address and port that tests let through;
	// the zero value allows nothing. Never set outside tests.
	allowAddr netip.AddrPort
	// allowNets are the operator's non-public networks that previews may
	// reach (media.url_preview.allow_networks).
	allowNets []netip.Prefix

	flight singleflight.Group
	mu     sync.Mutex
	cache  map[string]previewEntry
}

type previewEntry struct {
	at   time.Time
	data map[string]any
}

// NewPreviewer returns a previewer that stores images through svc.
// allowNetworks are CIDRs of non-public addresses it may still reach.
func NewPreviewer(svc *Service, log *slog.Logger, allowNetworks []string) *Previewer {
	p := &Previewer{media: svc, log: log, now: time.Now, cache: map[string]previewEntry{}}
	for _, n := range allowNetworks {
		if pfx, err := netip.ParsePrefix(n); err == nil {
			p.allowNets = append(p.allowNets, pfx.Masked())
		}
	}
	p.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would connect where we did not check
		DialContext:           p.dial,
		TLSHandshakeTimeout:   previewTimeout,
		ResponseHeaderTimeout: previewTimeout,
		MaxIdleConns:          16,
		IdleConnTimeout:       30 * time.Second,
	}
	p.client = &http.Client{
		Transport: tr,
		Timeout:   previewTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > previewMaxRedirects {
				return fmt.Errorf("media: more than %d redirects", previewMaxRedirects)
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("media: redirect to a %q URL", req.URL.Scheme)
			}
			return nil
		},
	}
	return p
}

// checkPreviewAddr refuses every address that is not public unicast:
// loopback, private (RFC 1918, fc00::/7), link-local, multicast,
// unspecified, shared (100.64/10), documentation, benchmarking and reserved
// ranges, and IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4,
// Teredo) unless the embedded address is itself allowed.
func checkPreviewAddr(ip netip.Addr) error {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.Zone() != "" {
		return errRefusedAddress
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || !ip.IsGlobalUnicast() {
		return errRefusedAddress
	}
	for _, p := range refusedPrefixes {
		if p.Contains(ip) {
			return errRefusedAddress
		}
	}
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			return checkPreviewAddr(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(ip):
			return checkPreviewAddr(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	return nil
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

var refusedPrefixes = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
		"::/96",                        // IPv4-compatible (deprecated)
		"64:ff9b:1::/48",               // local-use NAT64
		"100::/64",                     // discard
		"2001::/32",                    // Teredo
		"2001:db8::/32",                // documentation
		"2001:10::/28", "2001:20::/28", // ORCHID
		"fec0::/10", // site-local (deprecated)
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// allowed reports whether the previewer may connect to ip:port.
func (p *Previewer) allowed(ap netip.AddrPort) error {
	if p.allowAddr.IsValid() && ap == p.allowAddr {
		return nil
	}
	for _, n := range p.allowNets {
		if n.Contains(ap.Addr().Unmap()) {
			return nil
		}
	}
	return checkPreviewAddr(ap.Addr())
}

// vet resolves host (or parses an address literal) and returns the
// addresses the previewer may connect to on port, or errRefusedAddress.
func (p *Previewer) vet(ctx context.Context, host string, port uint16) ([]netip.AddrPort, error) {
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		addrs, err = p.lookup(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolve %q: %w", host, err)
		}
	}
	var ok []netip.AddrPort
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a.Unmap(), port)
		if p.allowed(ap) == nil {
			ok = append(ok, ap)
		}
	}
	if len(ok) == 0 {
		return nil, errRefusedAddress
	}
	return ok, nil
}

// dial connects to a vetted address of addr's host: the transport's dialer
// for every connection, including those after redirects.
func (p *Previewer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("media: bad port %q", portStr)
	}
	aps, err := p.vet(ctx, host, uint16(port))
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: previewTimeout}
	var errs []error
	for _, ap := range aps {
		c, err := d.DialContext(ctx, "tcp", ap.String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// parsePreviewURL accepts absolute http and https URLs with a host.
func parsePreviewURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, errcode.InvalidParam("url must be an absolute http or https URL")
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// Preview returns the OpenGraph data of rawURL for userID, from the cache
// when it is younger than an hour. An og:image is stored as local media
// owned by userID and returned as an mxc:// URI.
func (p *Previewer) Preview(ctx context.Context, userID, rawURL string) (map[string]any, error) {
	u, err := parsePreviewURL(rawURL)
	if err != nil {
		return nil, err
	}
	key := u.String()
	if d, ok := p.cached(key); ok {
		return d, nil
	}
	v, err, _ := p.flight.Do(key, func() (any, error) {
		if d, ok := p.cached(key); ok {
			return d, nil
		}
		// Shared by every waiter: not cancelled by the first caller.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), previewTimeout)
		defer cancel()
		d, err := p.build(fctx, userID, u)
		if err != nil {
			return nil, err
		}
		p.store(key, d)
		return d, nil
	})
	if err != nil {
		if errors.Is(err, errRefusedAddress) {
			return nil, errcode.Forbidden("URL previews of this address are not allowed")
		}
		if e, ok := errcode.As(err); ok {
			return nil, e
		}
		p.log.Debug("url preview failed", "url", key, "err", err)
		return nil, &errcode.Error{Code: "M_UNKNOWN", Status: http.StatusBadGateway, Message: "could not preview the URL"}
	}
	return v.(map[string]any), nil
}

func (p *Previewer) cached(key string) (map[string]any, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.cache[key]
	if !ok || p.now().Sub(e.at) >= previewCacheTTL {
		return nil, false
	}
	return e.data, true
}

func (p *Previewer) store(key string, d map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if len(p.cache) >= previewCacheMax {
		for k, e := range p.cache {
			if now.Sub(e.at) >= previewCacheTTL {
				delete(p.cache, k)
			}
		}
		if len(p.cache) >= previewCacheMax {
			clear(p.cache)
		}
	}
	p.cache[key] = previewEntry{at: now, data: d}
}

// fetch GETs u and returns at most previewMaxBytes of its body, whether it
// was cut, its media type and the final URL after redirects.
func (p *Previewer) fetch(ctx context.Context, u *url.URL, accept string) (body []byte, cut bool, mediaType string, final *url.URL, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, false, "", nil, err
	}
	req.Header.Set("User-Agent", "luxchat URL preview")
	req.Header.Set("Accept", accept)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, false, "", nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false, "", nil, fmt.Errorf("media: %s answered %d", u.Redacted(), resp.StatusCode)
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, previewMaxBytes+1))
	if err != nil {
		return nil, false, "", nil, fmt.Errorf("read preview body: %w", err)
	}
	if len(body) > previewMaxBytes {
		body, cut = body[:previewMaxBytes], true
	}
	mediaType, _, _ = mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return body, cut, strings.ToLower(mediaType), resp.Request.URL, nil
}

// build fetches the page and assembles the response.
func (p *Previewer) build(ctx context.Context, userID string, u *url.URL) (map[string]any, error) {
	body, cut, mt, final, err := p.fetch(ctx, u, "text/html,application/xhtml+xml,image/*;q=0.8,*/*;q=0.1")
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	switch {
	case strings.HasPrefix(mt, "image/"):
		// The URL is an image: it is its own preview.
		if !cut {
			p.attachImage(ctx, userID, out, body, mt)
		}
		return out, nil
	case mt == "text/html" || mt == "application/xhtml+xml":
	default:
		return out, nil
	}
	og := parseOpenGraph(body)
	for k, v := range og {
		out[k] = v
	}
	for _, k := range []string{"og:image:width", "og:image:height"} {
		if s, ok := out[k].(string); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
				out[k] = n
			} else {
				delete(out, k)
			}
		}
	}
	delete(out, "og:image")
	delete(out, "matrix:image:size")
	if img, ok := og["og:image"]; ok {
		if iu, err := final.Parse(img); err == nil && (iu.Scheme == "http" || iu.Scheme == "https") {
			ib, icut, imt, _, err := p.fetch(ctx, iu, "image/*")
			switch {
			case err != nil:
				p.log.Debug("url preview image failed", "url", iu.Redacted(), "err", err)
			case icut || !strings.HasPrefix(imt, "image/"):
			default:
				p.attachImage(ctx, userID, out, ib, imt)
			}
		}
	}
	if _, ok := out["og:image"]; !ok {
		for k := range out {
			if strings.HasPrefix(k, "og:image:") {
				delete(out, k)
			}
		}
	}
	return out, nil
}

// attachImage stores an image as local media and adds og:image,
// og:image:type, matrix:image:size and, for a format the server decodes,
// the image's measured og:image:width and og:image:height.
func (p *Previewer) attachImage(ctx context.Context, userID string, out map[string]any, img []byte, mediaType string) {
	if len(img) == 0 {
		return
	}
	uri, err := p.media.Upload(ctx, Upload{UserID: userID, ContentType: mediaType, ContentLength: int64(len(img))}, bytes.NewReader(img))
	if err != nil {
		p.log.Debug("url preview image not stored", "err", err)
		return
	}
	out["og:image"] = uri
	out["og:image:type"] = mediaType
	out["matrix:image:size"] = int64(len(img))
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(img)); err == nil {
		out["og:image:width"], out["og:image:height"] = int64(cfg.Width), int64(cfg.Height)
	}
}

// parseOpenGraph reads <title>, <meta property|name="og:…" content> and
// <meta name="description"> from an HTML document (possibly cut short).
// og:title falls back to the title and og:description to the description.
func parseOpenGraph(doc []byte) map[string]string {
	og := map[string]string{}
	var title, desc string
	z := html.NewTokenizer(bytes.NewReader(doc))
	inTitle := false
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if title != "" && og["og:title"] == "" {
				og["og:title"] = title
			}
			if desc != "" && og["og:description"] == "" {
				og["og:description"] = desc
			}
			for k, v := range og {
				if v == "" {
					delete(og, k)
				}
			}
			return og
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch string(name) {
			case "title":
				inTitle = tt == html.StartTagToken && title == ""
			case "meta":
				var prop, nm, content string
				for hasAttr {
					var k, v []byte
					k, v, hasAttr = z.TagAttr()
					switch string(k) {
					case "property":
						prop = strings.ToLower(strings.TrimSpace(string(v)))
					case "name":
						nm = strings.ToLower(strings.TrimSpace(string(v)))
					case "content":
						content = string(v)
					}
				}
				if prop == "" && strings.HasPrefix(nm, "og:") {
					prop = nm
				}
				switch {
				case strings.HasPrefix(prop, "og:") && len(prop) <= 64:
					if _, seen := og[prop]; !seen && len(og) < previewMaxKeys {
						og[prop] = cleanPreviewText(content)
					}
				case nm == "description" && desc == "":
					desc = cleanPreviewText(content)
				}
			}
		case html.TextToken:
			if inTitle {
				title = cleanPreviewText(string(z.Text()))
				inTitle = false
			}
		case html.EndTagToken:
			if name, _ := z.TagName(); string(name) == "title" {
				inTitle = false
			}
		}
	}
}

// cleanPreviewText makes valid UTF-8, collapses white space and cuts long
// values at a character boundary.
func cleanPreviewText(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "\uFFFD")), " ")
	if len(s) > previewMaxValue {
		cut := previewMaxValue
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
