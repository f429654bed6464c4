// Package oidcop starts a real OpenID Connect provider on loopback for
// tests: the example provider of github.com/zitadel/oidc (its op package
// and example storage), with users the test sets, clients registered
// once the relying party's address is known, and signing keys the test
// can rotate. Tests only.
package oidcop

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// User is a user of the provider.
type User struct {
	Subject, Username, Password string
	GivenName, FamilyName       string
	Email                       string
}

// OP is a running provider.
type OP struct {
	Issuer  string // http://127.0.0.1:port/
	users   *users
	clients map[string]*storage.Client
	keys    *rotatingStorage
	busy    atomic.Int64 // nanoseconds spent in the provider's handlers
	prompts atomic.Pointer[[]string]
}

// AdvertisePrompts makes the discovery document list values as
// prompt_values_supported (zitadel's provider lists none). Call it before
// the relying party discovers the provider.
func (o *OP) AdvertisePrompts(values ...string) { o.prompts.Store(&values) }

// Busy is the time the provider spent answering requests so far, for
// benchmarks that want the relying party's own share of a round trip.
func (o *OP) Busy() time.Duration { return time.Duration(o.busy.Load()) }

// Start starts a provider that lives until the test ends.
func Start(t testing.TB) *OP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String() + "/"
	o := &OP{Issuer: issuer, users: &users{byID: map[string]*storage.User{}}, clients: map[string]*storage.Client{}}
	o.keys = &rotatingStorage{Storage: storage.NewStorageWithClients(o.users, o.clients)}
	o.keys.rotate()
	handler := exampleop.SetupServer(issuer, o.keys, nil, false)
	timed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if p := o.prompts.Load(); p != nil && r.URL.Path == "/.well-known/openid-configuration" {
			withPrompts(handler, w, r, *p)
		} else {
			handler.ServeHTTP(w, r)
		}
		o.busy.Add(int64(time.Since(start)))
	})
	srv := &http.Server{Handler: timed, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return o
}

// withPrompts serves the discovery document with prompt_values_supported
// added.
func withPrompts(h http.Handler, w http.ResponseWriter, r *http.Request, prompts []string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	var doc map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	doc["prompt_values_supported"] = prompts
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc)
}

// AddClient registers a confidential web client (secret by HTTP Basic).
// Call it before the client is used.
func (o *OP) AddClient(id, secret string, redirectURIs ...string) {
	o.clients[id] = storage.WebClient(id, secret, redirectURIs...)
}

// SetUser adds or replaces a user.
func (o *OP) SetUser(u User) {
	o.users.mu.Lock()
	defer o.users.mu.Unlock()
	o.users.byID[u.Subject] = &storage.User{ID: u.Subject, Username: u.Username, Password: u.Password,
		FirstName: u.GivenName, LastName: u.FamilyName, Email: u.Email, EmailVerified: true, PreferredLanguage: language.French}
}

// RotateKey replaces the signing key: tokens are signed with a new key id
// that the JWKS lists from now on (the old key is gone from it).
func (o *OP) RotateKey() { o.keys.rotate() }

// Login drives the provider's login form: from an authorization URL,
// with a client that keeps cookies, up to the provider's redirect back to
// the relying party, which is returned unfollowed.
func Login(client *http.Client, authURL, username, password string) (*url.URL, error) {
	start, err := url.Parse(authURL)
	if err != nil {
		return nil, err
	}
	c := *client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != start.Host {
			return http.ErrUseLastResponse // back to the relying party
		}
		return nil
	}
	resp, err := c.Get(authURL)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	login := resp.Request.URL
	id := login.Query().Get("authRequestID")
	form := url.Values{"id": {id}, "username": {username}, "password": {password}}
	resp, err = c.PostForm(login.Scheme+"://"+login.Host+"/login/username", form)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		return nil, &LoginError{Status: resp.StatusCode}
	}
	return loc, nil
}

// LoginError is a login the provider did not redirect back from.
type LoginError struct{ Status int }

func (e *LoginError) Error() string {
	return "provider answered " + http.StatusText(e.Status) + " instead of redirecting back"
}

type users struct {
	mu   sync.Mutex
	byID map[string]*storage.User
}

func (u *users) GetUserByID(id string) *storage.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	if v, ok := u.byID[id]; ok {
		c := *v
		return &c
	}
	return nil
}

func (u *users) GetUserByUsername(name string) *storage.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, v := range u.byID {
		if v.Username == name {
			c := *v
			return &c
		}
	}
	return nil
}

func (u *users) ExampleClientID() string { return storage.ServiceUserID }

// rotatingStorage is the example storage with signing keys that rotate.
type rotatingStorage struct {
	*storage.Storage
	mu  sync.Mutex
	key *rsaKey
}

type rsaKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *rsaKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *rsaKey) Key() any                                    { return k.key }
func (k *rsaKey) ID() string                                  { return k.id }

type rsaPublic struct{ *rsaKey }

func (k rsaPublic) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k rsaPublic) Use() string                        { return "sig" }
func (k rsaPublic) Key() any                           { return &k.key.PublicKey }

func (s *rotatingStorage) rotate() {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	s.mu.Lock()
	s.key = &rsaKey{id: "k" + strings.ToLower(strings.TrimRight(encode(b), "=")), key: key}
	s.mu.Unlock()
}

func encode(b []byte) string {
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, hex[c>>4], hex[c&15])
	}
	return string(out)
}

func (s *rotatingStorage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key, nil
}

func (s *rotatingStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *rotatingStorage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []op.Key{rsaPublic{s.key}}, nil
}
