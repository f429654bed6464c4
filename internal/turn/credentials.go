package turn

import (
	"crypto/hmac"
	"crypto/sha1" // #nosec: the TURN REST API's scheme is HMAC-SHA1
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Grant is one set of TURN credentials for a client, the body of
// GET /voip/turnServer.
type Grant struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	URIs     []string `json:"uris"`
	TTL      int64    `json:"ttl"` // seconds
}

// Issuer makes credentials that the embedded server (or a coturn with
// use-auth-secret and the same static-auth-secret) accepts until they
// expire. It is safe for concurrent use.
type Issuer struct {
	secret []byte
	ttl    time.Duration
	uris   func() []string
	now    func() time.Time
}

// NewIssuer returns an Issuer signing with secret; uris is asked for the
// URIs at each grant (the embedded server's port is known once it
// listens).
func NewIssuer(secret string, ttl time.Duration, uris func() []string) *Issuer {
	return &Issuer{secret: []byte(secret), ttl: ttl, uris: uris, now: time.Now}
}

// Grant returns credentials for userID valid for the issuer's TTL.
func (i *Issuer) Grant(userID string) Grant {
	username, password := Credentials(i.secret, userID, i.now().Add(i.ttl))
	return Grant{Username: username, Password: password, URIs: i.uris(), TTL: int64(i.ttl / time.Second)}
}

// Credentials returns the username "<expiry unix seconds>:<userID>" and
// its password base64(HMAC-SHA1(secret, username)).
func Credentials(secret []byte, userID string, expiry time.Time) (username, password string) {
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + userID
	return username, sign(secret, username)
}

func sign(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// parseUsername splits a credential's username into its expiry and user
// id.
func parseUsername(username string) (expiry time.Time, userID string, ok bool) {
	ts, user, found := strings.Cut(username, ":")
	if !found || user == "" {
		return time.Time{}, "", false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, "", false
	}
	return time.Unix(sec, 0), user, true
}
