package retention

import (
	"testing"
	"time"

	"luxchat/internal/config"
)

func ms(d time.Duration) *int64 { n := d.Milliseconds(); return &n }

func TestLifetime(t *testing.T) {
	day := 24 * time.Hour
	lt := func(d time.Duration) config.Lifetime { return config.Lifetime{Duration: d} }
	bounded := config.Retention{AllowedLifetimeMin: lt(2 * day), AllowedLifetimeMax: lt(10 * day)}
	withDefault := bounded
	withDefault.DefaultPolicy = config.RetentionPolicy{MinLifetime: lt(day), MaxLifetime: lt(3 * day)}
	for _, c := range []struct {
		name string
		cfg  config.Retention
		room *RoomPolicy
		want time.Duration
		ok   bool
	}{
		{"no policy, no default", config.Retention{}, nil, 0, false},
		{"no policy, bounds only", bounded, nil, 0, false},
		{"room policy", config.Retention{}, &RoomPolicy{MaxLifetime: ms(day)}, day, true},
		{"room zero purges at once", config.Retention{}, &RoomPolicy{MaxLifetime: ms(0)}, 0, true},
		{"raised to allowed min", bounded, &RoomPolicy{MaxLifetime: ms(time.Hour)}, 2 * day, true},
		{"lowered to allowed max", bounded, &RoomPolicy{MaxLifetime: ms(30 * day)}, 10 * day, true},
		{"default applies", withDefault, nil, 3 * day, true},
		{"default max for a room without one", withDefault, &RoomPolicy{MinLifetime: ms(time.Second)}, 3 * day, true},
		{"max raised to min", config.Retention{}, &RoomPolicy{MinLifetime: ms(5 * day), MaxLifetime: ms(day)}, 5 * day, true},
		{"min from default raises", config.Retention{DefaultPolicy: config.RetentionPolicy{MinLifetime: lt(2 * day)}}, &RoomPolicy{MaxLifetime: ms(day)}, 2 * day, true},
	} {
		got, ok := Lifetime(c.cfg, c.room)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestParseRoomPolicy(t *testing.T) {
	for _, c := range []struct {
		in       string
		min, max int64 // -1: absent
	}{
		{`{"max_lifetime": 86400000}`, -1, 86400000},
		{`{"min_lifetime": 1000, "max_lifetime": 2000}`, 1000, 2000},
		{`{"max_lifetime": -5}`, -1, -1},
		{`{"max_lifetime": 1.5}`, -1, -1},
		{`{"max_lifetime": 1e3}`, -1, -1},
		{`{"max_lifetime": "86400000"}`, -1, -1},
		{`{"max_lifetime": null}`, -1, -1},
		{`{"max_lifetime": 99999999999999999999}`, -1, -1},
		{`not json`, -1, -1},
	} {
		p := ParseRoomPolicy([]byte(c.in))
		get := func(v *int64) int64 {
			if v == nil {
				return -1
			}
			return *v
		}
		if get(p.MinLifetime) != c.min || get(p.MaxLifetime) != c.max {
			t.Errorf("%s: min %d max %d, want %d %d", c.in, get(p.MinLifetime), get(p.MaxLifetime), c.min, c.max)
		}
	}
}

// FuzzParseRoomPolicy: any content parses without panicking, and a
// lifetime read is never negative.
func FuzzParseRoomPolicy(f *testing.F) {
	for _, s := range []string{`{"max_lifetime": 86400000}`, `{"min_lifetime": 0}`, `{"max_lifetime": -1}`, `{}`, `[]`, `{"max_lifetime": 1e400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p := ParseRoomPolicy(in)
		for _, v := range []*int64{p.MinLifetime, p.MaxLifetime} {
			if v != nil && *v < 0 {
				t.Fatalf("negative lifetime from %q", in)
			}
		}
		if life, ok := Lifetime(config.Retention{}, &p); ok && life < 0 {
			t.Fatalf("negative lifetime %v from %q", life, in)
		}
	})
}
