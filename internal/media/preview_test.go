package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/matrix/errcode"
)

// These tests never send traffic to a non-loopback address: refused
// addresses are refused before any connection, and hosts are resolved by
// a fake resolver.

func TestCheckPreviewAddr(t *testing.T) {
	for _, s := range []string{
		"127.0.0.1", "127.5.6.7", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
		"100.64.0.1", "0.0.0.0", "0.1.2.3", "224.0.0.1", "255.255.255.255", "192.0.2.1", "240.0.0.1",
		"::1", "::", "fe80::1", "fc00::1", "fd12::1", "ff02::1", "ff05::1", "fec0::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
		"64:ff9b::a00:1", "64:ff9b::7f00:1", "2002:a00:1::1", "2001:db8::1", "2001:0:4136:e378::1",
	} {
		if err := checkPreviewAddr(netip.MustParseAddr(s)); !errors.Is(err, errRefusedAddress) {
			t.Errorf("%s allowed", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "93.184.216.34", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"} {
		if err := checkPreviewAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s refused: %v", s, err)
		}
	}
}

func TestPreviewVetResolves(t *testing.T) {
	p := NewPreviewer(nil, nil, nil)
	var lookups atomic.Int32
	p.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		lookups.Add(1)
		switch host {
		case "internal.test":
			return []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::1"), netip.MustParseAddr("::ffff:127.0.0.1")}, nil
		case "mixed.test":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("fe80::1")}, nil
		}
		return nil, fmt.Errorf("no such host")
	}
	ctx := context.Background()
	if _, err := p.vet(ctx, "internal.test", 80); !errors.Is(err, errRefusedAddress) {
		t.Fatalf("internal host: %v", err)
	}
	got, err := p.vet(ctx, "mixed.test", 443)
	if err != nil || len(got) != 1 || got[0] != netip.MustParseAddrPort("93.184.216.34:443") {
		t.Fatalf("mixed host: %v %v", got, err)
	}
	for _, lit := range []string{"127.0.0.1", "[::1]", "::ffff:127.0.0.1", "169.254.169.254"} {
		if _, err := p.vet(ctx, lit, 80); !errors.Is(err, errRefusedAddress) {
			t.Errorf("%s: %v", lit, err)
		}
	}
	// The dialer vets too: a refused host is never connected to.
	if _, err := p.dial(ctx, "tcp", "internal.test:80"); !errors.Is(err, errRefusedAddress) {
		t.Fatalf("dial: %v", err)
	}
	// The test hook lets exactly one address and port through.
	p.allowAddr = netip.MustParseAddrPort("127.0.0.1:8080")
	if _, err := p.vet(ctx, "127.0.0.1", 8080); err != nil {
		t.Fatal(err)
	}
	if _, err := p.vet(ctx, "127.0.0.1", 8081); !errors.Is(err, errRefusedAddress) {
		t.Fatal("other port allowed")
	}
}

func tinyPNG(t *testing.T) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 4, 3))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// previewSite serves a page with OpenGraph tags and its image on loopback
// and returns a previewer allowed to reach it (and only it).
func previewSite(t *testing.T, fx fixture, mux *http.ServeMux) (*Previewer, *httptest.Server) {
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p := NewPreviewer(fx.svc, fx.svc.log, nil)
	p.allowAddr = netip.MustParseAddrPort(srv.Listener.Addr().String())
	p.lookup = func(context.Context, string) ([]netip.Addr, error) { return nil, errors.New("no DNS in tests") }
	return p, srv
}

func TestPreviewPage(t *testing.T) {
	img := tinyPNG(t)
	forEachEngine(t, nil, func(t *testing.T, fx fixture) {
		var pageHits atomic.Int32
		mux := http.NewServeMux()
		mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
			pageHits.Add(1)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, `<!doctype html><html><head><title> The  page </title>
<meta property="og:title" content="OG &amp; title">
<meta property="og:description" content="About it">
<meta property="og:image" content="/img.png">
<meta property="og:image:width" content="400"><meta property="og:image:height" content="x">
<meta name="description" content="ignored">
</head><body><title>not this</title></body></html>`)
		})
		mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<html><head><title>Only a title</title><meta name="description" content="Desc"></head></html>`)
		})
		mux.HandleFunc("/img.png", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			w.Write(img)
		})
		mux.HandleFunc("/r1", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/r2", http.StatusFound) })
		mux.HandleFunc("/r2", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/page", http.StatusFound) })
		mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<html><head><meta property="og:title" content="Big"><meta property="og:image" content="/bigimg.png">`)
			w.Write(bytes.Repeat([]byte("<p>filler</p>"), 200_000))
		})
		mux.HandleFunc("/bigimg.png", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			w.Write(append(img, make([]byte, previewMaxBytes)...))
		})
		p, srv := previewSite(t, fx, mux)
		ctx := context.Background()
		user := "@alice:media.test"

		got, err := p.Preview(ctx, user, srv.URL+"/page#frag")
		if err != nil {
			t.Fatal(err)
		}
		// The image's size is measured: the page's claims (a wrong width,
		// a height that is no number) give way.
		if got["og:title"] != "OG & title" || got["og:description"] != "About it" || got["og:image:width"] != int64(4) ||
			got["og:image:height"] != int64(3) || got["og:image:type"] != "image/png" || got["matrix:image:size"] != int64(len(img)) {
			t.Fatalf("%v", got)
		}
		uri, _ := got["og:image"].(string)
		if !strings.HasPrefix(uri, "mxc://media.test/") {
			t.Fatalf("og:image %q", uri)
		}
		c, err := fx.svc.Get(ctx, "media.test", mediaID(t, uri), 0)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := fx.svc.readAll(ctx, c)
		if err != nil || !bytes.Equal(stored, img) {
			t.Fatalf("stored image differs: %v", err)
		}

		// Cached for an hour (the fragment is not part of the key).
		if _, err := p.Preview(ctx, user, srv.URL+"/page"); err != nil || pageHits.Load() != 1 {
			t.Fatalf("not cached: %d hits, %v", pageHits.Load(), err)
		}
		p.now = func() time.Time { return time.Now().Add(previewCacheTTL + time.Minute) }
		if _, err := p.Preview(ctx, user, srv.URL+"/page"); err != nil || pageHits.Load() != 2 {
			t.Fatalf("stale cache used: %d hits, %v", pageHits.Load(), err)
		}

		got, err = p.Preview(ctx, user, srv.URL+"/plain")
		if err != nil || got["og:title"] != "Only a title" || got["og:description"] != "Desc" || len(got) != 2 {
			t.Fatalf("plain: %v %v", got, err)
		}
		// Two redirects are followed.
		got, err = p.Preview(ctx, user, srv.URL+"/r1")
		if err != nil || got["og:title"] != "OG & title" {
			t.Fatalf("redirected: %v %v", got, err)
		}
		// An image URL is its own preview.
		got, err = p.Preview(ctx, user, srv.URL+"/img.png")
		if err != nil || got["matrix:image:size"] != int64(len(img)) {
			t.Fatalf("image: %v %v", got, err)
		}
		// Only the first MiB is read; an image over the limit is dropped.
		got, err = p.Preview(ctx, user, srv.URL+"/big")
		if err != nil || got["og:title"] != "Big" || got["og:image"] != nil {
			t.Fatalf("big: %v %v", got, err)
		}
	})
}

func TestPreviewRefused(t *testing.T) {
	forEachEngine(t, nil, func(t *testing.T, fx fixture) {
		// Another loopback server that must never be reached.
		var forbiddenHits atomic.Int32
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { forbiddenHits.Add(1) }))
		defer other.Close()
		_, otherPort, _ := net.SplitHostPort(other.Listener.Addr().String())

		targets := []string{
			other.URL + "/",
			"http://10.0.0.1/",
			"http://169.254.169.254/latest/meta-data/",
			"http://[::1]:" + otherPort + "/",
			"http://[fe80::1]/",
			"http://[::ffff:127.0.0.1]:" + otherPort + "/",
			"https://127.0.0.1:" + otherPort + "/",
			"http://internal.test:" + otherPort + "/",
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
		})
		mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
		mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, `<meta property="og:title" content="T"><meta property="og:image" content="%s">`, other.URL+"/x.png")
		})
		p, srv := previewSite(t, fx, mux)
		p.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
			if host == "internal.test" {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			}
			return nil, errors.New("no DNS in tests")
		}
		ctx := context.Background()
		for _, target := range targets {
			for _, u := range []string{target, srv.URL + "/redirect?to=" + target} {
				_, err := p.Preview(ctx, "@alice:media.test", u)
				if e, ok := errcode.As(err); !ok || e.Code != "M_FORBIDDEN" || e.Status != http.StatusForbidden {
					t.Errorf("%s: %v", u, err)
				}
			}
		}
		// More than three redirects, other schemes.
		if _, err := p.Preview(ctx, "@alice:media.test", srv.URL+"/loop"); err == nil {
			t.Error("redirect loop followed")
		}
		for _, u := range []string{"file:///etc/passwd", "ftp://example.org/", "gopher://x/", "/relative", "http://user:pw@example.org/", "http:///nohost"} {
			if _, err := p.Preview(ctx, "@alice:media.test", u); err == nil {
				t.Errorf("%s accepted", u)
			}
		}
		if _, err := p.Preview(ctx, "@alice:media.test", srv.URL+"/redirect?to=file:///etc/passwd"); err == nil {
			t.Error("redirect to file: followed")
		}
		// An og:image on a refused address is left out, the page is kept.
		got, err := p.Preview(ctx, "@alice:media.test", srv.URL+"/page")
		if err != nil || got["og:title"] != "T" || got["og:image"] != nil {
			t.Fatalf("page with a refused image: %v %v", got, err)
		}
		if n := forbiddenHits.Load(); n != 0 {
			t.Fatalf("refused server reached %d times", n)
		}
	})
}
