package notifications

import (
	"testing"
	"time"

	"luxchat/internal/matrix/errcode"
)

func TestRetryDelay(t *testing.T) {
	for _, c := range []struct {
		attempts int
		want     time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {5, 16 * time.Second}, {10, 512 * time.Second}, {11, 10 * time.Minute}, {100, 10 * time.Minute}} {
		if got := retryDelay(c.attempts); got != c.want {
			t.Errorf("retryDelay(%d) = %s, want %s", c.attempts, got, c.want)
		}
	}
}

func TestGatewayURL(t *testing.T) {
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"https://push.example.org/_matrix/push/v1/notify", true},
		{"http://127.0.0.1:8080/_matrix/push/v1/notify", true},
		{"https://push.example.org/_matrix/push/v1/notify/", false},
		{"https://push.example.org/notify", false},
		{"https://push.example.org/_matrix/push/v1/notify?x=1", false},
		{"https://user:pw@push.example.org/_matrix/push/v1/notify", false},
		{"ftp://push.example.org/_matrix/push/v1/notify", false},
		{"/_matrix/push/v1/notify", false},
		{"https:///_matrix/push/v1/notify", false},
		{"::", false},
	} {
		err := validGatewayURL(c.url)
		if (err == nil) != c.ok {
			t.Errorf("%q: %v", c.url, err)
		}
		if e, isErr := errcode.As(err); err != nil && (!isErr || e.Code != "M_INVALID_PARAM") {
			t.Errorf("%q: error %v is not M_INVALID_PARAM", c.url, err)
		}
	}
}
