package httputil

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"unicode/utf8"

	"luxchat/internal/matrix/errcode"
)

// ReadJSON reads the body, which must be a JSON object in valid UTF-8, and
// decodes it into dst. Malformed JSON is M_NOT_JSON; a value of the wrong
// type is M_BAD_JSON; an oversized body is M_TOO_LARGE.
func (r *Request) ReadJSON(dst any) error {
	raw, err := r.Body()
	if err != nil {
		return err
	}
	return DecodeJSON(raw, dst)
}

// Body returns the raw request body.
func (r *Request) Body() ([]byte, error) {
	if r.Request.Body == nil {
		return nil, nil
	}
	raw, err := io.ReadAll(r.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errcode.TooLarge("request body too large")
		}
		if e, ok := errcode.As(err); ok {
			return nil, e // a body that stalled
		}
		return nil, errcode.Unknown("could not read request body").Wrap(err)
	}
	return raw, nil
}

// DecodeJSON decodes an object body with the spec's error codes.
func DecodeJSON(raw []byte, dst any) error {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		trimmed = []byte("{}")
	}
	if !utf8.Valid(trimmed) {
		return errcode.NotJSON("body is not valid UTF-8")
	}
	if !json.Valid(trimmed) {
		return errcode.NotJSON("body is not valid JSON")
	}
	if trimmed[0] != '{' {
		return errcode.BadJSON("body must be a JSON object")
	}
	if err := json.Unmarshal(trimmed, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "body"
			}
			return errcode.BadJSON("%s: expected %s", field, te.Type.String())
		}
		return errcode.BadJSON("invalid body: %v", err)
	}
	return nil
}

// PathValue returns a path variable.
func (r *Request) Var(name string) string { return r.Request.PathValue(name) }

// Query returns a query parameter.
func (r *Request) Query(name string) string { return r.queryValues().Get(name) }

// MaxQueryInt is the largest integer a query parameter may hold: the
// spec's integer range (what JSON numbers carry exactly, 2^53-1).
const MaxQueryInt = 1<<53 - 1

// QueryInt parses a count, size, timeout or timestamp query parameter
// (limit, timeout, timeout_ms, ts, ...), def when absent. Every such
// parameter is a non-negative integer within the spec's integer range:
// anything else is M_INVALID_PARAM, never clamped or silently ignored.
func (r *Request) QueryInt(name string, def int64) (int64, error) {
	return ParseQueryInt(name, r.queryValues().Get(name), def)
}

// ParseQueryInt is QueryInt on a value already read ("" is absent).
func ParseQueryInt(name, v string, def int64) (int64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange), err == nil && n > MaxQueryInt:
		return 0, errcode.InvalidParam("%s is out of range", name)
	case err != nil:
		return 0, errcode.InvalidParam("%s must be an integer", name)
	case n < 0:
		return 0, errcode.InvalidParam("%s must not be negative", name)
	}
	return n, nil
}

// QueryBool parses a boolean query parameter ("true"/"false").
func (r *Request) QueryBool(name string) (bool, error) {
	switch r.queryValues().Get(name) {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, errcode.InvalidParam("%s must be true or false", name)
}
