package clientapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"luxchat/internal/filter"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/sync"
)

// maxSyncTimeout bounds long polls.
const maxSyncTimeout = 5 * time.Minute

// GET /sync
func (a *API) sync(r *httputil.Request) (any, error) {
	timeoutMS, err := r.QueryInt("timeout", 0)
	if err != nil {
		return nil, err
	}
	fullState, err := r.QueryBool("full_state")
	if err != nil {
		return nil, err
	}
	f, err := a.loadFilter(r, r.Query("filter"))
	if err != nil {
		return nil, err
	}
	// state_after (MSC4222), under the key of the parameter used.
	stateAfter := ""
	if on, err := r.QueryBool("org.matrix.msc4222.use_state_after"); err != nil {
		return nil, err
	} else if on {
		stateAfter = "org.matrix.msc4222.state_after"
	}
	if on, err := r.QueryBool("use_state_after"); err != nil {
		return nil, err
	} else if on {
		stateAfter = "state_after"
	}
	timeout := min(time.Duration(max(timeoutMS, 0))*time.Millisecond, maxSyncTimeout)
	req := sync.Request{
		UserID: r.Session.UserID, DeviceID: r.Session.DeviceID, Since: r.Query("since"),
		Timeout: timeout, FullState: fullState, Filter: f, SetPresence: r.Query("set_presence"),
		StateAfter: stateAfter,
	}
	if req.Since == "" || timeout == 0 || fullState || !r.CanPark() {
		return syncAnswer(a.Sync.Sync(r.Context(), req))
	}
	// A long poll: first its presence and, when something it wants moved
	// since its token, a look without waiting, here (what may go deep);
	// when nothing is there, the poll is parked (httputil.Park) and holds little: a
	// waiter for the user's news and a timer, no goroutine (parkedPoll).
	start := time.Now()
	look := req
	look.Timeout = 0
	news, since, err := a.Sync.PollStart(r.Context(), look)
	if err != nil {
		return nil, err
	}
	if news {
		resp, err := a.Sync.Sync(r.Context(), look)
		if err != nil || !resp.Empty() || time.Since(start) >= timeout {
			return syncAnswer(resp, err)
		}
		since = resp.NextBatch
	}
	sl := &syncLooker{sync: a.Sync, req: look, until: start.Add(timeout)}
	// Copies: substrings would keep the request's line.
	sl.req.Since, sl.req.SetPresence = strings.Clone(since), strings.Clone(req.SetPresence)
	return park(r, sl), nil
}

// syncLooker is a parked /sync poll's side (parkedPoll): its request,
// whose since token moves on as looks find nothing it shows.
type syncLooker struct {
	sync  *sync.Service
	req   sync.Request // Timeout 0
	until time.Time
}

func (sl *syncLooker) deadline() time.Time { return sl.until }

func (sl *syncLooker) wakeAfter(w sync.Waker) error { return sl.sync.WakeAfter(sl.req, w) }

func (sl *syncLooker) stopWake(w sync.Waker) { sl.sync.StopWake(sl.req.UserID, w) }

func (sl *syncLooker) look(ctx context.Context, late bool) (any, bool, error) {
	news, since, err := sl.sync.News(sl.req)
	if err != nil {
		return nil, true, err
	}
	if news || late {
		resp, err := sl.sync.Sync(ctx, sl.req)
		if err != nil || !resp.Empty() || late {
			out, err := syncAnswer(resp, err)
			return out, true, err
		}
		since = resp.NextBatch // nothing this poll shows: wait on
	}
	// Nothing this poll shows (news of a room it filters out, presence
	// it does not want): wait again from there.
	sl.req.Since = since
	return nil, false, nil
}

func syncAnswer(resp *sync.Response, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return &httputil.Response{Raw: resp.JSON()}, nil
}

// loadFilter reads an inline JSON filter or a stored filter id.
func (a *API) loadFilter(r *httputil.Request, spec string) (*filter.Filter, error) {
	if spec == "" {
		return nil, nil
	}
	// Parsed filters are kept: an inline filter comes again with every
	// sync, and stored filters never change.
	inline := strings.HasPrefix(strings.TrimSpace(spec), "{")
	key := filterKey{"inline", spec} // no string built per poll
	if !inline {
		key = filterKey{r.Session.UserID, spec}
	}
	if f, ok := a.filters.get(key); ok {
		return f, nil
	}
	raw := []byte(spec)
	if !inline {
		id, err := strconv.ParseInt(spec, 10, 64)
		if err != nil {
			return nil, errcode.InvalidParam("filter must be a filter id or a JSON object")
		}
		stored, err := a.Sync.Filter(r.Context(), r.Session.UserID, id)
		if err != nil {
			return nil, err
		}
		raw = []byte(stored)
		if f, ok := a.filters.get(filterKey{"text", string(stored)}); ok {
			a.filters.put(key, f)
			return f, nil
		}
	}
	f, err := filter.Parse(raw)
	if err != nil {
		return nil, errcode.InvalidParam("invalid filter: %v", err)
	}
	a.filters.put(key, f)
	if !inline {
		a.filters.put(filterKey{"text", string(raw)}, f)
	}
	return f, nil
}

func (a *API) ownUser(r *httputil.Request) error {
	if r.Var("userId") != r.Session.UserID {
		return errcode.Forbidden("you may only act for yourself")
	}
	return nil
}

// POST /user/{userId}/filter
func (a *API) putFilter(r *httputil.Request) (any, error) {
	if err := a.ownUser(r); err != nil {
		return nil, err
	}
	raw, err := r.Body()
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := httputil.DecodeJSON(raw, &obj); err != nil {
		return nil, err
	}
	f, err := filter.Parse(raw)
	if err != nil {
		return nil, errcode.BadJSON("invalid filter: %v", err)
	}
	id, err := a.Sync.PutFilter(r.Context(), r.Session.UserID, f)
	if err != nil {
		return nil, err
	}
	return map[string]string{"filter_id": strconv.FormatInt(id, 10)}, nil
}

// GET /user/{userId}/filter/{filterId}
func (a *API) getFilter(r *httputil.Request) (any, error) {
	if err := a.ownUser(r); err != nil {
		return nil, err
	}
	id, err := strconv.ParseInt(r.Var("filterId"), 10, 64)
	if err != nil {
		return nil, errcode.NotFound("unknown filter")
	}
	return a.Sync.Filter(r.Context(), r.Session.UserID, id)
}

// PUT /rooms/{roomId}/typing/{userId}
func (a *API) typing(r *httputil.Request) (any, error) {
	if err := a.ownUser(r); err != nil {
		return nil, err
	}
	var body struct {
		Typing  *bool  `json:"typing"`
		Timeout *int64 `json:"timeout"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Typing == nil {
		return nil, errcode.BadJSON("typing is required")
	}
	timeout := 30 * time.Second
	if body.Timeout != nil {
		timeout = min(max(time.Duration(*body.Timeout)*time.Millisecond, time.Second), 2*time.Minute)
	}
	if err := a.Sync.SetTyping(r.Context(), r.Var("roomId"), r.Session.UserID, *body.Typing, timeout); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// POST /rooms/{roomId}/receipt/{receiptType}/{eventId}
func (a *API) receipt(r *httputil.Request) (any, error) {
	var body struct {
		ThreadID string `json:"thread_id"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	typ := r.Var("receiptType")
	roomID, eventID := r.Var("roomId"), r.Var("eventId")
	if err := eventIDToWrite(eventID, "eventId"); err != nil {
		return nil, err
	}
	switch typ {
	case "m.read", "m.read.private":
		if err := a.Sync.SetReceipt(r.Context(), roomID, r.Session.UserID, typ, eventID, body.ThreadID); err != nil {
			return nil, err
		}
	case "m.fully_read":
		if body.ThreadID != "" {
			return nil, errcode.BadJSON("m.fully_read cannot be threaded")
		}
		if err := a.Sync.SetFullyRead(r.Context(), roomID, r.Session.UserID, eventID); err != nil {
			return nil, err
		}
	default:
		return nil, errcode.InvalidParam("unknown receipt type %q", typ)
	}
	return struct{}{}, nil
}

// POST /rooms/{roomId}/read_markers
func (a *API) readMarkers(r *httputil.Request) (any, error) {
	var body struct {
		FullyRead   string `json:"m.fully_read"`
		Read        string `json:"m.read"`
		ReadPrivate string `json:"m.read.private"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	roomID := r.Var("roomId")
	for name, id := range map[string]string{"m.fully_read": body.FullyRead, "m.read": body.Read, "m.read.private": body.ReadPrivate} {
		if id == "" {
			continue
		}
		if err := eventIDToWrite(id, name); err != nil {
			return nil, err
		}
	}
	if body.FullyRead != "" {
		if err := a.Sync.SetFullyRead(r.Context(), roomID, r.Session.UserID, body.FullyRead); err != nil {
			return nil, err
		}
	}
	if body.Read != "" {
		if err := a.Sync.SetReceipt(r.Context(), roomID, r.Session.UserID, "m.read", body.Read, ""); err != nil {
			return nil, err
		}
	}
	if body.ReadPrivate != "" {
		if err := a.Sync.SetReceipt(r.Context(), roomID, r.Session.UserID, "m.read.private", body.ReadPrivate, ""); err != nil {
			return nil, err
		}
	}
	return struct{}{}, nil
}

// GET /presence/{userId}/status
func (a *API) getPresence(r *httputil.Request) (any, error) {
	target := r.Var("userId")
	p, err := a.Sync.PresenceOf(r.Context(), r.Session.UserID, target)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return map[string]any{"presence": "offline"}, nil
	}
	out := map[string]any{
		"presence":         p.State,
		"last_active_ago":  max(time.Now().UnixMilli()-p.LastActiveTS, 0),
		"currently_active": p.State == "online" && time.Since(time.UnixMilli(p.LastActiveTS)) < 5*time.Minute,
	}
	if p.StatusMsg.Valid {
		out["status_msg"] = p.StatusMsg.String
	}
	return out, nil
}

// PUT /presence/{userId}/status
func (a *API) putPresence(r *httputil.Request) (any, error) {
	if err := a.ownUser(r); err != nil {
		return nil, err
	}
	var body struct {
		Presence  string  `json:"presence"`
		StatusMsg *string `json:"status_msg"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	switch body.Presence {
	case "online", "offline", "unavailable":
	default:
		return nil, errcode.InvalidParam("presence must be online, offline or unavailable")
	}
	var msg sql.NullString
	if body.StatusMsg != nil {
		msg = sql.NullString{String: *body.StatusMsg, Valid: true}
	}
	if err := a.Sync.SetPresence(r.Context(), r.Session.UserID, body.Presence, msg); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// filterCache holds parsed filters under two kinds of keys: a user's
// filter id, and the filter's text, so that the thousands of users whose
// clients upload the same filter share one parsed copy. It keeps two
// generations of maxCachedFilters entries: a key used in the last
// generation moves to the current one, so that the filters of clients
// that poll stay and a full cache never drops them all at once (every
// poller would then read its filter again).
type filterCache struct {
	mu        gosync.Mutex
	cur, prev map[filterKey]*filter.Filter
}

// filterKey is a user id (which starts with '@') and a filter id, or
// "inline" and an inline filter, or "text" and a filter's text.
type filterKey struct{ owner, spec string }

const maxCachedFilters = 20000

func (c *filterCache) get(key filterKey) (*filter.Filter, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.cur[key]; ok {
		return f, true
	}
	f, ok := c.prev[key]
	if ok {
		c.putLocked(key, f)
	}
	return f, ok
}

func (c *filterCache) put(key filterKey, f *filter.Filter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(key, f)
}

func (c *filterCache) putLocked(key filterKey, f *filter.Filter) {
	key.spec = strings.Clone(key.spec) // a part of the request's line would keep all of it
	if c.cur == nil || len(c.cur) >= maxCachedFilters {
		c.prev, c.cur = c.cur, make(map[filterKey]*filter.Filter)
	}
	c.cur[key] = f
}
