package rtc

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"
)

// tokenLifetime is how long a LiveKit access token lets its bearer join:
// the hour lk-jwt-service gives. A client in a longer call keeps its
// connection; it asks again only to reconnect.
const tokenLifetime = time.Hour

// VideoGrant is the "video" claim of a LiveKit access token, with the
// field names LiveKit reads. Unset booleans are left out: LiveKit reads
// an absent canPublishData as allowed.
type VideoGrant struct {
	Room         string `json:"room"`
	RoomJoin     bool   `json:"roomJoin"`
	RoomCreate   bool   `json:"roomCreate,omitempty"`
	CanPublish   bool   `json:"canPublish"`
	CanSubscribe bool   `json:"canSubscribe"`
}

// Claims are a LiveKit access token's claims: issuer is the API key,
// subject the participant identity.
type Claims struct {
	Issuer    string     `json:"iss"`
	Subject   string     `json:"sub"`
	NotBefore int64      `json:"nbf"`
	Expiry    int64      `json:"exp"`
	Video     VideoGrant `json:"video"`
}

// jwtHeader is the one header we sign with: HMAC-SHA256, as LiveKit
// expects of API-key tokens.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// signHS256 returns the compact JWT of claims signed with secret. We only
// mint tokens (the SFU verifies them), so the standard library suffices.
func signHS256(claims Claims, secret []byte) string {
	payload, _ := json.Marshal(claims) // plain strings, numbers and booleans: cannot fail
	signing := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
