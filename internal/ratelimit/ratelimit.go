// Package ratelimit is a token bucket per key (a user id, an IP address,
// a webhook), shared by the HTTP layer's limits and the domain's own
// (webhooks).
package ratelimit

import (
	"sync"
	"time"
)

// Limiter is a token bucket per key.
type Limiter struct {
	perSecond float64
	burst     float64
	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New allows perSecond sustained with bursts up to burst.
func New(perSecond float64, burst int) *Limiter {
	return &Limiter{perSecond: perSecond, burst: float64(burst), buckets: map[string]*bucket{}, lastSweep: time.Now()}
}

// Take consumes one token for key and returns 0, or how long to wait.
func (l *Limiter) Take(key string) time.Duration {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		// Forget full buckets so the map does not grow without bound.
		for k, b := range l.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*l.perSecond >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.lastSweep = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.perSecond)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / l.perSecond * float64(time.Second))
}
