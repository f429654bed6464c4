package federation

import (
	"sort"
	"time"
)

// DestinationStatus is what the queue knows of a server it sends to: the
// back-off of its failures (Synapse's admin API shape of
// GET /_synapse/admin/v1/federation/destinations).
type DestinationStatus struct {
	Name string
	// LastFailed is the latest failed attempt, FailedAt the first of the
	// current run of failures; zero when the last attempt succeeded.
	LastFailed, FailedAt time.Time
	// RetryInterval is the back-off after the latest failure (0: none).
	RetryInterval time.Duration
	Failures      int
}

// Destinations lists the servers this process has sent to or has items
// for, by name.
func (q *Queue) Destinations() []DestinationStatus {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]DestinationStatus, 0, len(q.dests))
	for _, d := range q.dests {
		out = append(out, q.destinationLocked(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Destination returns what the queue knows of one server; false when it
// has never sent to it in this process.
func (q *Queue) Destination(name string) (DestinationStatus, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dests[name]
	if d == nil {
		return DestinationStatus{}, false
	}
	return q.destinationLocked(d), true
}

func (q *Queue) destinationLocked(d *destQueue) DestinationStatus {
	out := DestinationStatus{Name: d.name, LastFailed: d.lastFailed, FailedAt: d.failedAt, Failures: d.failures}
	if d.failures > 0 {
		out.RetryInterval = q.Backoff(d.failures)
	}
	return out
}

// ResetBackoff ends a destination's back-off and retries it at once (an
// administrator's reset_connection); false when it is not in back-off.
func (q *Queue) ResetBackoff(name string) bool {
	q.mu.Lock()
	d := q.dests[name]
	inBackoff := d != nil && d.failures > 0
	q.mu.Unlock()
	if inBackoff {
		q.Contacted(name)
	}
	return inBackoff
}
