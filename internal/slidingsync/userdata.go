package slidingsync

import (
	"context"
	"encoding/json"
	gosync "sync"

	"luxchat/internal/store"
)

// userData is a connection's copy of its user's account data: what lists
// filter on (m.direct, tags) and what the account_data extension sends to
// rooms coming into view. It is read once per connection and kept up to
// date from the changes in each window, so a poll reads no account data
// unless some changed.
type userData struct {
	mu     gosync.Mutex
	pos    int64 // account data stream position it is read up to
	loaded bool
	global map[string]json.RawMessage            // type → content; nil after the first answer (dropGlobal)
	rooms  map[string]map[string]json.RawMessage // room → type → content
	direct map[string]bool                       // rooms in m.direct
	tags   map[string][]string                   // room → tag names
	// shown caches whether an invite (by its event id) is shown: reading
	// its inviter costs a statement.
	shown map[string]bool
}

// update brings the copy to the account data position to and returns
// the changes it applied (none on the first read, which is not a change
// the client needs told as one).
func (d *userData) update(ctx context.Context, st *store.Store, userID string, to int64) ([]store.AccountData, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loaded && to <= d.pos {
		return nil, nil
	}
	from := d.pos
	if !d.loaded {
		from = 0
	}
	ads, err := st.AccountDataSince(ctx, userID, from, to)
	if err != nil {
		return nil, err
	}
	if !d.loaded {
		d.global, d.rooms, d.direct, d.tags = map[string]json.RawMessage{}, map[string]map[string]json.RawMessage{}, map[string]bool{}, map[string][]string{}
	}
	for _, ad := range ads {
		deleted := store.AccountDataDeleted(ad.Content)
		if ad.RoomID == "" {
			switch {
			case d.global == nil: // dropped (dropGlobal)
			case deleted:
				delete(d.global, ad.Type)
			default:
				d.global[ad.Type] = json.RawMessage(ad.Content)
			}
			if ad.Type == "m.ignored_user_list" {
				d.shown = nil // invites from newly ignored users are hidden
			}
			if ad.Type == "m.direct" {
				d.direct = directRooms(ad.Content)
			}
			continue
		}
		m := d.rooms[ad.RoomID]
		if m == nil {
			m = map[string]json.RawMessage{}
			d.rooms[ad.RoomID] = m
		}
		if deleted {
			delete(m, ad.Type)
		} else {
			m[ad.Type] = json.RawMessage(ad.Content)
		}
		if ad.Type == "m.tag" {
			d.tags[ad.RoomID] = tagNames(ad.Content)
		}
	}
	first := !d.loaded
	d.loaded, d.pos = true, to
	if first {
		return nil, nil
	}
	return ads, nil
}

func directRooms(content []byte) map[string]bool {
	var m map[string][]string
	out := map[string]bool{}
	if json.Unmarshal(content, &m) != nil {
		return out
	}
	for _, rooms := range m {
		for _, r := range rooms {
			out[r] = true
		}
	}
	return out
}

func tagNames(content []byte) []string {
	var c struct {
		Tags map[string]json.RawMessage `json:"tags"`
	}
	if json.Unmarshal(content, &c) != nil {
		return nil
	}
	out := make([]string, 0, len(c.Tags))
	for t := range c.Tags {
		out = append(out, t)
	}
	return out
}

// isDM and tagsOf read the copy.
func (d *userData) isDM(roomID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.direct[roomID]
}

func (d *userData) tagsOf(roomID string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tags[roomID]
}

// dropGlobal forgets the global account data's contents once the
// connection's first answer was built: only a first answer sends them
// (globalEvents), and a connection lives for hours. What lists filter
// on (m.direct, tags) is kept.
func (d *userData) dropGlobal() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.global = nil
}

// globalEvents and roomEvents are the account data as events.
func (d *userData) globalEvents() []json.RawMessage {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]json.RawMessage, 0, len(d.global))
	for typ, c := range d.global {
		out = append(out, adEvent(typ, c))
	}
	return out
}

// pushRulesEvent is the m.push_rules event of a user who never changed
// their rules (nil when they did: it is among their account data), which
// a first answer carries as /sync's initial sync does: clients learn
// their rules from it.
func (b *builder) pushRulesEvent(ctx context.Context) (json.RawMessage, error) {
	b.data.mu.Lock()
	_, stored := b.data.global["m.push_rules"]
	b.data.mu.Unlock()
	if stored {
		return nil, nil
	}
	content, err := b.s.sync.DefaultPushRules(ctx, b.req.UserID)
	if err != nil || content == nil {
		return nil, err
	}
	return adEvent("m.push_rules", content), nil
}

func (d *userData) roomEvents(roomID string) []json.RawMessage {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.rooms[roomID]
	out := make([]json.RawMessage, 0, len(m))
	for typ, c := range m {
		out = append(out, adEvent(typ, c))
	}
	return out
}

func adEvent(typ string, content json.RawMessage) json.RawMessage {
	b, _ := json.Marshal(struct {
		Type    string          `json:"type"`
		Content json.RawMessage `json:"content"`
	}{typ, content})
	return b
}

// inviteShown and setShown cache the invite checks.
func (d *userData) inviteShown(eventID string) (bool, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.shown[eventID]
	return v, ok
}

func (d *userData) setShown(eventID string, v bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shown == nil || len(d.shown) > 10000 {
		d.shown = map[string]bool{}
	}
	d.shown[eventID] = v
}
