package store

import (
	"context"
	"testing"
)

// TestThreadSubsResumeAccountDataStream: thread subscription changes take
// account data positions, so the stream resumes above the highest of
// either table; a subscription far ahead of every account data row must
// not see its position handed out again.
func TestThreadSubsResumeAccountDataStream(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const far = 5 * RestartGap
		if _, err := s.w.ExecContext(ctx, `INSERT INTO thread_subscriptions (user_id, room_id, root_id, subscribed, automatic, unsubscribed_at, stream_pos)
			VALUES ('@a:x', '!r:x', '$t', TRUE, FALSE, 0, $1)`, far); err != nil {
			t.Fatal(err)
		}
		st, err := loadStreams(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if cur := st.AccountData.Current(); cur < far+RestartGap {
			t.Fatalf("account data stream resumes at %d, at or below a thread subscription's %d", cur, far)
		}
	})
}

// TestThreadSubscribeRules: an automatic subscription applies only when
// not subscribed and the cause came after the last unsubscription; a
// manual one always applies and makes an automatic one manual.
func TestThreadSubscribeRules(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		do := func(f func(tx *Tx) (bool, error)) bool {
			t.Helper()
			var ok bool
			if err := s.InTx(ctx, func(tx *Tx) (err error) { ok, err = f(tx); return err }); err != nil {
				t.Fatal(err)
			}
			return ok
		}
		sub := func(automatic bool, cause int64) bool {
			return do(func(tx *Tx) (bool, error) { return tx.SubscribeThread(ctx, "@a:x", "!r:x", "$t", automatic, cause) })
		}
		unsub := func(at int64) bool {
			return do(func(tx *Tx) (bool, error) { return tx.UnsubscribeThread(ctx, "@a:x", "!r:x", "$t", at) })
		}
		if unsub(5) {
			t.Fatal("unsubscribed without a subscription")
		}
		if !sub(true, 3) {
			t.Fatal("first automatic subscription refused")
		}
		if sub(true, 4) {
			t.Fatal("automatic subscription over an automatic one changed it")
		}
		if !unsub(10) {
			t.Fatal("unsubscription of a subscription changed nothing")
		}
		if sub(true, 10) || sub(true, 9) {
			t.Fatal("automatic subscription caused at or before the unsubscription applied")
		}
		if !sub(true, 11) {
			t.Fatal("automatic subscription caused after the unsubscription refused")
		}
		if !sub(false, 0) {
			t.Fatal("manual subscription over an automatic one changed nothing")
		}
		if sub(false, 0) || sub(true, 12) {
			t.Fatal("a second subscription over a manual one changed it")
		}
		got, err := s.ThreadSubscription(ctx, "@a:x", "!r:x", "$t")
		if err != nil || !got.Subscribed || got.Automatic || got.UnsubscribedAt != 10 {
			t.Fatalf("row: %+v %v", got, err)
		}
		changes, err := s.ThreadSubChanges(ctx, "@a:x", 0, s.Streams.AccountData.Current(), 10)
		if err != nil || len(changes) != 1 || changes[0].Pos != got.Pos {
			t.Fatalf("changes: %+v %v", changes, err)
		}
	})
}
