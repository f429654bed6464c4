package federation

import (
	"context"
	"net/http"
	"net/url"
)

// OpenIDUserInfo asks GET /_matrix/federation/v1/openid/userinfo which user
// an OpenID token of that server was issued to. The request is unsigned:
// the token is the credential. A refused token is a *RemoteError (401).
func (c *Client) OpenIDUserInfo(ctx context.Context, destination, token string) (string, error) {
	var out struct {
		Sub string `json:"sub"`
	}
	uri := withQuery("/_matrix/federation/v1/openid/userinfo", url.Values{"access_token": {token}})
	if err := c.DoUnsigned(ctx, destination, http.MethodGet, uri, nil, &out); err != nil {
		return "", err
	}
	return out.Sub, nil
}
