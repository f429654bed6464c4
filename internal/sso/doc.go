// Package sso logs users in through upstream OpenID Connect providers
// (oidc.providers: LuxID or any other): the authorization code flow with
// PKCE, state and nonce, the ID token's verification, the mapping of a
// provider's user to a local account (stored links, claim conditions), and
// the ends of the flow — a login token for the legacy SSO flow of the
// client API, or the m.login.sso stage of user-interactive auth.
//
// It speaks to providers through github.com/coreos/go-oidc and
// golang.org/x/oauth2, with a bounded HTTP client that reaches private
// networks only at the issuer's own host. Pages and cookies are the HTTP
// edge's (httpapi/clientapi, httpapi/pages); this package must not import
// httpapi.
package sso
