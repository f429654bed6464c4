package mediaapi_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

func TestPreviewURLEndpoint(t *testing.T) {
	var hits atomic.Int32
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer site.Close()
	q := "?url=" + url.QueryEscape(site.URL+"/") + "&ts=1510610716656"
	paths := []string{"/_matrix/client/v1/media/preview_url", "/_matrix/media/v3/preview_url"}

	off := ts.New(t)
	alice := off.Register(t, "alice")
	for _, p := range paths {
		if r := alice.Do("GET", p+q, nil); r.Status != http.StatusNotFound || r.ErrCode() != "M_UNRECOGNIZED" {
			t.Errorf("disabled %s: %d %s", p, r.Status, r.Body)
		}
	}

	on := ts.New(t, ts.WithConfig(func(c *config.Config) { c.Media.URLPreview.Enabled = true }))
	bob := on.Register(t, "bob")
	for _, p := range paths {
		// The server refuses loopback addresses (the preview service's own
		// tests cover pages it may fetch).
		if r := bob.Do("GET", p+q, nil); r.Status != http.StatusForbidden || r.ErrCode() != "M_FORBIDDEN" {
			t.Errorf("loopback %s: %d %s", p, r.Status, r.Body)
		}
		if r := bob.Do("GET", p, nil); r.Status != http.StatusBadRequest || r.ErrCode() != "M_MISSING_PARAM" {
			t.Errorf("no url %s: %d %s", p, r.Status, r.Body)
		}
		if r := bob.Do("GET", p+"?url=file%3A%2F%2F%2Fetc%2Fpasswd", nil); r.Status != http.StatusBadRequest || r.ErrCode() != "M_INVALID_PARAM" {
			t.Errorf("file url %s: %d %s", p, r.Status, r.Body)
		}
		if r := bob.Do("GET", p+"?url=http%3A%2F%2Fexample.org%2F&ts=x", nil); r.Status != http.StatusBadRequest {
			t.Errorf("bad ts %s: %d %s", p, r.Status, r.Body)
		}
		if r := on.Anonymous(t).Do("GET", p+q, nil); r.Status != http.StatusUnauthorized {
			t.Errorf("anonymous %s: %d", p, r.Status)
		}
	}
	if hits.Load() != 0 {
		t.Fatal("loopback site reached")
	}
}
