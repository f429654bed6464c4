package fedapi

import (
	"cmp"
	"errors"
	"net/http"
	"strings"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/signing"
)

// The API is the federation router's httputil.ServerVerifier: request
// authentication ("Authentication" in the Server-Server API). A request
// carries an X-Matrix Authorization header naming us as destination (or
// none), from an origin that federation.allowed_servers allows, signed
// over method, uri, origin, destination and content with the origin's
// key. A missing or bad signature is 401 M_UNAUTHORIZED; an origin we do
// not federate with is 403 M_FORBIDDEN. With several headers, the first
// that verifies wins; otherwise the first refusal is the answer.
var _ httputil.ServerVerifier = (*API)(nil)

// Precheck refuses r for what its X-Matrix headers alone say: who claims
// to call, and whether we federate with them, is known before any body
// is read, so that servers outside federation.allowed_servers cannot
// make us wait for, or buffer, what they send.
func (a *API) Precheck(r *http.Request) error {
	candidates, err := a.candidates(r)
	if len(candidates) == 0 {
		return err
	}
	return nil
}

// Verify checks the signature of a request that passed Precheck over its
// body and returns the origin, which Contacted is told of.
func (a *API) Verify(r *http.Request, body []byte) (string, error) {
	candidates, firstErr := a.candidates(r)
	for _, hv := range candidates {
		origin, err := a.verify(r, hv, body)
		if err == nil {
			if a.Contacted != nil {
				a.Contacted(origin)
			}
			return origin, nil
		}
		firstErr = cmp.Or(firstErr, err)
	}
	if firstErr == nil { // Precheck was not called
		firstErr = errcode.Unauthorized("missing X-Matrix authorization")
	}
	return "", firstErr
}

// candidates returns the X-Matrix headers of r that pass precheck, and
// the first refusal met.
func (a *API) candidates(r *http.Request) ([]string, error) {
	var headers []string
	for _, v := range r.Header.Values("Authorization") {
		if len(v) > 8 && strings.EqualFold(v[:8], "X-Matrix") {
			headers = append(headers, v)
		}
	}
	if len(headers) == 0 {
		return nil, errcode.Unauthorized("missing X-Matrix authorization")
	}
	var firstErr error
	candidates := headers[:0]
	for _, hv := range headers {
		if err := a.precheck(hv); err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		candidates = append(candidates, hv)
	}
	return candidates, firstErr
}

// precheck refuses an X-Matrix header for what it says alone: malformed,
// for another destination, or from an origin we do not federate with.
func (a *API) precheck(header string) error {
	x, err := signing.ParseXMatrix(header)
	if err != nil {
		return errcode.Unauthorized("invalid X-Matrix authorization")
	}
	if x.Destination != "" && x.Destination != a.Config.ServerName {
		return errcode.Unauthorized("request is for another destination")
	}
	if err := a.Policy.Allowed(x.Origin); err != nil {
		return errcode.Forbidden("federation with %s is not allowed", x.Origin)
	}
	return nil
}

// verify checks the signature of a header that passed precheck.
func (a *API) verify(r *http.Request, header string, body []byte) (string, error) {
	self := a.Config.ServerName
	x, err := signing.ParseXMatrix(header) // passed precheck
	if err != nil {
		return "", errcode.Unauthorized("invalid X-Matrix authorization")
	}
	pub, err := a.Keys.RequestKey(r.Context(), x.Origin, x.Key)
	if err != nil {
		httputil.Logger(r.Context()).Info("federation request: origin key unavailable", "origin", x.Origin, "key", x.Key, "err", err)
		return "", errcode.Unauthorized("cannot verify the signature of %s", x.Origin)
	}
	if err := signing.VerifyRequest(x, pub, self, r.Method, r.RequestURI, body); err != nil {
		if errors.Is(err, signing.ErrBadJSON) {
			return "", errcode.Unauthorized("request content is not JSON")
		}
		return "", errcode.Unauthorized("invalid signature")
	}
	return x.Origin, nil
}
