package roomread

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"

	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// bundleEntry is what is aggregated for one parent.
type bundleEntry struct {
	// The latest valid edit: its client form up to room_id (shared with
	// ClientEvent, see rooms.Service.ClientBase), room id as a JSON string and
	// origin_server_ts. An edit is never a state event, so its unsigned
	// holds only the age.
	replaceBase  []byte
	replaceRoom  []byte
	replaceTS    int64
	thread       *store.EventRow // the latest thread event
	threadCount  int
	participants map[string]bool // senders of thread events
	refs         []string        // m.reference children, oldest first
	maxPos       int64           // newest child counted
	// summary is the parent row's aggregates the entry was built from
	// (store.EventRow.Aggregates), which a cached entry must match.
	summary string
}

// SetBundleAggregations turns bundled aggregations on (the default) or off;
// off serves events without unsigned m.relations (used to measure their
// cost).
func (s *Service) SetBundleAggregations(on bool) { s.bundlesOff.Store(!on) }

// ForgetBundles empties the cache of aggregations, so that the next pages
// compute theirs from the database (used to measure that cost).
func (s *Service) ForgetBundles() { s.rooms.BundleCache().Forget() }

// Bundles computes the bundled aggregations (unsigned m.relations) of rows
// shown to userID, keyed by event id: the latest valid edit (m.replace),
// the thread summary (m.thread) and references (m.reference). Children
// after upTo are left out, as are children from ignored users. Aggregations
// over all children are cached per parent; the rest of a page costs a
// constant number of queries whatever its size.
func (s *Service) Bundles(ctx context.Context, userID string, upTo int64, rows []*store.EventRow) (map[string]json.RawMessage, error) {
	if s.bundlesOff.Load() || len(rows) == 0 {
		return nil, nil
	}
	ignored, err := s.ignoredList(ctx, userID)
	if err != nil {
		return nil, err
	}
	return s.bundles(ctx, userID, upTo, ignored, rows, true)
}

func (s *Service) ignoredList(ctx context.Context, userID string) ([]string, error) {
	set, err := s.IgnoredUsers(ctx, userID)
	if err != nil || len(set) == 0 {
		return nil, err
	}
	out := make([]string, 0, len(set))
	for u := range set {
		out = append(out, u)
	}
	return out, nil
}

// bundles does the work of Bundles; withThreads is false for the latest
// events of threads, whose own bundles carry no thread (threads do not
// nest).
func (s *Service) bundles(ctx context.Context, userID string, upTo int64, ignored []string, rows []*store.EventRow, withThreads bool) (map[string]json.RawMessage, error) {
	pb, err := s.collectBundles(ctx, userID, upTo, ignored, rows, withThreads, false)
	if err != nil || pb == nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(pb.entries))
	for _, row := range rows {
		if e := pb.entries[row.EventID]; e != nil {
			if b, ok := pb.appendBundle(make([]byte, 0, e.size()), s, row); ok {
				out[row.EventID] = b
			}
		}
	}
	return out, nil
}

// pageBundles are the aggregations of a page's events for one Viewer.
type pageBundles struct {
	userID      string
	withThreads bool
	entries     map[string]*bundleEntry    // by parent; nil: none
	nested      map[string]json.RawMessage // bundles of latest thread events
	now         int64                      // for the age of bundled edits
}

// collectBundles finds the aggregations of rows (see Bundles); nil when no
// row can have any. dense rows are most of their room's events between
// the first and the last (see store.AggregateSummaries).
func (s *Service) collectBundles(ctx context.Context, userID string, upTo int64, ignored []string, rows []*store.EventRow, withThreads, dense bool) (*pageBundles, error) {
	var parents []*store.EventRow
	for _, row := range rows {
		if !row.StateKey.Valid { // state events receive no bundled aggregations
			parents = append(parents, row)
		}
	}
	if len(parents) == 0 {
		return nil, nil
	}
	entries := make(map[string]*bundleEntry, len(parents))
	// Cached aggregations serve viewers without an ignore list who may
	// see every child counted; the others get theirs computed.
	var exact []*store.EventRow
	if len(ignored) == 0 {
		// Rows read from the database carry their aggregates: a cached
		// entry serves them when built from the same ones, and rows
		// without any need nothing. Rows built in memory (a sync's newest)
		// rely on the cache alone.
		c := s.rooms.BundleCache()
		var missing []*store.EventRow
		for _, p := range parents {
			if p.AggregatesRead && p.Aggregates == "" {
				continue
			}
			if e, ok := cachedBundle(c, p.EventID); ok && (!p.AggregatesRead || e != nil && e.summary == p.Aggregates) {
				entries[p.EventID] = e
			} else {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			gen := c.Gen()
			if err := s.loadBundles(ctx, missing, math.MaxInt64, nil, dense, entries); err != nil {
				return nil, err
			}
			keys := make([]string, len(missing))
			loaded := make([]any, len(missing))
			for i, p := range missing {
				e := entries[p.EventID]
				if e != nil && p.AggregatesRead {
					e.summary = p.Aggregates
				}
				keys[i], loaded[i] = p.EventID, e
			}
			c.PutAll(gen, keys, loaded)
		}
		for _, p := range parents {
			if e := entries[p.EventID]; e != nil && e.maxPos > upTo {
				exact = append(exact, p)
			}
		}
	} else {
		exact = parents
	}
	if len(exact) > 0 {
		for _, p := range exact {
			delete(entries, p.EventID) // computed afresh below
		}
		if err := s.loadBundles(ctx, exact, upTo, ignored, dense, entries); err != nil {
			return nil, err
		}
	}
	pb := &pageBundles{userID: userID, withThreads: withThreads, entries: entries, now: time.Now().UnixMilli()}
	// Latest thread events carry their own bundles (their edits).
	var latest []*store.EventRow
	if withThreads {
		for _, e := range entries {
			if e != nil && e.thread != nil {
				latest = append(latest, e.thread)
			}
		}
	}
	if len(latest) > 0 {
		var err error
		if pb.nested, err = s.bundles(ctx, userID, upTo, ignored, latest, false); err != nil {
			return nil, err
		}
	}
	return pb, nil
}

// cachedBundle is the cached entry of a parent (nil for none).
func cachedBundle(c *rooms.BundleCache, parent string) (*bundleEntry, bool) {
	v, ok := c.Get(parent)
	e, _ := v.(*bundleEntry)
	return e, ok
}

// appendBundle appends the m.relations object of row to dst; false (and
// dst unchanged) when it has none.
func (pb *pageBundles) appendBundle(dst []byte, s *Service, row *store.EventRow) ([]byte, bool) {
	e := pb.entries[row.EventID]
	if e == nil {
		return dst, false
	}
	// A redacted original shows none of its edits.
	replace := e.replaceBase != nil && !row.Redacted
	thread := e.thread
	if !pb.withThreads {
		thread = nil
	}
	if !replace && thread == nil && len(e.refs) == 0 {
		return dst, false
	}
	b := append(dst, '{')
	start := len(b)
	if replace {
		// ClientEvent's form for no particular device, built here from
		// its parts.
		b = append(b, `"m.replace":`...)
		b = append(b, e.replaceBase...)
		b = append(b, `,"room_id":`...)
		b = append(b, e.replaceRoom...)
		b = append(b, `,"unsigned":{"age":`...)
		b = strconv.AppendInt(b, max(pb.now-e.replaceTS, 0), 10)
		b = append(b, "}}"...)
	}
	if thread != nil {
		if len(b) > start {
			b = append(b, ',')
		}
		b = append(b, `"m.thread":{"latest_event":`...)
		b = append(b, s.ClientEvent(thread, Format{Viewer: pb.userID, Relations: pb.nested[thread.EventID]})...)
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(e.threadCount), 10)
		b = append(b, `,"current_user_participated":`...)
		b = strconv.AppendBool(b, e.participants[pb.userID] || row.Sender == pb.userID)
		b = append(b, '}')
	}
	if len(e.refs) > 0 {
		if len(b) > start {
			b = append(b, ',')
		}
		b = append(b, `"m.reference":{"chunk":[`...)
		for i, id := range e.refs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"event_id":`...)
			b = rooms.AppendJSONString(b, id)
			b = append(b, '}')
		}
		b = append(b, "]}"...)
	}
	return append(b, '}'), true
}

// size is about the length of the entry's m.relations object.
func (e *bundleEntry) size() int {
	return len(e.replaceBase) + len(e.replaceRoom) + 96 + len(e.refs)*64
}

// loadBundles reads the aggregations of parents from the database into
// out. Rows read from the database carry them (store.ParseAggregates);
// for the others it is one scan of relation_aggregates (a range of the
// room's positions for a page). Then the rows of latest thread events and
// of latest edits whose client form is not cached, one statement for
// thread participants and one for references, each only when needed.
// Parents without aggregated children get no entry.
func (s *Service) loadBundles(ctx context.Context, parents []*store.EventRow, upTo int64, ignored []string, dense bool, out map[string]*bundleEntry) error {
	// The quoted room id of each parent: one for a page of one room.
	roomJSON := rooms.AppendJSONString(nil, parents[0].RoomID)
	var roomsJSON map[string][]byte // parent → room, for several rooms
	for _, p := range parents {
		if p.RoomID != parents[0].RoomID {
			roomsJSON = make(map[string][]byte, len(parents))
			for _, p := range parents {
				roomsJSON[p.EventID] = rooms.AppendJSONString(nil, p.RoomID)
			}
			break
		}
	}
	agg := make([]store.AggregateSummary, 0, len(parents))
	var refs []store.BundleRow
	if upTo == math.MaxInt64 && len(ignored) == 0 {
		// Rows read from the database carry their aggregates; the others
		// (built in memory when sent) have theirs read.
		var unread []*store.EventRow
		for _, p := range parents {
			if p.AggregatesRead {
				agg = store.ParseAggregates(agg, p)
			} else {
				unread = append(unread, p)
			}
		}
		if len(unread) > 0 {
			want := make(map[string]bool, len(unread))
			room, lo, hi := unread[0].RoomID, unread[0].Pos, unread[0].Pos
			for _, p := range unread {
				want[p.EventID] = true
				if p.RoomID != room {
					room = ""
				}
				lo, hi = min(lo, p.Pos), max(hi, p.Pos)
			}
			read, err := s.store.AggregateSummaries(ctx, room, lo, hi, want, dense)
			if err != nil {
				return err
			}
			agg = append(agg, read...)
		}
		var err error
		var withRefs []string
		for _, a := range agg {
			if a.RelType == "m.reference" {
				withRefs = append(withRefs, a.Parent)
			}
		}
		if refs, err = s.store.References(ctx, withRefs); err != nil {
			return err
		}
	} else {
		ids := make([]string, len(parents))
		for i, p := range parents {
			ids[i] = p.EventID
		}
		rows, err := s.store.BundleRows(ctx, ids, upTo, ignored)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if r.RelType == "m.reference" {
				refs = append(refs, r)
			} else {
				// The rank of an edit is unknown here: its row is read.
				agg = append(agg, store.AggregateSummary{Parent: r.Parent, RelType: r.RelType, EventID: r.EventID, Count: r.Count, MaxPos: r.MaxPos, Rank: -1})
			}
		}
	}
	if len(agg) == 0 && len(refs) == 0 {
		return nil
	}
	var made []*bundleEntry
	entry := func(parent string) *bundleEntry {
		e := out[parent]
		if e == nil {
			e = &bundleEntry{}
			out[parent] = e
			made = append(made, e)
		}
		return e
	}
	// Latest edits whose client form is cached need no row.
	var need, roots []string
	es := make([]*bundleEntry, len(agg)) // the entry of each aggregate
	for i, a := range agg {
		e := entry(a.Parent)
		es[i] = e
		switch a.RelType {
		case "m.thread":
			roots = append(roots, a.Parent)
			need = append(need, a.EventID)
		case "m.replace":
			if b, ok := s.rooms.CachedClientBase(a.EventID); ok && a.Rank >= 0 {
				e.replaceBase, e.replaceTS = b, a.Rank
			} else {
				need = append(need, a.EventID)
			}
		}
	}
	children := map[string]*store.EventRow{}
	if len(need) > 0 {
		got, err := s.store.GetEvents(ctx, need)
		if err != nil {
			return err
		}
		for _, c := range got {
			children[c.EventID] = c
		}
	}
	participants, err := s.store.ThreadParticipants(ctx, roots)
	if err != nil {
		return err
	}
	for i, a := range agg {
		e := es[i]
		e.maxPos = max(e.maxPos, a.MaxPos)
		switch a.RelType {
		case "m.replace":
			if c := children[a.EventID]; e.replaceBase == nil && c != nil {
				e.replaceBase, e.replaceTS = s.rooms.ClientBase(c), c.OriginTS
			}
			e.replaceRoom = roomJSON
			if roomsJSON != nil {
				e.replaceRoom = roomsJSON[a.Parent]
			}
		case "m.thread":
			e.thread = children[a.EventID]
			e.threadCount = a.Count
			e.participants = map[string]bool{}
			for _, u := range participants[a.Parent] {
				e.participants[u] = true
			}
		}
	}
	for _, r := range refs {
		e := entry(r.Parent)
		e.maxPos = max(e.maxPos, r.MaxPos)
		e.refs = append(e.refs, r.EventID)
	}
	for _, e := range made {
		slices.Reverse(e.refs) // the statements list the newest first
	}
	return nil
}

// ReaderUpTo is the last position whose children a reader may be shown:
// the leave (or ban) of a user who left, everything otherwise.
func (s *Service) ReaderUpTo(ctx context.Context, roomID string, v *rooms.Viewer) (int64, error) {
	if v.Membership() != "leave" && v.Membership() != "ban" {
		return math.MaxInt64, nil
	}
	m, err := s.store.GetMembership(ctx, roomID, v.UserID())
	if err != nil {
		return 0, err
	}
	return m.Pos, nil
}

// WithBundles renders rows for a user with their bundled aggregations.
func (s *Service) WithBundles(ctx context.Context, roomID string, v *rooms.Viewer, rows []*store.EventRow, f Format) ([]json.RawMessage, error) {
	upTo, err := s.ReaderUpTo(ctx, roomID, v)
	if err != nil {
		return nil, err
	}
	b, err := s.Bundles(ctx, v.UserID(), upTo, rows)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(rows))
	for i, row := range rows {
		f.Relations = b[row.EventID]
		out[i] = s.ClientEvent(row, f)
	}
	return out, nil
}
