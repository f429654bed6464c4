package sso

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"luxchat/internal/config"
	"luxchat/internal/testutil/oidcop"
)

func TestUpstreamClientStaysWithTheIssuer(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("internal")) }))
	defer other.Close()
	otherURL, _ := url.Parse(other.URL)
	// "localhost" names the same loopback address by another host name:
	// not the issuer's host, so a private address it may not reach.
	elsewhere := "http://localhost:" + otherURL.Port() + "/"
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/here" {
			_, _ = w.Write([]byte("ok"))
			return
		}
		http.Redirect(w, r, elsewhere, http.StatusFound)
	}))
	defer issuer.Close()
	iu, _ := url.Parse(issuer.URL + "/")
	c := upstreamClient(iu, 2*time.Second)
	resp, err := c.Get(issuer.URL + "/here")
	if err != nil {
		t.Fatalf("the issuer's own host: %v", err)
	}
	resp.Body.Close()
	if _, err := c.Get(issuer.URL + "/away"); err == nil || !strings.Contains(err.Error(), "redirect away from the issuer") {
		t.Fatalf("redirect elsewhere followed: %v", err)
	}
	if _, err := c.Get(elsewhere); err == nil || !strings.Contains(err.Error(), "private network") {
		t.Fatalf("private address reached: %v", err)
	}
}

// An ID token the provider issued to another client is refused, even
// though its signature and issuer are right.
func TestIDTokenForAnotherAudience(t *testing.T) {
	op := oidcop.Start(t)
	const cb = "http://127.0.0.1:1/cb"
	op.AddClient("luxchat", "s1", cb)
	op.AddClient("other", "s2", cb)
	op.SetUser(oidcop.User{Subject: "sub-1", Username: "u1", Password: "pw", Email: "u1@example.org"})
	p, err := newProvider(config.OIDCProvider{ID: "luxid", Issuer: op.Issuer, ClientID: "luxchat", ClientSecret: "s1"}, cb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, verifier, oc, err := p.discovered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idToken := func(clientID, secret string) string {
		conf := *oc
		conf.ClientID, conf.ClientSecret = clientID, secret
		jar, _ := cookiejar.New(nil)
		back, err := oidcop.Login(&http.Client{Jar: jar, Timeout: 10 * time.Second}, conf.AuthCodeURL("st", oauth2.SetAuthURLParam("nonce", "n")), "u1", "pw")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := conf.Exchange(ctx, back.Query().Get("code"))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := tok.Extra("id_token").(string)
		return raw
	}
	if _, err := verifier.Verify(ctx, idToken("luxchat", "s1")); err != nil {
		t.Fatalf("our own token: %v", err)
	}
	if _, err := verifier.Verify(ctx, idToken("other", "s2")); err == nil || !strings.Contains(err.Error(), "audience") {
		t.Fatalf("another client's token: %v", err)
	}
}
