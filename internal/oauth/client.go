package oauth

import (
	"encoding/json"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// Grant types and the one response type this server supports.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
	ResponseTypeCode       = "code"
)

// Bounds of registered metadata.
const (
	maxRedirectURIs = 20
	maxURILen       = 2048
	maxNameLen      = 256
	maxLocalized    = 32
)

// ClientMetadata is a client as registered (RFC 7591 as the Matrix spec
// restricts it). Names holds the localized client_name#<tag> values.
type ClientMetadata struct {
	ClientName              string            `json:"client_name,omitempty"`
	ClientURI               string            `json:"client_uri"`
	LogoURI                 string            `json:"logo_uri,omitempty"`
	TOSURI                  string            `json:"tos_uri,omitempty"`
	PolicyURI               string            `json:"policy_uri,omitempty"`
	RedirectURIs            []string          `json:"redirect_uris,omitempty"`
	ResponseTypes           []string          `json:"response_types"`
	GrantTypes              []string          `json:"grant_types"`
	TokenEndpointAuthMethod string            `json:"token_endpoint_auth_method"`
	ApplicationType         string            `json:"application_type"`
	Names                   map[string]string `json:"-"`
}

// response is the registration answer: the metadata with the client id
// and the localized names.
func (m *ClientMetadata) response(clientID string) map[string]any {
	b, _ := json.Marshal(m)
	out := map[string]any{}
	_ = json.Unmarshal(b, &out)
	out["client_id"] = clientID
	for tag, n := range m.Names {
		out["client_name#"+tag] = n
	}
	return out
}

// stored is the JSON kept in oauth_clients: the registered metadata with
// the localized names, canonical (sorted keys) so that equal metadata
// hashes alike.
func (m *ClientMetadata) stored() string {
	r := m.response("")
	delete(r, "client_id")
	b, _ := json.Marshal(r) // map keys are sorted
	return string(b)
}

// loadClient reads a stored client.
func loadClient(stored string) (*ClientMetadata, error) {
	var m ClientMetadata
	if err := json.Unmarshal([]byte(stored), &m); err != nil {
		return nil, err
	}
	var raw map[string]any
	_ = json.Unmarshal([]byte(stored), &raw)
	for k, v := range raw {
		if tag, ok := strings.CutPrefix(k, "client_name#"); ok {
			if s, ok := v.(string); ok {
				if m.Names == nil {
					m.Names = map[string]string{}
				}
				m.Names[tag] = s
			}
		}
	}
	return &m, nil
}

// Name is the client's name for a page in lang: the localized name whose
// tag's language is lang, else client_name, else the client_uri's host.
func (m *ClientMetadata) Name(lang string) string {
	tags := make([]string, 0, len(m.Names))
	for t := range m.Names {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	for _, t := range tags {
		base, _, _ := strings.Cut(strings.ToLower(t), "-")
		if base == lang {
			return m.Names[t]
		}
	}
	if m.ClientName != "" {
		return m.ClientName
	}
	if u, err := url.Parse(m.ClientURI); err == nil {
		return u.Host
	}
	return m.ClientURI
}

// ParseRegistration checks a registration request and returns the
// metadata to register. Errors are *Error: invalid_client_metadata or
// invalid_redirect_uri (RFC 7591 3.2.2).
func ParseRegistration(body []byte) (*ClientMetadata, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return nil, badMetadata("the body must be a JSON object")
	}
	str := func(k string) (string, error) {
		v, ok := raw[k]
		if !ok || string(v) == "null" {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", badMetadata(k + " must be a string")
		}
		if len(s) > maxURILen {
			return "", badMetadata(k + " is too long")
		}
		if strings.ContainsRune(s, 0) {
			return "", badMetadata(k + " must not contain NUL")
		}
		return s, nil
	}
	list := func(k string) ([]string, error) {
		v, ok := raw[k]
		if !ok || string(v) == "null" {
			return nil, nil
		}
		var l []string
		if err := json.Unmarshal(v, &l); err != nil {
			return nil, badMetadata(k + " must be an array of strings")
		}
		return l, nil
	}
	m := &ClientMetadata{}
	var err error
	for k, dst := range map[string]*string{"client_name": &m.ClientName, "client_uri": &m.ClientURI, "logo_uri": &m.LogoURI, "tos_uri": &m.TOSURI,
		"policy_uri": &m.PolicyURI, "token_endpoint_auth_method": &m.TokenEndpointAuthMethod, "application_type": &m.ApplicationType} {
		if *dst, err = str(k); err != nil {
			return nil, err
		}
	}
	if len(m.ClientName) > maxNameLen {
		return nil, badMetadata("client_name is too long")
	}
	base, err := checkClientURI(m.ClientURI)
	if err != nil {
		return nil, err
	}
	for k, v := range map[string]string{"logo_uri": m.LogoURI, "tos_uri": m.TOSURI, "policy_uri": m.PolicyURI} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || u.Scheme != "https" || u.User != nil || !onHost(u.Hostname(), base.Hostname()) {
			return nil, badMetadata(k + " must be an https URL on the client_uri's host or a subdomain of it")
		}
	}
	// Localized names are kept; localized URIs are not (RFC 7591 2.2
	// lets a server ignore them).
	for k := range raw {
		tag, ok := strings.CutPrefix(k, "client_name#")
		if !ok {
			continue
		}
		n, err := str(k)
		if err != nil {
			return nil, err
		}
		if n == "" || !validTag(tag) || len(n) > maxNameLen || len(m.Names) >= maxLocalized {
			continue
		}
		if m.Names == nil {
			m.Names = map[string]string{}
		}
		m.Names[tag] = n
	}
	switch m.TokenEndpointAuthMethod {
	case "", "none":
		m.TokenEndpointAuthMethod = "none"
	default:
		return nil, badMetadata("token_endpoint_auth_method must be none: only public clients are supported")
	}
	switch m.ApplicationType {
	case "":
		m.ApplicationType = "web"
	case "web", "native":
	default:
		return nil, badMetadata("application_type must be web or native")
	}
	// Unknown grant and response types are ignored (RFC 7591 2).
	grants, err := list("grant_types")
	if err != nil {
		return nil, err
	}
	if grants == nil {
		grants = []string{GrantAuthorizationCode}
	}
	for _, g := range grants {
		if (g == GrantAuthorizationCode || g == GrantRefreshToken || g == GrantDeviceCode) && !slices.Contains(m.GrantTypes, g) {
			m.GrantTypes = append(m.GrantTypes, g)
		}
	}
	if len(m.GrantTypes) == 0 {
		return nil, badMetadata("grant_types names no grant type this server supports")
	}
	responses, err := list("response_types")
	if err != nil {
		return nil, err
	}
	if responses == nil {
		responses = []string{ResponseTypeCode}
	}
	m.ResponseTypes = []string{}
	if slices.Contains(responses, ResponseTypeCode) {
		m.ResponseTypes = []string{ResponseTypeCode}
	}
	uris, err := list("redirect_uris")
	if err != nil {
		return nil, err
	}
	if len(uris) > maxRedirectURIs {
		return nil, &Error{Status: 400, Code: "invalid_redirect_uri", Description: "too many redirect_uris"}
	}
	for _, r := range uris {
		if err := checkRedirectURI(r, m.ApplicationType, base); err != nil {
			return nil, err
		}
		if !slices.Contains(m.RedirectURIs, r) {
			m.RedirectURIs = append(m.RedirectURIs, r)
		}
	}
	if slices.Contains(m.GrantTypes, GrantAuthorizationCode) {
		if len(m.RedirectURIs) == 0 {
			return nil, &Error{Status: 400, Code: "invalid_redirect_uri", Description: "the authorization_code grant needs redirect_uris"}
		}
		if len(m.ResponseTypes) == 0 {
			return nil, badMetadata("the authorization_code grant needs the code response type")
		}
	}
	return m, nil
}

// validTag: a BCP 47 language tag's characters, at most 35.
func validTag(tag string) bool {
	if tag == "" || len(tag) > 35 {
		return false
	}
	for _, c := range tag {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func badMetadata(desc string) *Error {
	return &Error{Status: 400, Code: "invalid_client_metadata", Description: desc}
}

func badRedirect(desc string) *Error {
	return &Error{Status: 400, Code: "invalid_redirect_uri", Description: desc}
}

// checkClientURI: required, https, no user or password, a host.
func checkClientURI(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, badMetadata("client_uri is required")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Hostname() == "" {
		return nil, badMetadata("client_uri must be an https URL without user or password")
	}
	return u, nil
}

// onHost reports whether host is base or a subdomain of it.
func onHost(host, base string) bool {
	host, base = strings.ToLower(host), strings.ToLower(base)
	return host != "" && (host == base || strings.HasSuffix(host, "."+base))
}

// loopback reports whether host is one of the spec's loopback names.
func loopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// checkRedirectURI applies the spec's redirect URI rules (RFC 8252 7 for
// native clients).
func checkRedirectURI(raw, appType string, base *url.URL) error {
	if len(raw) > maxURILen {
		return badRedirect("redirect URI too long")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return badRedirect("redirect URI " + quote(raw) + " is not an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return badRedirect("redirect URI " + quote(raw) + " must not have a fragment")
	}
	if u.User != nil {
		return badRedirect("redirect URI " + quote(raw) + " must not have a user or password")
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "https":
		// A web client's, or a native client's claimed https URI.
		if !onHost(u.Hostname(), base.Hostname()) {
			return badRedirect("redirect URI " + quote(raw) + " must be on the client_uri's host or a subdomain of it")
		}
		return nil
	case appType == "native" && scheme == "http":
		if !loopback(u.Hostname()) {
			return badRedirect("an http redirect URI must be on localhost, 127.0.0.1 or [::1]")
		}
		if u.Port() != "" {
			return badRedirect("a loopback redirect URI must not have a port: any port is accepted")
		}
		return nil
	case appType == "native":
		// A private-use scheme: the client_uri's host reversed, no
		// authority.
		if u.Host != "" || strings.HasPrefix(u.Opaque, "//") || strings.HasPrefix(raw[len(u.Scheme)+1:], "//") {
			return badRedirect("a private-use scheme redirect URI must not have an authority")
		}
		if !strings.Contains(scheme, ".") || !reverseOf(scheme, base.Hostname()) {
			return badRedirect("the scheme of " + quote(raw) + " must be the client_uri's host in reverse-DNS notation")
		}
		return nil
	}
	return badRedirect("a web client's redirect URI must use https")
}

// reverseOf reports whether scheme starts with host in reverse-DNS
// notation (com.example.app for example.com).
func reverseOf(scheme, host string) bool {
	if net.ParseIP(host) != nil {
		return false
	}
	parts := strings.Split(strings.ToLower(host), ".")
	slices.Reverse(parts)
	rev := strings.Join(parts, ".")
	return scheme == rev || strings.HasPrefix(scheme, rev+".")
}

// matchRedirectURI reports whether an authorization request's redirect
// URI is one registered: exactly, or a native client's loopback URI with
// any port.
func (m *ClientMetadata) matchRedirectURI(raw string) bool {
	if slices.Contains(m.RedirectURIs, raw) {
		return true
	}
	if m.ApplicationType != "native" {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || !loopback(u.Hostname()) || u.Port() == "" {
		return false
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	u.Host = host
	return slices.Contains(m.RedirectURIs, u.String())
}

func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return "\"" + s + "\""
}
