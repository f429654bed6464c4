package notifications

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/store"
)

// newGatewayClient returns the HTTP client of pushes: it never connects
// to push.deny_networks (checked on the resolved address, so DNS cannot
// steer a push inside) and gives up after push.gateway_timeout.
func newGatewayClient(cfg *config.Config) *http.Client {
	var deny []netip.Prefix
	for _, n := range cfg.Push.DenyNetworks {
		if p, err := netip.ParsePrefix(n); err == nil {
			deny = append(deny, p)
		}
	}
	dialer := &net.Dialer{
		Timeout: 10 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			addr := ap.Addr().Unmap()
			for _, p := range deny {
				if p.Contains(addr) {
					return fmt.Errorf("push gateway address %s is in a denied network", addr)
				}
			}
			return nil
		},
	}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   cfg.Push.GatewayTimeout.Duration,
		// A gateway answers; it does not send us elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Load reads who has pushers; call it before events flow.
func (s *Service) Load(ctx context.Context) error {
	if err := s.loadRuleOwners(ctx); err != nil {
		return err
	}
	return s.reloadPushers(ctx)
}

// Run delivers queued pushes and moves staged notifications until ctx
// ends (returns at once when push is disabled).
func (s *Service) Run(ctx context.Context) {
	if s.cfg.Push.Enabled {
		// Leftovers of the last run are compacted before the pusher starts:
		// two first reads at once would open a database connection that an
		// idle server then keeps.
		s.compactAll(ctx)
		go s.compactLoop(ctx)
		s.run(ctx)
	}
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Retry schedule: the delay doubles from 1 s up to 10 min; a push still
// refused after maxAttempts (about a day of trying) is dropped.
const (
	firstRetry  = time.Second
	maxRetry    = 10 * time.Minute
	maxAttempts = 150
	batchSize   = 50
)

func retryDelay(attempts int) time.Duration {
	d := firstRetry
	for i := 1; i < attempts && d < maxRetry; i++ {
		d *= 2
	}
	return min(d, maxRetry)
}

// run delivers queued pushes: those due now, then it sleeps until the
// next is due or a commit queues more.
func (s *Service) run(ctx context.Context) {
	for {
		due, err := s.store.DuePushes(ctx, time.Now().UnixMilli(), batchSize)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("push queue", "err", err)
		}
		for _, q := range due {
			s.deliver(ctx, q)
		}
		if len(due) == batchSize {
			continue
		}
		wait := time.Minute
		if next, ok, err := s.store.NextPushDue(ctx); err == nil && ok {
			wait = min(max(time.Until(time.UnixMilli(next)), 0), wait)
		}
		if wait == 0 && len(due) == 0 {
			wait = 100 * time.Millisecond // due rows we could not read: do not spin
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// deliver sends one queued push; on failure it schedules a retry.
func (s *Service) deliver(ctx context.Context, q store.QueuedPush) {
	p, err := s.store.GetPusher(ctx, q.UserID, q.AppID, q.Pushkey)
	if errors.Is(err, store.ErrNotFound) {
		_ = s.store.DeleteQueuedPush(ctx, q.ID)
		return
	}
	if err != nil {
		return
	}
	body, url, err := s.notification(ctx, q, p)
	if err != nil {
		s.log.Warn("push: build notification", "event_id", q.EventID, "err", err)
		_ = s.store.DeleteQueuedPush(ctx, q.ID)
		return
	}
	rejected, err := s.post(ctx, url, body)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		attempts := q.Attempts + 1
		if attempts >= maxAttempts {
			s.log.Warn("push: giving up", "user_id", q.UserID, "app_id", q.AppID, "err", err)
			_ = s.store.DeleteQueuedPush(ctx, q.ID)
			return
		}
		s.log.Info("push: gateway failed, will retry", "user_id", q.UserID, "app_id", q.AppID, "attempt", attempts, "err", err)
		_ = s.store.RetryQueuedPush(ctx, q.ID, attempts, time.Now().Add(retryDelay(attempts)).UnixMilli())
		return
	}
	_ = s.store.DeleteQueuedPush(ctx, q.ID)
	if slices.Contains(rejected, q.Pushkey) {
		// The gateway says this pushkey is dead: the pusher goes.
		s.log.Info("push: pushkey rejected, deleting pusher", "user_id", q.UserID, "app_id", q.AppID)
		if err := s.store.DeletePusher(ctx, q.UserID, q.AppID, q.Pushkey); err == nil {
			_ = s.reloadPushers(ctx)
		}
	}
}

// post sends a notification and returns the rejected pushkeys.
func (s *Service) post(ctx context.Context, url string, body []byte) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("gateway answered %d", resp.StatusCode)
	}
	var r struct {
		Rejected []string `json:"rejected"`
	}
	_ = json.Unmarshal(data, &r)
	return r.Rejected, nil
}

// notification builds the Push Gateway API body for one pusher.
func (s *Service) notification(ctx context.Context, q store.QueuedPush, p *store.Pusher) ([]byte, string, error) {
	var data map[string]json.RawMessage
	if err := json.Unmarshal(p.Data, &data); err != nil {
		return nil, "", err
	}
	var url, format string
	_ = json.Unmarshal(data["url"], &url)
	_ = json.Unmarshal(data["format"], &format)
	delete(data, "url")
	var actions []json.RawMessage
	_ = json.Unmarshal(q.Actions, &actions)
	tweaks := map[string]json.RawMessage{}
	for _, a := range actions {
		var t struct {
			SetTweak string          `json:"set_tweak"`
			Value    json.RawMessage `json:"value"`
		}
		if json.Unmarshal(a, &t) == nil && t.SetTweak != "" {
			if t.Value == nil {
				t.Value = json.RawMessage("true")
			}
			tweaks[t.SetTweak] = t.Value
		}
	}
	unread, err := s.unreadTotal(ctx, q.UserID)
	if err != nil {
		return nil, "", err
	}
	device := map[string]any{"app_id": p.AppID, "pushkey": p.Pushkey, "pushkey_ts": p.PushkeyTS, "data": data, "tweaks": tweaks}
	n := map[string]any{
		"event_id": q.EventID, "room_id": q.RoomID,
		"counts":  map[string]any{"unread": unread, "missed_calls": 0},
		"devices": []any{device},
	}
	ev, err := s.rooms.Event(ctx, q.EventID)
	if err != nil {
		return nil, "", err
	}
	highlight := false
	if v, ok := tweaks["highlight"]; ok {
		highlight = string(v) == "true"
	}
	prio := "low"
	switch ev.Type {
	case "m.room.message", "m.room.encrypted", "m.call.invite", "m.room.member", "m.sticker":
		prio = "high"
	}
	if highlight {
		prio = "high"
	}
	n["prio"] = prio
	if format != "event_id_only" {
		n["type"] = ev.Type
		n["sender"] = ev.Sender
		n["content"] = ev.Content
		if ev.StateKey != nil {
			n["user_is_target"] = *ev.StateKey == q.UserID
		}
		if m, err := s.rooms.CurrentStateEvent(ctx, q.RoomID, "m.room.member", ev.Sender); err == nil {
			if name := displayName(m); name != "" {
				n["sender_display_name"] = name
			}
		}
		if e, err := s.rooms.CurrentStateEvent(ctx, q.RoomID, "m.room.name", ""); err == nil {
			var c struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(e.Content, &c) == nil && c.Name != "" {
				n["room_name"] = c.Name
			}
		}
		if e, err := s.rooms.CurrentStateEvent(ctx, q.RoomID, "m.room.canonical_alias", ""); err == nil {
			var c struct {
				Alias string `json:"alias"`
			}
			if json.Unmarshal(e.Content, &c) == nil && c.Alias != "" {
				n["room_alias"] = c.Alias
			}
		}
	}
	body, err := json.Marshal(map[string]any{"notification": n})
	return body, url, err
}

// unreadTotal counts a user's unread notifications in the rooms they are
// joined to (the "unread" count of a push).
func (s *Service) unreadTotal(ctx context.Context, userID string) (int64, error) {
	ms, err := s.rooms.Memberships(ctx, userID)
	if err != nil {
		return 0, err
	}
	var joined []string
	for _, m := range ms {
		if m.Membership == "join" {
			joined = append(joined, m.RoomID)
		}
	}
	counts, err := s.Counts(ctx, userID, joined, s.store.Streams.Events.Current())
	if err != nil {
		return 0, err
	}
	var total int64
	for _, c := range counts {
		total += c.Notify
	}
	return total, nil
}
