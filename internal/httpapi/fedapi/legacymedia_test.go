package fedapi_test

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"luxchat/internal/testserver"
)

// A server from before authenticated media answers the federation media
// endpoint as an unknown path; its own files are then fetched from the
// legacy endpoint, without credentials. A file the federation endpoint
// reports missing is not asked for again.
func TestFederatedMediaLegacyFallback(t *testing.T) {
	fed := testserver.NewFederation(t)
	hs2 := testserver.New(t, fed.Server())
	bob := hs2.Register(t, "bob")
	content := []byte("from an older server")
	certFile, keyFile := fed.Issue("old.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var legacy atomic.Int64
	var origin string
	remote := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/_matrix/federation/v1/media/download/gone":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"no such file"}`))
		case strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/media/"):
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte("unknown endpoint"))
		case strings.HasPrefix(r.URL.Path, "/_matrix/media/v3/download/"+origin+"/"):
			legacy.Add(1)
			if r.Header.Get("Authorization") != "" {
				t.Error("the legacy endpoint was called with credentials")
			}
			if !strings.HasSuffix(r.URL.Path, "/oldmedia") || r.URL.Query().Get("allow_remote") != "false" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(content)
		default:
			http.NotFound(w, r)
		}
	}))
	remote.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	remote.StartTLS()
	defer remote.Close()
	origin = "old.test:" + strings.Split(remote.Listener.Addr().String(), ":")[1]

	st, h, body := rawDo(t, bob, "GET", "/_matrix/client/v1/media/download/"+origin+"/oldmedia", "", nil)
	if st != 200 || !bytes.Equal(body, content) || h.Get("Content-Type") != "text/plain" {
		t.Fatalf("download: %d %s %q", st, h, body)
	}
	before := legacy.Load()
	if st, _, body := rawDo(t, bob, "GET", "/_matrix/client/v1/media/download/"+origin+"/gone", "", nil); st != 404 {
		t.Fatalf("missing file: %d %s", st, body)
	}
	if legacy.Load() != before {
		t.Fatal("a file the server reported missing was asked for on the legacy endpoint")
	}
}
