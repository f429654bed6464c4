package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"luxchat/internal/e2ee/e2eetest"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
	"luxchat/internal/testutil/pgtest"
)

const server = "test.local"

// forEachEngine runs f with a service on a fresh SQLite and a fresh
// PostgreSQL store.
func forEachEngine(t *testing.T, f func(t *testing.T, s *Service)) {
	open := func(t *testing.T, o store.Options) *Service {
		st, err := store.Open(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return New(st, server, slog.New(slog.NewTextHandler(io.Discard, nil)), Hooks{})
	}
	t.Run("sqlite", func(t *testing.T) { f(t, open(t, store.Options{DataDir: t.TempDir()})) })
	t.Run("postgres", func(t *testing.T) { f(t, open(t, store.Options{PostgresDSN: pgtest.NewDatabase(t)})) })
}

// newDevice creates a user (if needed) and a device in the store.
func newDevice(t testing.TB, s *Service, local, deviceID string) *e2eetest.Device {
	t.Helper()
	userID := "@" + local + ":" + server
	err := s.store.InTx(context.Background(), func(tx *store.Tx) error {
		if err := tx.CreateUser(context.Background(), store.User{UserID: userID}); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
		return tx.UpsertDevice(context.Background(), store.Device{UserID: userID, DeviceID: deviceID})
	})
	if err != nil {
		t.Fatal(err)
	}
	return e2eetest.NewDevice(userID, deviceID)
}

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func rawMap(m map[string]any) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range m {
		out[k] = raw(v)
	}
	return out
}

func caller(d *e2eetest.Device) Caller { return Caller{UserID: d.UserID, DeviceID: d.DeviceID} }

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	e, ok := errcode.As(err)
	if !ok || e.Code != code {
		t.Fatalf("got %v, want %s", err, code)
	}
}

func TestUploadRejectsBadKeys(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Service) {
		ctx := context.Background()
		alice := newDevice(t, s, "alice", "ADEV")
		other := newDevice(t, s, "alice", "OTHER")
		mallory := newDevice(t, s, "mallory", "MDEV")
		forged := alice.Unsigned()
		forged = other.Ed25519.Sign(forged, alice.UserID, alice.KeyID()) // signed by the wrong key
		notB64 := alice.Unsigned()
		notB64["keys"].(map[string]any)["curve25519:ADEV"] = "not base64!"
		notB64 = alice.Sign(notB64)
		for _, tc := range []struct {
			name string
			req  UploadRequest
			code string
		}{
			{"another device's keys", UploadRequest{DeviceKeys: raw(other.DeviceKeys())}, "M_INVALID_PARAM"},
			{"another user's keys", UploadRequest{DeviceKeys: raw(mallory.DeviceKeys())}, "M_INVALID_PARAM"},
			{"bad signature", UploadRequest{DeviceKeys: raw(forged)}, "M_INVALID_SIGNATURE"},
			{"no signatures member", UploadRequest{DeviceKeys: raw(alice.Unsigned())}, "M_BAD_JSON"},
			{"malformed key", UploadRequest{DeviceKeys: raw(notB64)}, "M_INVALID_PARAM"},
			{"not an object", UploadRequest{DeviceKeys: json.RawMessage(`[1]`)}, "M_BAD_JSON"},
			{"wrong types", UploadRequest{DeviceKeys: json.RawMessage(`{"user_id":1}`)}, "M_BAD_JSON"},
			{"badly signed one-time key", UploadRequest{DeviceKeys: raw(alice.DeviceKeys()),
				OneTimeKeys: rawMap(map[string]any{"signed_curve25519:X": other.Sign(map[string]any{"key": e2eetest.NewKey().B64()})})}, "M_INVALID_SIGNATURE"},
			{"bad key id", UploadRequest{OneTimeKeys: rawMap(map[string]any{"nocolon": "x"})}, "M_INVALID_PARAM"},
			{"two fallback keys", UploadRequest{DeviceKeys: raw(alice.DeviceKeys()), FallbackKeys: rawMap(mergeMaps(alice.FallbackKey(), alice.FallbackKey()))}, "M_INVALID_PARAM"},
		} {
			_, err := s.Upload(ctx, caller(alice), tc.req)
			if e, ok := errcode.As(err); !ok || e.Code != tc.code {
				t.Errorf("%s: got %v, want %s", tc.name, err, tc.code)
			}
		}
		// Nothing was stored by the failed uploads.
		if _, err := s.store.GetDeviceKeys(ctx, alice.UserID, alice.DeviceID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("keys stored after failures: %v", err)
		}

		// A good upload, then a one-time key replaced with other content:
		// refused, and the other keys of that upload are not stored.
		otks := alice.OneTimeKeys(5)
		counts, err := s.Upload(ctx, caller(alice), UploadRequest{DeviceKeys: raw(alice.DeviceKeys()), OneTimeKeys: rawMap(otks), FallbackKeys: rawMap(alice.FallbackKey())})
		if err != nil || counts["signed_curve25519"] != 5 {
			t.Fatalf("upload: %v %v", counts, err)
		}
		if counts, err = s.Upload(ctx, caller(alice), UploadRequest{OneTimeKeys: rawMap(otks)}); err != nil || counts["signed_curve25519"] != 5 {
			t.Fatalf("same keys again: %v %v", counts, err)
		}
		replaced := alice.OneTimeKeys(2)
		for k := range otks {
			replaced[k] = alice.Sign(map[string]any{"key": e2eetest.NewKey().B64()})
			break
		}
		_, err = s.Upload(ctx, caller(alice), UploadRequest{OneTimeKeys: rawMap(replaced)})
		wantCode(t, err, "M_INVALID_PARAM")
		if c, fb, _ := s.KeyCounts(ctx, alice.UserID, alice.DeviceID); c["signed_curve25519"] != 5 || !slices.Equal(fb, []string{"signed_curve25519"}) {
			t.Fatalf("after refused upload: %v %v", c, fb)
		}
	})
}

func mergeMaps(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// Twenty claims race for ten one-time keys: each key goes to one claim,
// the other claims get the fallback key.
func TestConcurrentClaims(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Service) {
		ctx := context.Background()
		alice := newDevice(t, s, "alice", "ADEV")
		otks := alice.OneTimeKeys(10)
		fb := alice.FallbackKey()
		if _, err := s.Upload(ctx, caller(alice), UploadRequest{DeviceKeys: raw(alice.DeviceKeys()), OneTimeKeys: rawMap(otks), FallbackKeys: rawMap(fb)}); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := s.Claim(ctx, map[string]map[string]string{alice.UserID: {alice.DeviceID: "signed_curve25519"}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for keyID := range res.OneTimeKeys[alice.UserID][alice.DeviceID] {
					got[keyID]++
				}
			}()
		}
		wg.Wait()
		var fbID string
		for k := range fb {
			fbID = k
		}
		for k := range otks {
			if got[k] != 1 {
				t.Errorf("one-time key %s handed out %d times", k, got[k])
			}
		}
		if got[fbID] != 10 {
			t.Errorf("fallback key handed out %d times, want 10 (%v)", got[fbID], got)
		}
		counts, fallback, err := s.KeyCounts(ctx, alice.UserID, alice.DeviceID)
		if err != nil || counts["signed_curve25519"] != 0 || len(fallback) != 0 {
			t.Fatalf("counts %v, unused fallback %v, %v", counts, fallback, err)
		}
		// Re-uploading the used fallback key keeps it used; a new one is unused.
		if _, err := s.Upload(ctx, caller(alice), UploadRequest{FallbackKeys: rawMap(fb)}); err != nil {
			t.Fatal(err)
		}
		if _, fallback, _ = s.KeyCounts(ctx, alice.UserID, alice.DeviceID); len(fallback) != 0 {
			t.Fatalf("same fallback key again became unused")
		}
		if _, err := s.Upload(ctx, caller(alice), UploadRequest{FallbackKeys: rawMap(alice.FallbackKey())}); err != nil {
			t.Fatal(err)
		}
		if _, fallback, _ = s.KeyCounts(ctx, alice.UserID, alice.DeviceID); !slices.Equal(fallback, []string{"signed_curve25519"}) {
			t.Fatalf("new fallback key: unused %v", fallback)
		}
	})
}

func TestToDeviceDeliveredOnceInOrder(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Service) {
		ctx := context.Background()
		alice := newDevice(t, s, "alice", "ADEV")
		alice2 := newDevice(t, s, "alice", "ADEV2")
		bob := newDevice(t, s, "bob", "BDEV")
		send := func(txn string, to map[string]map[string]json.RawMessage) {
			t.Helper()
			if err := s.SendToDevice(ctx, caller(bob), "m.test", txn, to); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 150 {
			send(fmt.Sprint("t", i), map[string]map[string]json.RawMessage{alice.UserID: {alice.DeviceID: raw(map[string]int{"n": i})}})
		}
		send("t0", map[string]map[string]json.RawMessage{alice.UserID: {alice.DeviceID: raw(map[string]int{"n": -1})}}) // repeated txn: ignored
		send("all", map[string]map[string]json.RawMessage{alice.UserID: {"*": raw(map[string]int{"n": 150})}, bob.UserID: {"NOPE": raw(map[string]int{})}})
		var from int64
		var got []int
		for range 5 {
			to := s.store.Streams.ToDevice.Current()
			evs, last, err := s.ToDevice(ctx, alice.UserID, alice.DeviceID, from, to, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				var e struct {
					Sender  string
					Type    string
					Content struct{ N int }
				}
				if err := json.Unmarshal(ev, &e); err != nil || e.Sender != bob.UserID || e.Type != "m.test" {
					t.Fatalf("event %s", ev)
				}
				got = append(got, e.Content.N)
			}
			from = last
		}
		if len(got) != 151 {
			t.Fatalf("got %d messages", len(got))
		}
		for i, n := range got {
			if n != i {
				t.Fatalf("message %d is %d", i, n)
			}
		}
		// The second device got the "*" message only; the first device's
		// messages are all gone once acknowledged.
		evs, _, _ := s.ToDevice(ctx, alice2.UserID, alice2.DeviceID, 0, s.store.Streams.ToDevice.Current(), 100)
		if len(evs) != 1 {
			t.Fatalf("second device: %d messages", len(evs))
		}
		if has, _ := s.store.HasToDeviceUpTo(ctx, alice.UserID, alice.DeviceID, from); has {
			t.Fatal("acknowledged messages were not deleted")
		}
		// Oversized and malformed messages.
		big := raw(map[string]string{"x": string(make([]byte, maxToDeviceContent))})
		wantCode(t, s.SendToDevice(ctx, caller(bob), "m.test", "big", map[string]map[string]json.RawMessage{alice.UserID: {alice.DeviceID: big}}), "M_TOO_LARGE")
		wantCode(t, s.SendToDevice(ctx, caller(bob), "m.test", "arr", map[string]map[string]json.RawMessage{alice.UserID: {alice.DeviceID: json.RawMessage(`[]`)}}), "M_BAD_JSON")
		wantCode(t, s.SendToDevice(ctx, caller(bob), "m.test", "who", map[string]map[string]json.RawMessage{"alice": {alice.DeviceID: raw(map[string]int{})}}), "M_INVALID_PARAM")
	})
}

func TestDeviceListChanges(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Service) {
		ctx := context.Background()
		alice := newDevice(t, s, "alice", "ADEV")
		bob := newDevice(t, s, "bob", "BDEV")
		carol := newDevice(t, s, "carol", "CDEV")
		var pos int64
		member := func(user, membership string) {
			err := s.store.InTx(ctx, func(tx *store.Tx) error {
				pos = tx.Alloc(s.store.Streams.Events)
				return tx.SetMembership(ctx, store.Membership{RoomID: "!r:" + server, UserID: user, Membership: membership, EventID: fmt.Sprint("$", pos), Pos: pos})
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		token := func() streamtoken.Token {
			return streamtoken.Token{Events: s.store.Streams.Events.Current(), DeviceLists: s.store.Streams.DeviceLists.Current()}
		}
		changes := func(user string, from streamtoken.Token) ([]string, []string) {
			c, l, err := s.DeviceListChanges(ctx, user, &from, token())
			if err != nil {
				t.Fatal(err)
			}
			return c, l
		}
		member(alice.UserID, "join")
		member(bob.UserID, "join")
		t0 := token()
		if _, err := s.Upload(ctx, caller(bob), UploadRequest{DeviceKeys: raw(bob.DeviceKeys())}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Upload(ctx, caller(carol), UploadRequest{DeviceKeys: raw(carol.DeviceKeys())}); err != nil {
			t.Fatal(err)
		}
		if c, l := changes(alice.UserID, t0); !slices.Equal(c, []string{bob.UserID}) || len(l) != 0 {
			t.Fatalf("after bob's upload: changed %v left %v", c, l)
		}
		t1 := token()
		member(carol.UserID, "join")
		if c, _ := changes(alice.UserID, t1); !slices.Equal(c, []string{carol.UserID}) {
			t.Fatalf("after carol joined: changed %v", c)
		}
		if c, _ := changes(carol.UserID, t1); !slices.Equal(c, []string{alice.UserID, bob.UserID}) {
			t.Fatalf("carol after joining: changed %v", c)
		}
		t2 := token()
		member(carol.UserID, "leave")
		if c, l := changes(alice.UserID, t2); len(c) != 0 || !slices.Equal(l, []string{carol.UserID}) {
			t.Fatalf("after carol left: changed %v left %v", c, l)
		}
		if c, l := changes(carol.UserID, t2); len(c) != 0 || !slices.Equal(l, []string{alice.UserID, bob.UserID}) {
			t.Fatalf("carol after leaving: changed %v left %v", c, l)
		}
		t3 := token()
		if err := s.DevicesDeleted(ctx, bob.UserID, []string{bob.DeviceID}); err != nil {
			t.Fatal(err)
		}
		if c, _ := changes(alice.UserID, t3); !slices.Equal(c, []string{bob.UserID}) {
			t.Fatalf("after bob's device was deleted: changed %v", c)
		}
		if c, _ := changes(carol.UserID, t3); len(c) != 0 {
			t.Fatalf("carol shares no room with bob but saw %v", c)
		}
		if c, l, _ := s.DeviceListChanges(ctx, alice.UserID, nil, token()); c != nil || l != nil {
			t.Fatal("initial sync got device lists")
		}
	})
}

func TestBackupKeepsBestKey(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Service) {
		ctx := context.Background()
		alice := newDevice(t, s, "alice", "ADEV")
		const alg = "m.megolm_backup.v1.curve25519-aes-sha2"
		v, err := s.CreateBackup(ctx, alice.UserID, alg, raw(map[string]string{"public_key": "abc"}))
		if err != nil || v != "1" {
			t.Fatalf("create: %q %v", v, err)
		}
		key := func(verified bool, fmi, fc int64, tag string) map[string]map[string]KeyBackupData {
			return map[string]map[string]KeyBackupData{"!r:x": {"s1": {FirstMessageIndex: &fmi, ForwardedCount: &fc, IsVerified: &verified, SessionData: raw(map[string]string{"tag": tag})}}}
		}
		steps := []struct {
			k       map[string]map[string]KeyBackupData
			winner  string
			newEtag bool
		}{
			{key(false, 5, 0, "a"), "a", true},
			{key(false, 6, 0, "b"), "a", false}, // higher first_message_index loses
			{key(false, 3, 2, "c"), "c", true},  // lower first_message_index wins
			{key(false, 3, 1, "d"), "d", true},  // same index, fewer forwards wins
			{key(false, 3, 1, "e"), "d", false}, // a tie keeps the stored key
			{key(true, 9, 9, "f"), "f", true},   // verified beats unverified
			{key(false, 0, 0, "g"), "f", false}, // unverified never beats verified
		}
		etag := ""
		for i, st := range steps {
			up, err := s.PutBackupKeys(ctx, alice.UserID, v, st.k)
			if err != nil {
				t.Fatal(err)
			}
			if up.Count != 1 || (up.Etag != etag) != st.newEtag {
				t.Fatalf("step %d: %+v after etag %q", i, up, etag)
			}
			etag = up.Etag
			got, err := s.GetBackupKeys(ctx, alice.UserID, v, "!r:x", "s1")
			if err != nil {
				t.Fatal(err)
			}
			var d struct {
				SessionData struct{ Tag string } `json:"session_data"`
			}
			_ = json.Unmarshal(raw(got), &d)
			if d.SessionData.Tag != st.winner {
				t.Fatalf("step %d: stored %q, want %q", i, d.SessionData.Tag, st.winner)
			}
		}
		// Only the current version takes keys.
		v2, _ := s.CreateBackup(ctx, alice.UserID, alg, raw(map[string]string{"public_key": "def"}))
		_, err = s.PutBackupKeys(ctx, alice.UserID, v, key(true, 0, 0, "x"))
		if e, ok := errcode.As(err); !ok || e.Code != "M_WRONG_ROOM_KEYS_VERSION" || e.Extra["current_version"] != v2 {
			t.Fatalf("old version: %v", err)
		}
		_, err = s.PutBackupKeys(ctx, alice.UserID, "77", key(true, 0, 0, "x"))
		wantCode(t, err, "M_NOT_FOUND")
		if err := s.DeleteBackup(ctx, alice.UserID, v2); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteBackup(ctx, alice.UserID, v2); err != nil {
			t.Fatalf("second delete: %v", err)
		}
		info, err := s.GetBackup(ctx, alice.UserID, "")
		if err != nil || info.Version != v || info.Count != 1 {
			t.Fatalf("latest after deleting v2: %+v %v", info, err)
		}
		// A new version never reuses a deleted number.
		if v3, _ := s.CreateBackup(ctx, alice.UserID, alg, raw(map[string]string{})); v3 != "3" {
			t.Fatalf("new version %q", v3)
		}
	})
}
