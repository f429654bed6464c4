package clientapi

import (
	"strings"

	"luxchat/internal/matrix/errcode"
)

// maxEventIDBytes is the spec's bound on an event id, sigil included
// (appendices, "Event IDs").
const maxEventIDBytes = 255

// validEventID reports whether id could name an event: the $ sigil and at
// most 255 bytes.
func validEventID(id string) bool {
	return len(id) > 1 && len(id) <= maxEventIDBytes && strings.HasPrefix(id, "$")
}

// eventIDToWrite checks an event id that a request would act on (redact,
// receipt, read marker, report): a malformed one is M_INVALID_PARAM.
func eventIDToWrite(id, what string) error {
	if !validEventID(id) {
		return errcode.InvalidParam("%s is not a valid event id (a $ sigil and at most %d bytes)", what, maxEventIDBytes)
	}
	return nil
}

// eventIDToRead checks an event id that a request would read: no event
// has a malformed id, so it is not found.
func eventIDToRead(id string) error {
	if !validEventID(id) {
		return errcode.NotFound("event not found")
	}
	return nil
}
