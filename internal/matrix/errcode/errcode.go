// Package errcode defines Matrix errors (M_* codes with an HTTP status and a
// message that is safe to show to clients): the only error JSON shape the
// server writes.
//
// It imports only the standard library.
package errcode

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error is a client-safe Matrix error.
type Error struct {
	Code    string
	Status  int
	Message string
	// Extra holds additional top-level keys of the JSON body, such as
	// retry_after_ms or soft_logout.
	Extra map[string]any
	// cause is the internal error behind this one, for logs only: it is
	// neither in the JSON body nor in Error(), which stay client-safe.
	cause error
}

// Error is the client-safe text (code and message), without the cause.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the cause, if any (see Wrap).
func (e *Error) Unwrap() error { return e.cause }

// Wrap returns a copy of e that keeps cause for the logs, so that an
// internal error turned into a client-safe one is not lost. The client
// still sees only the code, message and extra keys.
func (e *Error) Wrap(cause error) *Error {
	c := *e
	c.cause = cause
	return &c
}

// MarshalJSON renders {"errcode": …, "error": …, extra…}.
func (e *Error) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, 2+len(e.Extra))
	for k, v := range e.Extra {
		m[k] = v
	}
	m["errcode"] = e.Code
	m["error"] = e.Message
	return json.Marshal(m)
}

// With returns a copy of e with an extra key.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Extra = make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	c.Extra[key] = value
	return &c
}

// As extracts an *Error from err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

func newf(code string, status int, format string, args ...any) *Error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Code: code, Status: status, Message: msg}
}

// Constructors, one per code, with the status the spec pairs with it.
func Forbidden(format string, a ...any) *Error {
	return newf("M_FORBIDDEN", http.StatusForbidden, format, a...)
}
func UnknownToken(format string, a ...any) *Error {
	return newf("M_UNKNOWN_TOKEN", http.StatusUnauthorized, format, a...)
}
func MissingToken(format string, a ...any) *Error {
	return newf("M_MISSING_TOKEN", http.StatusUnauthorized, format, a...)
}
func BadJSON(format string, a ...any) *Error {
	return newf("M_BAD_JSON", http.StatusBadRequest, format, a...)
}
func NotJSON(format string, a ...any) *Error {
	return newf("M_NOT_JSON", http.StatusBadRequest, format, a...)
}
func NotFound(format string, a ...any) *Error {
	return newf("M_NOT_FOUND", http.StatusNotFound, format, a...)
}
func LimitExceeded(retryAfterMS int64) *Error {
	return newf("M_LIMIT_EXCEEDED", http.StatusTooManyRequests, "too many requests").With("retry_after_ms", retryAfterMS)
}
func Unrecognized(format string, a ...any) *Error {
	return newf("M_UNRECOGNIZED", http.StatusNotFound, format, a...)
}
func MethodNotAllowed() *Error {
	return newf("M_UNRECOGNIZED", http.StatusMethodNotAllowed, "method not allowed")
}
func Unknown(format string, a ...any) *Error {
	return newf("M_UNKNOWN", http.StatusBadRequest, format, a...)
}
func Unauthorized(format string, a ...any) *Error {
	return newf("M_UNAUTHORIZED", http.StatusUnauthorized, format, a...)
}
func UserDeactivated(format string, a ...any) *Error {
	return newf("M_USER_DEACTIVATED", http.StatusForbidden, format, a...)
}
func UserLocked(format string, a ...any) *Error {
	return newf("M_USER_LOCKED", http.StatusUnauthorized, format, a...).With("soft_logout", true)
}
func UserSuspended(format string, a ...any) *Error {
	return newf("M_USER_SUSPENDED", http.StatusForbidden, format, a...)
}
func UserInUse(format string, a ...any) *Error {
	return newf("M_USER_IN_USE", http.StatusBadRequest, format, a...)
}
func InvalidUsername(format string, a ...any) *Error {
	return newf("M_INVALID_USERNAME", http.StatusBadRequest, format, a...)
}
func RoomInUse(format string, a ...any) *Error {
	return newf("M_ROOM_IN_USE", http.StatusBadRequest, format, a...)
}
func InvalidRoomState(format string, a ...any) *Error {
	return newf("M_INVALID_ROOM_STATE", http.StatusBadRequest, format, a...)
}
func UnsupportedRoomVersion(format string, a ...any) *Error {
	return newf("M_UNSUPPORTED_ROOM_VERSION", http.StatusBadRequest, format, a...)
}
func IncompatibleRoomVersion(format string, a ...any) *Error {
	return newf("M_INCOMPATIBLE_ROOM_VERSION", http.StatusBadRequest, format, a...)
}
func BadState(format string, a ...any) *Error {
	return newf("M_BAD_STATE", http.StatusBadRequest, format, a...)
}
func GuestAccessForbidden(format string, a ...any) *Error {
	return newf("M_GUEST_ACCESS_FORBIDDEN", http.StatusForbidden, format, a...)
}
func MissingParam(format string, a ...any) *Error {
	return newf("M_MISSING_PARAM", http.StatusBadRequest, format, a...)
}
func InvalidParam(format string, a ...any) *Error {
	return newf("M_INVALID_PARAM", http.StatusBadRequest, format, a...)
}
func TooLarge(format string, a ...any) *Error {
	return newf("M_TOO_LARGE", http.StatusRequestEntityTooLarge, format, a...)
}
func Exclusive(format string, a ...any) *Error {
	return newf("M_EXCLUSIVE", http.StatusBadRequest, format, a...)
}
func WeakPassword(format string, a ...any) *Error {
	return newf("M_WEAK_PASSWORD", http.StatusBadRequest, format, a...)
}
func ResourceLimitExceeded(format string, a ...any) *Error {
	return newf("M_RESOURCE_LIMIT_EXCEEDED", http.StatusForbidden, format, a...)
}
func CannotLeaveServerNoticeRoom(format string, a ...any) *Error {
	return newf("M_CANNOT_LEAVE_SERVER_NOTICE_ROOM", http.StatusForbidden, format, a...)
}
func Internal() *Error {
	return newf("M_UNKNOWN", http.StatusInternalServerError, "internal server error")
}

// UnknownPos is simplified sliding sync's answer to a pos the server does
// not know (expired, or from before a restart): the client starts over.
func UnknownPos(format string, a ...any) *Error {
	return newf("M_UNKNOWN_POS", http.StatusBadRequest, format, a...)
}

// Thread subscriptions (MSC4306), under their unstable names: the cause
// of an automatic subscription is not in the thread; an automatic
// subscription is refused because the user unsubscribed after its cause.
func NotInThread(format string, a ...any) *Error {
	return newf("IO.ELEMENT.MSC4306.M_NOT_IN_THREAD", http.StatusBadRequest, format, a...)
}
func ConflictingUnsubscription(format string, a ...any) *Error {
	return newf("IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION", http.StatusConflict, format, a...)
}
