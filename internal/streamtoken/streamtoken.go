// Package streamtoken encodes sync and pagination tokens: one position per
// stream, so that each stream (events, account data, receipts, presence,
// typing, to-device, device lists) advances on its own and new streams can
// be added without breaking old tokens.
//
// It imports only the standard library.
package streamtoken

import (
	"errors"
	"strconv"
	"strings"
)

// Token is a position in every sync stream.
type Token struct {
	Events      int64
	AccountData int64
	Receipts    int64
	Presence    int64
	Typing      int64
	ToDevice    int64
	DeviceLists int64
}

// String renders "s<events>_<accountdata>_<receipts>_<presence>_<typing>_<todevice>_<devicelists>".
func (t Token) String() string {
	// Built in a buffer on the stack, one allocation for the string:
	// every answer of every long poll carries one.
	var buf [160]byte
	b := append(buf[:0], 's')
	for i, v := range t.fields() {
		if i > 0 {
			b = append(b, '_')
		}
		b = strconv.AppendInt(b, *v, 10)
	}
	return string(b)
}

func (t *Token) fields() []*int64 {
	return []*int64{&t.Events, &t.AccountData, &t.Receipts, &t.Presence, &t.Typing, &t.ToDevice, &t.DeviceLists}
}

// AheadOf reports whether t is past cur in a stream whose position never
// goes back, so that t cannot have been issued by the server whose
// position is cur (a restarted server resumes above every position it
// handed out before, see store.RestartGap). Typing (restarts at 0 with
// the process) and to-device (delivered messages are deleted) are left
// out.
func (t Token) AheadOf(cur Token) bool {
	return t.Events > cur.Events || t.AccountData > cur.AccountData || t.Receipts > cur.Receipts ||
		t.Presence > cur.Presence || t.DeviceLists > cur.DeviceLists
}

// ErrInvalid is returned for tokens this server did not issue.
var ErrInvalid = errors.New("invalid stream token")

// Parse reads a sync token. Tokens with fewer fields (from older servers)
// leave the missing streams at 0.
func Parse(s string) (Token, error) {
	var t Token
	rest, ok := strings.CutPrefix(s, "s")
	if !ok || rest == "" || len(s) > 200 {
		return t, ErrInvalid
	}
	fields := t.fields()
	for i := 0; ; i++ {
		if i == len(fields) {
			return Token{}, ErrInvalid // more fields than streams
		}
		p, more, found := strings.Cut(rest, "_")
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || v < 0 || (len(p) > 1 && p[0] == '0') {
			return Token{}, ErrInvalid
		}
		*fields[i] = v
		if !found {
			return t, nil
		}
		rest = more
	}
}

// Pagination returns a /messages token for an events position.
func Pagination(pos int64) string { return "t" + strconv.FormatInt(pos, 10) }

// backfillBand mirrors store.BackfillBand: positions below it belong to
// backfilled history, which pagination tokens may point into.
const backfillBand = -(1 << 40)

// EventsPos reads the events position of a pagination token or of a sync
// token (the spec lets clients pass either to /messages).
func EventsPos(s string) (int64, error) {
	if rest, ok := strings.CutPrefix(s, "t"); ok {
		v, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || (v < 0 && v >= backfillBand) {
			return 0, ErrInvalid
		}
		return v, nil
	}
	t, err := Parse(s)
	return t.Events, err
}
