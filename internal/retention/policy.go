package retention

import (
	"bytes"
	"encoding/json"
	"time"

	"luxchat/internal/config"
)

// maxLifetimeMS bounds the lifetimes a room may ask for (about 292 years,
// what a time.Duration holds); larger values count as forever.
const maxLifetimeMS = int64(1<<63-1) / int64(time.Millisecond)

// RoomPolicy is the content of an m.room.retention state event: lifetimes
// in milliseconds, nil when absent (or not a non-negative integer).
type RoomPolicy struct {
	MinLifetime *int64
	MaxLifetime *int64
}

// ParseRoomPolicy reads the content of an m.room.retention event. Fields
// that are not non-negative integers are ignored, as if absent.
func ParseRoomPolicy(content []byte) RoomPolicy {
	var c map[string]json.RawMessage
	if json.Unmarshal(content, &c) != nil {
		return RoomPolicy{}
	}
	field := func(k string) *int64 {
		raw := bytes.TrimSpace(c[k])
		if len(raw) == 0 || raw[0] < '0' || raw[0] > '9' || bytes.ContainsAny(raw, ".eE") {
			return nil
		}
		var n int64
		if json.Unmarshal(raw, &n) != nil || n > maxLifetimeMS {
			return nil
		}
		return &n
	}
	return RoomPolicy{MinLifetime: field("min_lifetime"), MaxLifetime: field("max_lifetime")}
}

// policyOfPDU reads the room policy from a PDU's content.
func policyOfPDU(pduJSON []byte) RoomPolicy {
	var p struct {
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(pduJSON, &p) != nil {
		return RoomPolicy{}
	}
	return ParseRoomPolicy(p.Content)
}

// Lifetime is the age past which a room's non-state events are purged,
// and whether they are purged at all, given the room's policy (nil: the
// room has no m.room.retention event) and the server's configuration:
//
//   - each of min_lifetime and max_lifetime is the room's, else the
//     default policy's; without a max_lifetime from either, the room's
//     events are kept forever (the bounds do not apply, as in Synapse);
//   - a max_lifetime under min_lifetime is raised to it (MSC1763's
//     invariant);
//   - the result is brought between allowed_lifetime_min and
//     allowed_lifetime_max.
func Lifetime(cfg config.Retention, room *RoomPolicy) (time.Duration, bool) {
	minL, maxL := cfg.DefaultPolicy.MinLifetime.Duration, cfg.DefaultPolicy.MaxLifetime.Duration
	set := maxL > 0 // zero in the configuration: not set
	if room != nil {
		if room.MinLifetime != nil {
			minL = time.Duration(*room.MinLifetime) * time.Millisecond
		}
		if room.MaxLifetime != nil {
			// A room's 0 is a lifetime: purge at the next run.
			maxL, set = time.Duration(*room.MaxLifetime)*time.Millisecond, true
		}
	}
	if !set {
		return 0, false
	}
	maxL = max(maxL, minL)
	if lo := cfg.AllowedLifetimeMin.Duration; lo > 0 {
		maxL = max(maxL, lo)
	}
	if hi := cfg.AllowedLifetimeMax.Duration; hi > 0 {
		maxL = min(maxL, hi)
	}
	return maxL, true
}
