package store

import (
	"context"
	"errors"
	"testing"
)

func TestWebhooks(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		w := Webhook{ID: "abc", RoomID: "!r:x", Name: "prom", SecretHash: "h1", CreatedBy: "@a:x", CreatedTS: 1, RotatedTS: 1}
		if err := s.CreateWebhook(ctx, w); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateWebhook(ctx, w); !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate id: %v", err)
		}
		if err := s.RotateWebhook(ctx, "abc", "h2"); err != nil {
			t.Fatal(err)
		}
		got, err := s.Webhook(ctx, "abc")
		if err != nil || got.SecretHash != "h2" || got.RevokedTS.Valid || got.Name != "prom" {
			t.Fatalf("%+v %v", got, err)
		}
		a := WebhookAlert{HookID: "abc", AlertKey: "fp:1", GroupKey: "g", EventID: "$1", Status: "firing", Digest: "d1", UpdatedTS: 10}
		if err := s.PutWebhookAlert(ctx, a); err != nil {
			t.Fatal(err)
		}
		a.Status, a.Digest = "resolved", "d2"
		if err := s.PutWebhookAlert(ctx, a); err != nil {
			t.Fatal(err)
		}
		m, err := s.WebhookAlerts(ctx, "abc", []string{"fp:1", "fp:2"})
		if err != nil || len(m) != 1 || m["fp:1"].Status != "resolved" || m["fp:1"].EventID != "$1" {
			t.Fatalf("%+v %v", m, err)
		}
		if err := s.PruneWebhookAlerts(ctx, "abc", 11); err != nil {
			t.Fatal(err)
		}
		if m, _ := s.WebhookAlerts(ctx, "abc", []string{"fp:1"}); len(m) != 0 {
			t.Fatalf("resolved alert not pruned: %+v", m)
		}
		_ = s.PutWebhookAlert(ctx, a)
		if err := s.RevokeWebhook(ctx, "abc"); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeWebhook(ctx, "abc"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoke twice: %v", err)
		}
		if err := s.RotateWebhook(ctx, "abc", "h3"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("rotate revoked: %v", err)
		}
		if m, _ := s.WebhookAlerts(ctx, "abc", []string{"fp:1"}); len(m) != 0 {
			t.Fatalf("revoked hook's alerts kept: %+v", m)
		}
		ws, err := s.Webhooks(ctx)
		if err != nil || len(ws) != 1 || !ws[0].RevokedTS.Valid || ws[0].SecretHash != "" {
			t.Fatalf("%+v %v", ws, err)
		}
		if _, err := s.Webhook(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	})
}
