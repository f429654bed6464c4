package turn

import (
	"sync"
	"time"
)

// quota counts allocations per user and in total. pion asks it before
// making an allocation and reports the allocation afterwards; requests
// handled at once (TCP connections each have a goroutine) would all pass
// a count of live allocations alone, so each admitted request holds a
// place until its allocation is reported, or for pendingFor when it
// never is (the allocation failed).
type quota struct {
	perUser, total int

	mu      sync.Mutex
	live    map[string]int
	pending map[string][]time.Time
	all     int // live allocations of every user
	allPend int
}

// pendingFor is how long an admitted request holds its place.
const pendingFor = 5 * time.Second

func newQuota(perUser, total int) *quota {
	return &quota{perUser: perUser, total: total, live: map[string]int{}, pending: map[string][]time.Time{}}
}

// admit reserves a place for a new allocation of user.
func (q *quota) admit(user string, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.allPend > 0 {
		for u := range q.pending {
			q.prune(u, now)
		}
	}
	if q.live[user]+len(q.pending[user]) >= q.perUser || q.all+q.allPend >= q.total {
		return false
	}
	q.pending[user] = append(q.pending[user], now)
	q.allPend++
	return true
}

// prune drops user's places held past pendingFor.
func (q *quota) prune(user string, now time.Time) {
	p := q.pending[user]
	i := 0
	for i < len(p) && now.Sub(p[i]) > pendingFor {
		i++
	}
	q.allPend -= i
	if i == len(p) {
		delete(q.pending, user)
	} else {
		q.pending[user] = p[i:]
	}
}

// created turns user's oldest place into a live allocation.
func (q *quota) created(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if p := q.pending[user]; len(p) > 0 {
		q.pending[user] = p[1:]
		if len(p) == 1 {
			delete(q.pending, user)
		}
		q.allPend--
	}
	q.live[user]++
	q.all++
}

// deleted forgets one of user's allocations.
func (q *quota) deleted(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.live[user] == 0 {
		return
	}
	q.all--
	if q.live[user]--; q.live[user] == 0 {
		delete(q.live, user)
	}
}
