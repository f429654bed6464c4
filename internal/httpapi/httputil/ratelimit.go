package httputil

import "luxchat/internal/ratelimit"

// RateLimiter is a token bucket per key (user id or IP address).
type RateLimiter = ratelimit.Limiter

// NewRateLimiter allows perSecond sustained with bursts up to burst.
func NewRateLimiter(perSecond float64, burst int) *RateLimiter {
	return ratelimit.New(perSecond, burst)
}
