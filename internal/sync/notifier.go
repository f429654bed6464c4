package sync

import (
	gosync "sync"
)

// Notifier wakes long-polling syncs. Each user has a channel that is closed
// (and replaced) when something for that user happens; a sync takes the
// channel before it looks for news, so nothing slips between the look and
// the wait.
type Notifier struct {
	mu    gosync.Mutex
	users map[string]chan struct{}
}

// NewNotifier returns an idle notifier.
func NewNotifier() *Notifier { return &Notifier{users: map[string]chan struct{}{}} }

// Chan returns the channel that closes on the user's next news.
func (n *Notifier) Chan(userID string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := n.users[userID]
	if !ok {
		ch = make(chan struct{})
		n.users[userID] = ch
	}
	return ch
}

// Wake tells users that they have news.
func (n *Notifier) Wake(users ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, u := range users {
		if ch, ok := n.users[u]; ok {
			close(ch)
			delete(n.users, u)
		}
	}
}

// RoomEvent implements rooms.Notifier.
func (n *Notifier) RoomEvent(roomID string, users []string, pos int64) { n.Wake(users...) }
