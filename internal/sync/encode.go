package sync

import (
	"encoding/json"
	"sort"
	"strconv"
)

// JSON renders the response directly. encoding/json would re-validate and
// re-compact every (already rendered) event, which is most of the cost of
// a large sync.
func (r *Response) JSON() []byte {
	w := &writer{buf: make([]byte, 0, r.sizeHint())}
	w.raw(`{"next_batch":`)
	w.str(r.NextBatch)
	if r.Rooms != nil {
		w.raw(`,"rooms":{`)
		first := true
		section := func(name string, keys []string, each func(k string)) {
			if len(keys) == 0 {
				return
			}
			if !first {
				w.raw(",")
			}
			first = false
			w.str(name)
			w.raw(":{")
			for i, k := range keys {
				if i > 0 {
					w.raw(",")
				}
				w.str(k)
				w.raw(":")
				each(k)
			}
			w.raw("}")
		}
		section("join", sortedKeys(r.Rooms.Join), func(k string) { w.joined(r.Rooms.Join[k]) })
		section("invite", sortedKeys(r.Rooms.Invite), func(k string) {
			w.raw(`{"invite_state":`)
			w.events(r.Rooms.Invite[k].InviteState)
			w.raw("}")
		})
		section("knock", sortedKeys(r.Rooms.Knock), func(k string) {
			w.raw(`{"knock_state":`)
			w.events(r.Rooms.Knock[k].KnockState)
			w.raw("}")
		})
		section("leave", sortedKeys(r.Rooms.Leave), func(k string) {
			lr := r.Rooms.Leave[k]
			w.raw(`{`)
			w.state(lr.stateAfter)
			w.events(lr.State)
			w.raw(`,"timeline":`)
			w.timeline(lr.Timeline)
			w.raw(`,"account_data":`)
			w.events(lr.AccountData)
			w.raw("}")
		})
		w.raw("}")
	}
	for _, x := range []struct {
		name string
		ev   *Events
	}{{"account_data", r.AccountData}, {"presence", r.Presence}, {"to_device", r.ToDevice}} {
		if x.ev != nil {
			w.raw(",")
			w.str(x.name)
			w.raw(":")
			w.events(*x.ev)
		}
	}
	if r.DeviceLists != nil {
		w.raw(`,"device_lists":`)
		w.value(r.DeviceLists)
	}
	if r.OTKCounts != nil {
		w.raw(`,"device_one_time_keys_count":{`)
		for i, k := range sortedKeys(r.OTKCounts) {
			if i > 0 {
				w.raw(",")
			}
			w.str(k)
			w.raw(":")
			w.buf = strconv.AppendInt(w.buf, int64(r.OTKCounts[k]), 10)
		}
		w.raw("}")
	}
	if r.FallbackKeyTypes != nil {
		w.raw(`,"device_unused_fallback_key_types":[`)
		for i, k := range r.FallbackKeyTypes {
			if i > 0 {
				w.raw(",")
			}
			w.str(k)
		}
		w.raw("]")
	}
	w.raw("}")
	return w.buf
}

// sizeHint is about the length of the rendered response: its events'
// and a little for each room, so that a woken sync's answer of one event
// is rendered in one small allocation and an initial sync's in one large
// one.
func (r *Response) sizeHint() int {
	n := 256
	sum := func(e []json.RawMessage) {
		for _, ev := range e {
			n += len(ev) + 1
		}
	}
	if r.Rooms != nil {
		for _, j := range r.Rooms.Join {
			n += 256
			sum(j.State.Events)
			sum(j.Timeline.Events)
			sum(j.Ephemeral.Events)
			sum(j.AccountData.Events)
		}
		for _, l := range r.Rooms.Leave {
			n += 256
			sum(l.State.Events)
			sum(l.Timeline.Events)
			sum(l.AccountData.Events)
		}
		for _, i := range r.Rooms.Invite {
			n += 128
			sum(i.InviteState.Events)
		}
		for _, k := range r.Rooms.Knock {
			n += 128
			sum(k.KnockState.Events)
		}
	}
	for _, e := range []*Events{r.AccountData, r.Presence, r.ToDevice} {
		if e != nil {
			sum(e.Events)
		}
	}
	return n
}

type writer struct{ buf []byte }

func (w *writer) raw(s string) { w.buf = append(w.buf, s...) }

// str writes a JSON string. Room ids, tokens and keys need no escaping:
// those are copied as they are, the rest go through encoding/json.
func (w *writer) str(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			w.buf = append(w.buf, b...)
			return
		}
	}
	w.buf = append(w.buf, '"')
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '"')
}

// unread writes notification counts.
func (w *writer) unread(u Unread) {
	w.raw(`{"notification_count":`)
	w.buf = strconv.AppendInt(w.buf, u.NotificationCount, 10)
	w.raw(`,"highlight_count":`)
	w.buf = strconv.AppendInt(w.buf, u.HighlightCount, 10)
	w.raw("}")
}

func (w *writer) value(v any) {
	b, _ := json.Marshal(v)
	w.buf = append(w.buf, b...)
}

func (w *writer) list(evs []json.RawMessage) {
	w.raw("[")
	for i, ev := range evs {
		if i > 0 {
			w.raw(",")
		}
		w.buf = append(w.buf, ev...)
	}
	w.raw("]")
}

func (w *writer) events(e Events) {
	w.raw(`{"events":`)
	w.list(e.Events)
	w.raw("}")
}

func (w *writer) timeline(t Timeline) {
	w.raw(`{"events":`)
	w.list(t.Events)
	w.raw(`,"limited":`)
	if t.Limited {
		w.raw("true")
	} else {
		w.raw("false")
	}
	if t.PrevBatch != "" {
		w.raw(`,"prev_batch":`)
		w.str(t.PrevBatch)
	}
	w.raw("}")
}

func (w *writer) joined(j *JoinedRoom) {
	w.raw("{")
	if j.Summary != nil {
		w.raw(`"summary":`)
		w.value(j.Summary)
		w.raw(",")
	}
	w.state(j.stateAfter)
	w.events(j.State)
	w.raw(`,"timeline":`)
	w.timeline(j.Timeline)
	w.raw(`,"ephemeral":`)
	w.events(j.Ephemeral)
	w.raw(`,"account_data":`)
	w.events(j.AccountData)
	w.raw(`,"unread_notifications":`)
	w.unread(j.UnreadNotifications)
	if len(j.UnreadThreadNotifications) > 0 {
		w.raw(`,"unread_thread_notifications":`)
		w.value(j.UnreadThreadNotifications)
	}
	w.raw("}")
}

// state writes the key of a room's state: "state", or the state_after key
// asked for.
func (w *writer) state(afterKey string) {
	if afterKey == "" {
		afterKey = "state"
	}
	w.str(afterKey)
	w.raw(":")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
