package oauth

import (
	"strings"
)

// Scope tokens (spec "Allocated scope tokens", and MSC2967's unstable
// forms that clients written before v1.15 still send).
const (
	ScopeAPI             = "urn:matrix:client:api:*"
	scopeDevicePrefix    = "urn:matrix:client:device:"
	ScopeAPIMSC2967      = "urn:matrix:org.matrix.msc2967.client:api:*"
	scopeDeviceMSC2967   = "urn:matrix:org.matrix.msc2967.client:device:"
	maxScopeLen          = 1024
	maxScopeDeviceIDLen  = 255
	deviceIDAlphabet     = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	generatedDeviceIDLen = 10
)

// Scope is a parsed scope: full client API access and one device.
type Scope struct {
	// DeviceID is the device the scope allocates; "" lets the server
	// pick one.
	DeviceID string
	// Unstable: the client asked in MSC2967's names, and is answered in
	// them.
	Unstable bool
}

// ParseScope checks a requested scope. Full access (urn:matrix:client:api:*)
// is required, at most one device token may be given, its id made of RFC
// 3986's unreserved characters; openid is accepted and left out of the
// granted scope; anything else is invalid_scope.
func ParseScope(raw string) (Scope, error) {
	var sc Scope
	if len(raw) > maxScopeLen {
		return sc, invalidScope("scope too long")
	}
	api, devices := false, 0
	for _, tok := range strings.Fields(raw) {
		switch {
		case tok == ScopeAPI:
			api = true
		case tok == ScopeAPIMSC2967:
			api, sc.Unstable = true, true
		case strings.HasPrefix(tok, scopeDevicePrefix) || strings.HasPrefix(tok, scopeDeviceMSC2967):
			id, unstable := strings.TrimPrefix(tok, scopeDevicePrefix), false
			if strings.HasPrefix(tok, scopeDeviceMSC2967) {
				id, unstable = strings.TrimPrefix(tok, scopeDeviceMSC2967), true
			}
			if !validScopeDeviceID(id) {
				return sc, invalidScope("the device id must be 1 to 255 of A-Z a-z 0-9 - . _ ~")
			}
			devices++
			if devices > 1 && id != sc.DeviceID {
				return sc, invalidScope("at most one device may be asked for")
			}
			sc.DeviceID = id
			sc.Unstable = sc.Unstable || unstable
		case tok == "openid":
		default:
			return sc, invalidScope("unknown scope " + quote(tok))
		}
	}
	if !api {
		return sc, invalidScope("the scope must include " + ScopeAPI)
	}
	return sc, nil
}

// String is the granted scope, in the names the client asked in.
func (sc Scope) String() string {
	if sc.Unstable {
		return ScopeAPIMSC2967 + " " + scopeDeviceMSC2967 + sc.DeviceID
	}
	return ScopeAPI + " " + scopeDevicePrefix + sc.DeviceID
}

func validScopeDeviceID(id string) bool {
	if id == "" || len(id) > maxScopeDeviceIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

func invalidScope(desc string) *Error {
	return &Error{Status: 400, Code: "invalid_scope", Description: desc}
}
