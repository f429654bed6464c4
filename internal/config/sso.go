package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// OIDC lists the upstream OpenID Connect providers users may log in with
// (single sign-on). Empty: no single sign-on.
type OIDC struct {
	Providers []OIDCProvider `yaml:"providers"`
}

// OIDCProvider is one upstream OpenID Connect provider, such as LuxID.
type OIDCProvider struct {
	// ID names the provider in URLs and in the stored links of users to
	// it: never change it once users have logged in with it.
	ID   string `yaml:"id"`
	Name string `yaml:"name"` // shown to users
	Icon string `yaml:"icon"` // mxc:// URI; optional
	// Brand is the spec's optional identity provider brand (e.g. "apple").
	Brand string `yaml:"brand"`
	// Issuer is the provider's issuer URL; its discovery document is at
	// {issuer}/.well-known/openid-configuration.
	Issuer           string `yaml:"issuer"`
	ClientID         string `yaml:"client_id"`
	ClientSecret     string `yaml:"client_secret"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// Scopes asked for besides "openid" (default: profile, email).
	Scopes []string `yaml:"scopes"`
	// PKCE sends an S256 code challenge (default true); turn it off only
	// for a provider that refuses one.
	PKCE *bool `yaml:"pkce"`
	// UserInfo fetches the userinfo endpoint after the code exchange and
	// merges its claims under the ID token's (for providers that keep
	// profile claims out of the ID token).
	UserInfo bool `yaml:"userinfo"`
	// Timeout bounds each request to the provider (default 10s).
	Timeout Duration `yaml:"timeout"`
	// Mapping from claims to the Matrix account.
	LocalpartTemplate   string `yaml:"localpart_template"`
	DisplayNameTemplate string `yaml:"displayname_template"`
	EmailTemplate       string `yaml:"email_template"`
	// AllowExistingUsers links a first login to an existing account whose
	// localpart is the one localpart_template gives, when that account is
	// not linked to this provider yet. Off: a taken localpart gets a
	// numbered one instead.
	AllowExistingUsers bool `yaml:"allow_existing_users"`
	// Conditions on claims that must all hold for a login (the rest are
	// refused).
	Conditions []ClaimCondition `yaml:"conditions"`
}

// ClaimCondition is one rule on a claim: exactly one of Equals, OneOf and
// Suffix is set. A claim that is a list passes when one of its strings
// does.
type ClaimCondition struct {
	Claim  string   `yaml:"claim"`
	Equals string   `yaml:"equals"`
	OneOf  []string `yaml:"one_of"`
	Suffix string   `yaml:"suffix"`
}

// SSO configures the legacy single sign-on flow of the client API.
type SSO struct {
	// ClientWhitelist are prefixes of redirectUrl values that get the
	// login token without a confirmation page.
	ClientWhitelist []string `yaml:"client_whitelist"`
}

// OAuth configures the Matrix OAuth 2.0 API.
type OAuth struct {
	// Enabled serves the API (auth_metadata, client registration, the
	// token, revocation and device endpoints, the login, consent and
	// account pages under /_luxchat/oauth2/).
	Enabled bool `yaml:"enabled"`
}

// OIDCCallbackPath is where providers send the browser back to; register
// {public_base_url}/_luxchat/oidc/callback at the provider.
const OIDCCallbackPath = "/_luxchat/oidc/callback"

// OIDCCallbackURL is the redirect URI registered at every provider.
func (c *Config) OIDCCallbackURL() string { return c.ClientBaseURL() + OIDCCallbackPath }

// PKCEOn reports whether the provider gets a PKCE challenge.
func (p OIDCProvider) PKCEOn() bool { return p.PKCE == nil || *p.PKCE }

// Secret returns the client secret, read from its file when so
// configured.
func (p OIDCProvider) Secret() (string, error) {
	return valueOrFile("oidc.providers["+p.ID+"].client_secret", p.ClientSecret, p.ClientSecretFile)
}

// RequestTimeout is the bound of one request to the provider.
func (p OIDCProvider) RequestTimeout() time.Duration {
	if p.Timeout.Duration > 0 {
		return p.Timeout.Duration
	}
	return 10 * time.Second
}

var providerIDRe = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,64}$`)

func (c *Config) validateSSO() []error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range c.OIDC.Providers {
		name := fmt.Sprintf("oidc.providers[%d]", i)
		if !providerIDRe.MatchString(p.ID) {
			errs = append(errs, fmt.Errorf("%s.id must be 1-64 of A-Z a-z 0-9 . _ ~ -, not %q", name, p.ID))
		} else if seen[p.ID] {
			errs = append(errs, fmt.Errorf("%s.id %q is used twice", name, p.ID))
		}
		seen[p.ID] = true
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name must be set", name))
		}
		if p.Icon != "" && !strings.HasPrefix(p.Icon, "mxc://") {
			errs = append(errs, fmt.Errorf("%s.icon must be an mxc:// URI", name))
		}
		if u, err := url.Parse(p.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s.issuer must be an http(s) URL, not %q", name, p.Issuer))
		}
		if p.ClientID == "" {
			errs = append(errs, fmt.Errorf("%s.client_id must be set", name))
		}
		if p.ClientSecret != "" && p.ClientSecretFile != "" {
			errs = append(errs, fmt.Errorf("%s: set at most one of client_secret and client_secret_file", name))
		} else if _, err := p.Secret(); err != nil {
			errs = append(errs, err)
		}
		if p.Timeout.Duration < 0 {
			errs = append(errs, fmt.Errorf("%s.timeout must not be negative", name))
		}
		for j, cond := range p.Conditions {
			set := 0
			for _, b := range []bool{cond.Equals != "", len(cond.OneOf) > 0, cond.Suffix != ""} {
				if b {
					set++
				}
			}
			if cond.Claim == "" || set != 1 {
				errs = append(errs, fmt.Errorf("%s.conditions[%d] needs a claim and exactly one of equals, one_of, suffix", name, j))
			}
		}
	}
	for _, w := range c.SSO.ClientWhitelist {
		u, err := url.Parse(w)
		switch {
		case err != nil || u.Scheme == "":
			errs = append(errs, fmt.Errorf("sso.client_whitelist: %q is not an absolute URL prefix", w))
		case (u.Scheme == "https" || u.Scheme == "http") && !strings.HasPrefix(u.Path, "/"):
			// "https://app.example.org" would also match
			// "https://app.example.org.evil.example/".
			errs = append(errs, fmt.Errorf("sso.client_whitelist: %q must end its host with a path, e.g. %q", w, w+"/"))
		}
	}
	if c.Auth.LoginTokenLifetime.Duration <= 0 || c.Auth.LoginTokenLifetime.Duration > time.Hour {
		errs = append(errs, errors.New("auth.login_token_lifetime must be positive and at most 1h"))
	}
	return errs
}
