package delayed

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Listing delayed events with MSC4486's filters and pagination.
//
// The parameters are read under their unstable names
// (org.matrix.msc4486.from_ts, ...) or their stable ones; the unstable
// name wins when both are given. Without status, MSC4486 lists every
// delayed event, scheduled or finalised, while MSC4140's plain listing
// (no parameters) shows the scheduled ones only: so a request naming
// none of from_ts, to_ts, dir, room_id or type lists scheduled events,
// one naming any lists all. status=finalised, the form of an earlier
// MSC4140 draft, lists the finalised events most recently finalised
// first (Finalised) and takes none of the filters.

const msc4486 = "org.matrix.msc4486."

// ListQuery is a parsed listing request.
type ListQuery struct {
	// Finalised: the earlier form, status=finalised (Finalised).
	Finalised bool
	Status    store.DelayedStatus
	RoomID    string
	Type      string
	FromTS    *int64
	ToTS      *int64
	Backward  bool
	// From is the page token ("": the first page).
	From string
}

var statuses = map[string]store.DelayedStatus{
	"scheduled": store.DelayedScheduled,
	"sent":      store.DelayedStatusSent,
	"cancelled": store.DelayedStatusCancelled,
	"failed":    store.DelayedStatusFailed,
	"error":     store.DelayedStatusFailed, // the spelling of one of MSC4486's examples
}

// ParseListQuery reads the query of GET .../delayed_events. A value it
// does not support is M_INVALID_PARAM.
func ParseListQuery(q url.Values) (ListQuery, error) {
	get := func(name string) (string, bool) {
		if q.Has(msc4486 + name) {
			return q.Get(msc4486 + name), true
		}
		return q.Get(name), q.Has(name)
	}
	var lq ListQuery
	filtered := false
	if v, ok := get("dir"); ok {
		filtered = true
		switch v {
		case "f":
		case "b":
			lq.Backward = true
		default:
			return lq, errcode.InvalidParam("dir must be f or b, not %q", v)
		}
	}
	for _, p := range []struct {
		name string
		dst  **int64
	}{{"from_ts", &lq.FromTS}, {"to_ts", &lq.ToTS}} {
		v, ok := get(p.name)
		if !ok {
			continue
		}
		filtered = true
		ts, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ts < 0 {
			return lq, errcode.InvalidParam("%s must be a timestamp in milliseconds, not %q", p.name, v)
		}
		*p.dst = &ts
	}
	if v, ok := get("room_id"); ok {
		filtered = true
		if !strings.HasPrefix(v, "!") || len(v) < 2 || len(v) > 255 {
			return lq, errcode.InvalidParam("room_id must be a room id, not %q", v)
		}
		lq.RoomID = v
	}
	if v, ok := get("type"); ok {
		filtered = true
		if v == "" || len(v) > 255 {
			return lq, errcode.InvalidParam("type must be an event type of 1 to 255 bytes")
		}
		lq.Type = v
	}
	lq.From, _ = get("from")
	lq.Status = store.DelayedScheduled
	if filtered {
		lq.Status = store.DelayedAny
	}
	if v, ok := get("status"); ok {
		if v == "finalised" {
			if filtered {
				return lq, errcode.InvalidParam("status=finalised takes no filters: use status sent, cancelled or failed with them")
			}
			lq.Finalised = true
			return lq, nil
		}
		st, known := statuses[v]
		if !known {
			return lq, errcode.InvalidParam("status must be scheduled, sent, cancelled or failed, not %q", v)
		}
		lq.Status = st
	}
	return lq, nil
}

// List returns a page of a user's delayed events as lq selects them, in
// the order of their send time (the latest first when lq.Backward), and
// the token of the next page ("" at the end).
func (s *Service) List(ctx context.Context, userID string, lq ListQuery) ([]store.DelayedEvent, string, error) {
	if lq.Finalised {
		return s.Finalised(ctx, userID, lq.From)
	}
	q := store.DelayedQuery{UserID: userID, RoomID: lq.RoomID, Type: lq.Type, Status: lq.Status, FromTS: lq.FromTS, ToTS: lq.ToTS,
		Backward: lq.Backward, Limit: pageSize + 1}
	if lq.From != "" {
		after, err := parseToken(lq.From)
		if err != nil {
			return nil, "", err
		}
		q.After = &after
	}
	rows, err := s.store.ListDelayedEvents(ctx, q)
	if err != nil {
		return nil, "", fmt.Errorf("list delayed events: %w", err)
	}
	next := ""
	if len(rows) > pageSize {
		rows = rows[:pageSize]
		last := rows[len(rows)-1]
		next = strconv.FormatInt(last.DueMS, 10) + "_" + strconv.FormatInt(last.Seq, 10)
	}
	return rows, next, nil
}

// parseToken reads a page token: the send time and sequence number of
// the last event of the previous page.
func parseToken(from string) ([2]int64, error) {
	d, q, ok := strings.Cut(from, "_")
	due, err1 := strconv.ParseInt(d, 10, 64)
	seq, err2 := strconv.ParseInt(q, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return [2]int64{}, errcode.InvalidParam("invalid from token")
	}
	return [2]int64{due, seq}, nil
}
