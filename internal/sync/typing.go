package sync

import (
	gosync "sync"
	"time"
)

// Typing holds who is typing in which room, in memory: typing is ephemeral
// and lost on restart by design.
type Typing struct {
	mu     gosync.Mutex
	serial int64
	rooms  map[string]*roomTyping
}

type roomTyping struct {
	serial int64                // serial of the last change
	users  map[string]time.Time // user → expiry
}

// NewTyping returns an empty typing tracker.
func NewTyping() *Typing { return &Typing{rooms: map[string]*roomTyping{}} }

// Set marks a user typing until timeout, or not typing. It reports whether
// anything changed.
func (t *Typing) Set(roomID, userID string, typing bool, timeout time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	rt := t.rooms[roomID]
	if rt == nil {
		rt = &roomTyping{users: map[string]time.Time{}}
		t.rooms[roomID] = rt
	}
	t.expireLocked(rt)
	_, was := rt.users[userID]
	if typing {
		rt.users[userID] = time.Now().Add(timeout)
	} else {
		delete(rt.users, userID)
	}
	if was == typing && !typing {
		return false
	}
	t.serial++
	rt.serial = t.serial
	return true
}

func (t *Typing) expireLocked(rt *roomTyping) {
	now := time.Now()
	for u, exp := range rt.users {
		if now.After(exp) {
			delete(rt.users, u)
			t.serial++
			rt.serial = t.serial
		}
	}
}

// Current is the typing stream position.
func (t *Typing) Current() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.serial
}

// Since returns the typing users of a room if they changed after pos.
func (t *Typing) Since(roomID string, pos int64) ([]string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rt := t.rooms[roomID]
	if rt == nil {
		return nil, false
	}
	t.expireLocked(rt)
	if rt.serial <= pos {
		return nil, false
	}
	users := make([]string, 0, len(rt.users))
	for u := range rt.users {
		users = append(users, u)
	}
	return users, true
}

// Expired returns rooms whose typing users timed out, so that their members
// can be told; called periodically.
func (t *Typing) Expired() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	now := time.Now()
	for id, rt := range t.rooms {
		for _, exp := range rt.users {
			if now.After(exp) {
				out = append(out, id)
				break
			}
		}
	}
	return out
}
