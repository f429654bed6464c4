package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"luxchat/internal/e2ee"
	"luxchat/internal/e2ee/e2eetest"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

const e2eePassword = "correct horse battery" // what testserver.Register sets

// device pairs a client with its (test) device keys.
type device struct {
	*ts.Client
	keys *e2eetest.Device
}

func newE2EEUser(t testing.TB, s *ts.Server, name string) *device {
	c := s.Register(t, name)
	return &device{Client: c, keys: e2eetest.NewDevice(c.UserID, c.DeviceID)}
}

// login opens a second session (device) of d's user.
func (d *device) login(t *testing.T) *device {
	t.Helper()
	c := &ts.Client{}
	*c = *d.Client
	c.Token = ""
	var resp struct {
		AccessToken string `json:"access_token"`
		DeviceID    string `json:"device_id"`
	}
	c.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": d.UserID}, "password": e2eePassword}, &resp)
	c.Token, c.DeviceID = resp.AccessToken, resp.DeviceID
	return &device{Client: c, keys: e2eetest.NewDevice(c.UserID, c.DeviceID)}
}

func (d *device) upload(t *testing.T, otks int, fallback bool) map[string]int {
	t.Helper()
	body := map[string]any{"device_keys": d.keys.DeviceKeys(), "one_time_keys": d.keys.OneTimeKeys(otks)}
	if fallback {
		body["fallback_keys"] = d.keys.FallbackKey()
	}
	var resp struct {
		Counts map[string]int `json:"one_time_key_counts"`
	}
	d.MustDo("POST", "/_matrix/client/v3/keys/upload", body, &resp)
	return resp.Counts
}

type keysQuery struct {
	DeviceKeys      map[string]map[string]map[string]any `json:"device_keys"`
	MasterKeys      map[string]map[string]any            `json:"master_keys"`
	SelfSigningKeys map[string]map[string]any            `json:"self_signing_keys"`
	UserSigningKeys map[string]map[string]any            `json:"user_signing_keys"`
}

func query(t *testing.T, c *ts.Client, users ...string) keysQuery {
	t.Helper()
	want := map[string][]string{}
	for _, u := range users {
		want[u] = []string{}
	}
	var q keysQuery
	c.MustDo("POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": want}, &q)
	return q
}

type e2eeSync struct {
	NextBatch   string `json:"next_batch"`
	DeviceLists struct {
		Changed []string `json:"changed"`
		Left    []string `json:"left"`
	} `json:"device_lists"`
	OTKCounts map[string]int `json:"device_one_time_keys_count"`
	Fallback  []string       `json:"device_unused_fallback_key_types"`
	ToDevice  struct {
		Events []struct {
			Sender  string         `json:"sender"`
			Type    string         `json:"type"`
			Content map[string]any `json:"content"`
		} `json:"events"`
	} `json:"to_device"`
}

func syncE2EE(t *testing.T, c *ts.Client, since string) e2eeSync {
	t.Helper()
	q := "timeout=0&set_presence=offline"
	if since != "" {
		q += "&since=" + url.QueryEscape(since)
	}
	var s e2eeSync
	c.MustDo("GET", "/_matrix/client/v3/sync?"+q, nil, &s)
	return s
}

func wantError(t *testing.T, r *ts.Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.ErrCode() != code {
		t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, status, code)
	}
}

func TestE2EEKeysAndDeviceLists(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := newE2EEUser(t, s, "alice"), newE2EEUser(t, s, "bob"), newE2EEUser(t, s, "carol")
		room := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
		bob.Join(room)
		bobSync := syncE2EE(t, bob.Client, "")

		if counts := alice.upload(t, 10, true); counts["signed_curve25519"] != 10 {
			t.Fatalf("counts %v", counts)
		}
		// Bob hears of Alice's new keys; Carol, who shares no room, queries them anyway.
		bobSync = syncE2EE(t, bob.Client, bobSync.NextBatch)
		if !slices.Contains(bobSync.DeviceLists.Changed, alice.UserID) {
			t.Fatalf("bob's device_lists %+v", bobSync.DeviceLists)
		}
		q := query(t, carol.Client, alice.UserID, bob.UserID, "@nobody:"+s.Config.ServerName)
		dk := q.DeviceKeys[alice.UserID][alice.DeviceID]
		if dk == nil || dk["keys"].(map[string]any)["ed25519:"+alice.DeviceID] != alice.keys.Ed25519.B64() {
			t.Fatalf("alice's keys %v", q.DeviceKeys)
		}
		if len(q.DeviceKeys[bob.UserID]) != 0 {
			t.Fatalf("bob has no keys yet: %v", q.DeviceKeys[bob.UserID])
		}
		aliceSync := syncE2EE(t, alice.Client, "")
		if aliceSync.OTKCounts["signed_curve25519"] != 10 || !slices.Equal(aliceSync.Fallback, []string{"signed_curve25519"}) {
			t.Fatalf("alice's counts %v %v", aliceSync.OTKCounts, aliceSync.Fallback)
		}

		// Bad uploads are refused with Matrix errors and store nothing.
		wantError(t, alice.Do("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": bob.keys.DeviceKeys()}), 400, "M_INVALID_PARAM")
		forged := bob.keys.Ed25519.Sign(alice.keys.Unsigned(), alice.UserID, alice.keys.KeyID())
		wantError(t, alice.Do("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": forged}), 400, "M_INVALID_SIGNATURE")
		wantError(t, alice.Do("POST", "/_matrix/client/v3/keys/upload", `{"device_keys": {"keys": 5}}`), 400, "M_BAD_JSON")
		wantError(t, alice.Do("POST", "/_matrix/client/v3/keys/upload", `{"one_time_keys": {"signed_curve25519:x": {"key": "short"}}}`), 400, "M_INVALID_PARAM")
		wantError(t, alice.Do("POST", "/_matrix/client/v3/keys/query", `{"device_keys": {"not a user": []}}`), 400, "M_INVALID_PARAM")

		// Claims: one-time keys first, then the fallback key.
		claim := func() string {
			var res struct {
				OneTimeKeys map[string]map[string]map[string]any `json:"one_time_keys"`
			}
			bob.MustDo("POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{alice.DeviceID: "signed_curve25519"}}}, &res)
			for k := range res.OneTimeKeys[alice.UserID][alice.DeviceID] {
				return k
			}
			return ""
		}
		seen := map[string]bool{}
		for range 10 {
			k := claim()
			if seen[k] || !strings.HasPrefix(k, "signed_curve25519:AAAA") {
				t.Fatalf("claimed %q (seen %v)", k, seen)
			}
			seen[k] = true
		}
		fb := claim()
		if !strings.HasPrefix(fb, "signed_curve25519:FB") || claim() != fb {
			t.Fatalf("fallback claims: %q", fb)
		}
		aliceSync = syncE2EE(t, alice.Client, aliceSync.NextBatch)
		if aliceSync.OTKCounts["signed_curve25519"] != 0 || len(aliceSync.Fallback) != 0 {
			t.Fatalf("after claims: %v %v", aliceSync.OTKCounts, aliceSync.Fallback)
		}

		// Carol joins: Alice and Bob hear of her; she leaves: they are told she left.
		bobSync = syncE2EE(t, bob.Client, bobSync.NextBatch)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]string{"user_id": carol.UserID}, nil)
		carol.Join(room)
		bobSync = syncE2EE(t, bob.Client, bobSync.NextBatch)
		if !slices.Contains(bobSync.DeviceLists.Changed, carol.UserID) {
			t.Fatalf("after carol joined: %+v", bobSync.DeviceLists)
		}
		carol.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		bobSync = syncE2EE(t, bob.Client, bobSync.NextBatch)
		if !slices.Equal(bobSync.DeviceLists.Left, []string{carol.UserID}) {
			t.Fatalf("after carol left: %+v", bobSync.DeviceLists)
		}
		var changes struct{ Changed, Left []string }
		bob.MustDo("GET", "/_matrix/client/v3/keys/changes?from=s0&to="+url.QueryEscape(bobSync.NextBatch), nil, &changes)
		if !slices.Contains(changes.Changed, alice.UserID) {
			t.Fatalf("/keys/changes %+v", changes)
		}

		// A second device of Alice; deleting it removes its keys and tells Bob.
		alice2 := alice.login(t)
		alice2.upload(t, 1, false)
		if q := query(t, bob.Client, alice.UserID); len(q.DeviceKeys[alice.UserID]) != 2 {
			t.Fatalf("alice's devices %v", q.DeviceKeys[alice.UserID])
		}
		bobSync = syncE2EE(t, bob.Client, bobSync.NextBatch)
		alice.MustDo("POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{alice2.DeviceID},
			"auth": map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": alice.UserID}, "password": e2eePassword}}, nil)
		if q := query(t, bob.Client, alice.UserID); len(q.DeviceKeys[alice.UserID]) != 1 {
			t.Fatalf("deleted device still listed: %v", q.DeviceKeys[alice.UserID])
		}
		bobSync = syncE2EE(t, bob.Client, bobSync.NextBatch)
		if !slices.Contains(bobSync.DeviceLists.Changed, alice.UserID) {
			t.Fatalf("device deletion not announced: %+v", bobSync.DeviceLists)
		}
	})
}

func TestToDeviceMessages(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := newE2EEUser(t, s, "alice"), newE2EEUser(t, s, "bob")
		alice2 := alice.login(t)
		first := syncE2EE(t, alice.Client, "")

		// A long-polling sync wakes up for a to-device message.
		done := make(chan e2eeSync, 1)
		go func() {
			var out e2eeSync
			alice.MustDo("GET", "/_matrix/client/v3/sync?timeout=20000&set_presence=offline&since="+url.QueryEscape(first.NextBatch), nil, &out)
			done <- out
		}()
		time.Sleep(200 * time.Millisecond)
		start := time.Now()
		send := func(txn string, msgs map[string]any) *ts.Response {
			return bob.Do("PUT", "/_matrix/client/v3/sendToDevice/m.test/"+txn, map[string]any{"messages": msgs})
		}
		if r := send("t1", map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]int{"n": 1}}}); r.Status != 200 {
			t.Fatalf("send: %d %s", r.Status, r.Body)
		}
		var woke e2eeSync
		select {
		case woke = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("sync was not woken")
		}
		if time.Since(start) > 5*time.Second || len(woke.ToDevice.Events) != 1 || woke.ToDevice.Events[0].Sender != bob.UserID {
			t.Fatalf("woken sync: %+v after %v", woke.ToDevice, time.Since(start))
		}
		// The same transaction again sends nothing; "*" reaches both devices.
		send("t1", map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]int{"n": 1}}})
		send("t2", map[string]any{alice.UserID: map[string]any{"*": map[string]int{"n": 2}}})
		next := syncE2EE(t, alice.Client, woke.NextBatch)
		if len(next.ToDevice.Events) != 1 || next.ToDevice.Events[0].Content["n"] != float64(2) {
			t.Fatalf("after repeat and *: %+v", next.ToDevice)
		}
		if again := syncE2EE(t, alice.Client, next.NextBatch); len(again.ToDevice.Events) != 0 {
			t.Fatalf("delivered twice: %+v", again.ToDevice)
		}
		other := syncE2EE(t, alice2.Client, "")
		if len(other.ToDevice.Events) != 1 {
			t.Fatalf("second device: %+v", other.ToDevice)
		}
		// Another device of Bob may reuse the transaction id.
		bob2 := bob.login(t)
		if r := bob2.Do("PUT", "/_matrix/client/v3/sendToDevice/m.test/t1", map[string]any{"messages": map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]int{"n": 3}}}}); r.Status != 200 {
			t.Fatal(r.Status)
		}
		if got := syncE2EE(t, alice.Client, next.NextBatch); len(got.ToDevice.Events) != 1 {
			t.Fatalf("other device's txn: %+v", got.ToDevice)
		}
		// Oversized content, a malformed body.
		big := strings.Repeat("x", 70000)
		wantError(t, send("big", map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]string{"x": big}}}), 413, "M_TOO_LARGE")
		wantError(t, send("bad", map[string]any{alice.UserID: map[string]any{alice.DeviceID: "text"}}), 400, "M_BAD_JSON")
		wantError(t, bob.Do("PUT", "/_matrix/client/v3/sendToDevice/m.test/x", `{"messages": 1}`), 400, "M_BAD_JSON")
	})
}

func uia(user string) map[string]any {
	return map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": user}, "password": e2eePassword}
}

func TestCrossSigning(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := newE2EEUser(t, s, "alice"), newE2EEUser(t, s, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
		bob.Join(room)
		alice.upload(t, 0, false)
		bob.upload(t, 0, false)
		aliceCS, bobCS := e2eetest.NewCrossSigning(alice.UserID), e2eetest.NewCrossSigning(bob.UserID)

		// Signed by the wrong master key: refused.
		bad := aliceCS.Upload()
		bad["self_signing_key"] = bobCS.Master.Sign(map[string]any{"user_id": alice.UserID, "usage": []string{"self_signing"},
			"keys": map[string]string{"ed25519:" + aliceCS.SelfSigning.B64(): aliceCS.SelfSigning.B64()}}, alice.UserID, "ed25519:"+aliceCS.Master.B64())
		wantError(t, alice.Do("POST", "/_matrix/client/v3/keys/device_signing/upload", bad), 400, "M_INVALID_SIGNATURE")
		wantError(t, alice.Do("POST", "/_matrix/client/v3/keys/device_signing/upload", bobCS.Upload()), 403, "M_FORBIDDEN")
		wantError(t, alice.Do("POST", "/_matrix/client/v3/keys/device_signing/upload", map[string]any{"self_signing_key": aliceCS.SelfSigningKey()}), 400, "M_MISSING_PARAM")

		// The first upload needs no auth, nor does the same upload again.
		bobSync := syncE2EE(t, bob.Client, "")
		alice.MustDo("POST", "/_matrix/client/v3/keys/device_signing/upload", aliceCS.Upload(), nil)
		alice.MustDo("POST", "/_matrix/client/v3/keys/device_signing/upload", aliceCS.Upload(), nil)
		bob.MustDo("POST", "/_matrix/client/v3/keys/device_signing/upload", bobCS.Upload(), nil)
		bobSync = syncE2EE(t, bob.Client, bobSync.NextBatch)
		if !slices.Contains(bobSync.DeviceLists.Changed, alice.UserID) {
			t.Fatalf("cross-signing change not announced: %+v", bobSync.DeviceLists)
		}

		// Alice signs her device with her self-signing key, and her master
		// key with her device; Bob signs Alice's master key.
		aliceSync := syncE2EE(t, alice.Client, "")
		var res struct {
			Failures map[string]map[string]map[string]any `json:"failures"`
		}
		masterSignedByDevice := alice.keys.Sign(aliceCS.MasterKey())
		alice.MustDo("POST", "/_matrix/client/v3/keys/signatures/upload", map[string]any{alice.UserID: map[string]any{
			alice.DeviceID:       aliceCS.SignDevice(alice.keys),
			aliceCS.Master.B64(): masterSignedByDevice,
			"UNKNOWNDEVICE":      aliceCS.SignDevice(alice.keys),
			bobCS.Master.B64():   bobCS.SignMaster(aliceCS.MasterKey()),
		}}, &res)
		if len(res.Failures[alice.UserID]) != 2 || res.Failures[alice.UserID]["UNKNOWNDEVICE"] == nil {
			t.Fatalf("failures %v", res.Failures)
		}
		res.Failures = nil
		bob.MustDo("POST", "/_matrix/client/v3/keys/signatures/upload", map[string]any{alice.UserID: map[string]any{
			aliceCS.Master.B64(): bobCS.SignMaster(aliceCS.MasterKey()),
		}}, &res)
		if len(res.Failures) != 0 {
			t.Fatalf("bob's signature refused: %v", res.Failures)
		}
		// A signature that does not verify is reported, not stored.
		tampered := bobCS.SignMaster(aliceCS.MasterKey())
		tampered["signatures"].(map[string]any)[bob.UserID].(map[string]any)["ed25519:"+bobCS.UserSigning.B64()] = strings.Repeat("A", 86)
		res.Failures = nil
		bob.MustDo("POST", "/_matrix/client/v3/keys/signatures/upload", map[string]any{alice.UserID: map[string]any{aliceCS.Master.B64(): tampered}}, &res)
		if res.Failures[alice.UserID][aliceCS.Master.B64()]["errcode"] != "M_INVALID_SIGNATURE" {
			t.Fatalf("tampered signature: %v", res.Failures)
		}

		sigsOf := func(obj map[string]any, user string) map[string]any {
			sigs, _ := obj["signatures"].(map[string]any)
			m, _ := sigs[user].(map[string]any)
			return m
		}
		asBob := query(t, bob.Client, alice.UserID, bob.UserID)
		if sigsOf(asBob.DeviceKeys[alice.UserID][alice.DeviceID], alice.UserID)["ed25519:"+aliceCS.SelfSigning.B64()] == nil {
			t.Fatalf("self-signing signature missing: %v", asBob.DeviceKeys[alice.UserID][alice.DeviceID])
		}
		if sigsOf(asBob.MasterKeys[alice.UserID], bob.UserID)["ed25519:"+bobCS.UserSigning.B64()] == nil ||
			sigsOf(asBob.MasterKeys[alice.UserID], alice.UserID)["ed25519:"+alice.DeviceID] == nil {
			t.Fatalf("master key signatures: %v", asBob.MasterKeys[alice.UserID])
		}
		if asBob.SelfSigningKeys[alice.UserID] == nil || asBob.UserSigningKeys[alice.UserID] != nil || asBob.UserSigningKeys[bob.UserID] == nil {
			t.Fatalf("user-signing keys must be private: %v", asBob.UserSigningKeys)
		}
		asAlice := query(t, alice.Client, alice.UserID)
		if sigsOf(asAlice.MasterKeys[alice.UserID], bob.UserID) != nil {
			t.Fatal("bob's signature is shown to alice")
		}
		if aliceSync = syncE2EE(t, alice.Client, aliceSync.NextBatch); !slices.Contains(aliceSync.DeviceLists.Changed, alice.UserID) {
			t.Fatalf("alice's own signatures not announced: %+v", aliceSync.DeviceLists)
		}

		// Replacing the keys takes the password.
		newCS := e2eetest.NewCrossSigning(alice.UserID)
		r := alice.Do("POST", "/_matrix/client/v3/keys/device_signing/upload", newCS.Upload())
		var challenge struct {
			Session string `json:"session"`
			Flows   []struct {
				Stages []string `json:"stages"`
			} `json:"flows"`
		}
		if r.Status != http.StatusUnauthorized || r.JSON(&challenge) != nil || challenge.Session == "" || challenge.Flows[0].Stages[0] != "m.login.password" {
			t.Fatalf("replacement without auth: %d %s", r.Status, r.Body)
		}
		body := newCS.Upload()
		wrong := uia(alice.UserID)
		wrong["password"], wrong["session"] = "wrong", challenge.Session
		body["auth"] = wrong
		if r := alice.Do("POST", "/_matrix/client/v3/keys/device_signing/upload", body); r.Status != http.StatusUnauthorized || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("wrong password: %d %s", r.Status, r.Body)
		}
		good := uia(alice.UserID)
		good["session"] = challenge.Session
		body["auth"] = good
		alice.MustDo("POST", "/_matrix/client/v3/keys/device_signing/upload", body, nil)
		asBob = query(t, bob.Client, alice.UserID)
		if asBob.MasterKeys[alice.UserID]["keys"].(map[string]any)["ed25519:"+newCS.Master.B64()] == nil {
			t.Fatalf("new master key: %v", asBob.MasterKeys[alice.UserID])
		}
		if sigsOf(asBob.DeviceKeys[alice.UserID][alice.DeviceID], alice.UserID)["ed25519:"+aliceCS.SelfSigning.B64()] != nil {
			t.Fatal("signature of the replaced self-signing key is still served")
		}
	})
}

func TestKeyBackupAPI(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := newE2EEUser(t, s, "alice"), newE2EEUser(t, s, "bob")
		const base = "/_matrix/client/v3/room_keys"
		wantError(t, alice.Do("GET", base+"/version", nil), 404, "M_NOT_FOUND")
		wantError(t, alice.Do("POST", base+"/version", map[string]any{"algorithm": "rot13", "auth_data": map[string]any{}}), 400, "M_INVALID_PARAM")
		wantError(t, alice.Do("POST", base+"/version", map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": "x"}), 400, "M_BAD_JSON")
		var created struct{ Version string }
		alice.MustDo("POST", base+"/version", map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]string{"public_key": "pk"}}, &created)
		room := "!room:" + s.Config.ServerName
		session := map[string]any{"first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": map[string]string{"ciphertext": "c"}}
		var up struct {
			Etag  string
			Count int
		}
		alice.MustDo("PUT", base+"/keys/"+esc(room)+"/s1?version="+created.Version, session, &up)
		alice.MustDo("PUT", base+"/keys/"+esc(room)+"?version="+created.Version, map[string]any{"sessions": map[string]any{"s2": session}}, &up)
		alice.MustDo("PUT", base+"/keys?version="+created.Version, map[string]any{"rooms": map[string]any{room: map[string]any{"sessions": map[string]any{"s3": session}}}}, &up)
		if up.Count != 3 {
			t.Fatalf("count %d", up.Count)
		}
		var info struct {
			Algorithm string
			Count     int
			Etag      string
			Version   string
		}
		alice.MustDo("GET", base+"/version", nil, &info)
		if info.Version != created.Version || info.Count != 3 || info.Etag != up.Etag {
			t.Fatalf("info %+v, last update %+v", info, up)
		}
		var all struct {
			Rooms map[string]struct {
				Sessions map[string]any `json:"sessions"`
			} `json:"rooms"`
		}
		alice.MustDo("GET", base+"/keys?version="+created.Version, nil, &all)
		if len(all.Rooms[room].Sessions) != 3 {
			t.Fatalf("keys %v", all)
		}
		wantError(t, alice.Do("GET", base+"/keys/"+esc(room)+"/nope?version="+created.Version, nil), 404, "M_NOT_FOUND")
		wantError(t, alice.Do("PUT", base+"/keys/"+esc(room)+"/s1?version="+created.Version, `{"first_message_index": "zero"}`), 400, "M_BAD_JSON")
		wantError(t, alice.Do("PUT", base+"/keys/"+esc(room)+"/s1?version="+created.Version, map[string]any{"first_message_index": 1}), 400, "M_MISSING_PARAM")
		wantError(t, alice.Do("PUT", base+"/version/"+created.Version, map[string]any{"algorithm": "org.matrix.msc3270.v1.aes-hmac-sha2", "auth_data": map[string]any{}}), 400, "M_INVALID_PARAM")
		wantError(t, alice.Do("GET", base+"/version/banana", nil), 404, "M_NOT_FOUND")

		// Only the owner sees the backup.
		wantError(t, bob.Do("GET", base+"/version/"+created.Version, nil), 404, "M_NOT_FOUND")
		wantError(t, bob.Do("GET", base+"/keys?version="+created.Version, nil), 404, "M_NOT_FOUND")
		wantError(t, bob.Do("PUT", base+"/keys/"+esc(room)+"/s9?version="+created.Version, session), 404, "M_NOT_FOUND")
		wantError(t, bob.Do("DELETE", base+"/version/"+created.Version, nil), 404, "M_NOT_FOUND")

		// A newer version makes the old one read-only.
		var v2 struct{ Version string }
		alice.MustDo("POST", base+"/version", map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]string{"public_key": "pk2"}}, &v2)
		r := alice.Do("PUT", base+"/keys/"+esc(room)+"/s4?version="+created.Version, session)
		var wrong struct {
			Errcode        string `json:"errcode"`
			CurrentVersion string `json:"current_version"`
		}
		if r.Status != 403 || r.JSON(&wrong) != nil || wrong.Errcode != "M_WRONG_ROOM_KEYS_VERSION" || wrong.CurrentVersion != v2.Version {
			t.Fatalf("old version: %d %s", r.Status, r.Body)
		}
		alice.MustDo("DELETE", base+"/keys/"+esc(room)+"/s1?version="+created.Version, nil, &up)
		if up.Count != 2 {
			t.Fatalf("after delete: %+v", up)
		}
		alice.MustDo("DELETE", base+"/version/"+v2.Version, nil, nil)
		alice.MustDo("DELETE", base+"/version/"+v2.Version, nil, nil)
		alice.MustDo("GET", base+"/version", nil, &info)
		if info.Version != created.Version {
			t.Fatalf("current after deleting v2: %+v", info)
		}
	})
}

func TestDehydratedDevice(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := newE2EEUser(t, s, "alice"), newE2EEUser(t, s, "bob")
		const base = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"
		wantError(t, alice.Do("GET", base, nil), 404, "M_NOT_FOUND")
		dd := e2eetest.NewDevice(alice.UserID, "DEHYDRATED1")
		wantError(t, alice.Do("PUT", base, map[string]any{"device_id": dd.DeviceID, "device_data": map[string]string{"algorithm": "x"},
			"device_keys": alice.keys.DeviceKeys()}), 400, "M_INVALID_PARAM")
		wantError(t, alice.Do("PUT", base, map[string]any{"device_id": alice.DeviceID, "device_data": map[string]string{"algorithm": "x"}}), 400, "M_INVALID_PARAM")
		var put struct {
			DeviceID string `json:"device_id"`
		}
		alice.MustDo("PUT", base, map[string]any{"device_id": dd.DeviceID, "device_data": map[string]string{"algorithm": "m.dehydration.v1.olm", "device_pickle": "p"},
			"initial_device_display_name": "parked", "device_keys": dd.DeviceKeys(), "one_time_keys": dd.OneTimeKeys(3), "fallback_keys": dd.FallbackKey()}, &put)
		if put.DeviceID != dd.DeviceID {
			t.Fatalf("put: %+v", put)
		}
		var got struct {
			DeviceID   string            `json:"device_id"`
			DeviceData map[string]string `json:"device_data"`
		}
		alice.MustDo("GET", base, nil, &got)
		if got.DeviceID != dd.DeviceID || got.DeviceData["device_pickle"] != "p" {
			t.Fatalf("get: %+v", got)
		}
		if q := query(t, bob.Client, alice.UserID); q.DeviceKeys[alice.UserID][dd.DeviceID] == nil {
			t.Fatalf("dehydrated device keys not published: %v", q.DeviceKeys)
		}
		for i := range 3 {
			bob.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/sendToDevice/m.room_key/d%d", i), map[string]any{"messages": map[string]any{alice.UserID: map[string]any{dd.DeviceID: map[string]int{"n": i}}}}, nil)
		}
		var page struct {
			Events    []map[string]any `json:"events"`
			NextBatch *string          `json:"next_batch"`
		}
		alice.MustDo("POST", base+"/"+dd.DeviceID+"/events", map[string]any{}, &page)
		if len(page.Events) != 3 || page.NextBatch == nil {
			t.Fatalf("first page: %+v", page)
		}
		next := *page.NextBatch
		page.NextBatch = nil
		alice.MustDo("GET", base+"/"+dd.DeviceID+"/events?from="+next, nil, &page)
		if len(page.Events) != 0 || page.NextBatch != nil {
			t.Fatalf("second page: %+v", page)
		}
		wantError(t, bob.Do("POST", base+"/"+dd.DeviceID+"/events", map[string]any{}), 403, "M_FORBIDDEN")
		wantError(t, alice.Do("POST", base+"/"+alice.DeviceID+"/events", map[string]any{}), 403, "M_FORBIDDEN")
		alice.MustDo("DELETE", base, map[string]any{}, &put)
		if put.DeviceID != dd.DeviceID {
			t.Fatalf("delete: %+v", put)
		}
		if q := query(t, bob.Client, alice.UserID); q.DeviceKeys[alice.UserID][dd.DeviceID] != nil {
			t.Fatal("deleted dehydrated device still published")
		}
		wantError(t, alice.Do("DELETE", base, map[string]any{}), 404, "M_NOT_FOUND")
	})
}

// Malformed bodies on every E2EE endpoint get 4xx answers, never 5xx.
func TestE2EEBadInputNever500(t *testing.T) {
	s := ts.New(t)
	alice := newE2EEUser(t, s, "alice")
	bodies := []string{``, `null`, `[]`, `"x"`, `{`, `{"device_keys": null}`, `{"device_keys": []}`, `{"one_time_keys": {"a:b": 1}}`,
		`{"fallback_keys": {"a:b": {"key": 5}}}`, `{"one_time_keys": {"x": {}}}`, `{"device_keys": {"x": []}}`, `{"one_time_keys": null}`,
		`{"master_key": {"user_id": 1}}`, `{"master_key": {"keys": {"ed25519:a": "a"}}}`, `{"@a:b": {"k": []}}`, `{"@a:b": 5}`,
		`{"messages": {"@a:b": {"D": 5}}}`, `{"messages": {"@x": {}}}`, `{"rooms": {"!r:x": {"sessions": {"s": {}}}}}`, `{"rooms": 5}`,
		`{"sessions": {"s": null}}`, `{"algorithm": 5}`, `{"device_data": 5}`, `{"next_batch": 5}`, `{"next_batch": "zzz"}`,
		`{"one_time_keys": {"@` + s.Config.ServerName + `": {"D": 5}}}`, `{"device_keys": {"@a:` + s.Config.ServerName + `": "x"}}`}
	paths := []string{"POST /keys/upload", "POST /keys/query", "POST /keys/claim", "POST /keys/device_signing/upload",
		"POST /keys/signatures/upload", "PUT /sendToDevice/m.x/1", "POST /room_keys/version", "PUT /room_keys/version/1",
		"PUT /room_keys/keys?version=1", "PUT /room_keys/keys/!r:x?version=1", "PUT /room_keys/keys/!r:x/s?version=1",
		"PUT /unstable/org.matrix.msc3814.v1/dehydrated_device", "POST /unstable/org.matrix.msc3814.v1/dehydrated_device/D/events"}
	for _, p := range paths {
		method, path, _ := strings.Cut(p, " ")
		prefix := "/_matrix/client/v3"
		if strings.HasPrefix(path, "/unstable") {
			prefix = "/_matrix/client"
		}
		for _, b := range bodies {
			r := alice.Do(method, prefix+path, b)
			if r.Status >= 500 {
				t.Errorf("%s %s: %d %s", p, b, r.Status, r.Body)
			}
		}
	}
	for _, q := range []string{"from=x&to=y", "from=s1", "", "from=s1_2_3_4_5_6_7&to=s99999999999999999999"} {
		if r := alice.Do("GET", "/_matrix/client/v3/keys/changes?"+q, nil); r.Status != 400 {
			t.Errorf("/keys/changes?%s: %d %s", q, r.Status, r.Body)
		}
	}
}

// BenchmarkKeysQuery500 measures POST /keys/query for 500 users with one
// device and cross-signing keys each.
func BenchmarkKeysQuery500(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			var opts []ts.Option
			if engine == "postgres" {
				opts = append(opts, ts.WithPostgres(b))
			}
			s := ts.New(b, opts...)
			asker := s.Register(b, "asker")
			users := seedUsers(b, s, 500, 0)
			body := map[string]any{"device_keys": users}
			b.ResetTimer()
			for range b.N {
				// Decoded shallowly: the client's JSON work is not the server's.
				var q struct {
					DeviceKeys map[string]json.RawMessage `json:"device_keys"`
					MasterKeys map[string]json.RawMessage `json:"master_keys"`
				}
				asker.MustDo("POST", "/_matrix/client/v3/keys/query", body, &q)
				if len(q.DeviceKeys) != 500 || len(q.MasterKeys) != 500 {
					b.Fatalf("%d users, %d master keys", len(q.DeviceKeys), len(q.MasterKeys))
				}
			}
		})
	}
}

// BenchmarkKeysClaim100 measures POST /keys/claim of one one-time key from
// each of 100 devices.
func BenchmarkKeysClaim100(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			var opts []ts.Option
			if engine == "postgres" {
				opts = append(opts, ts.WithPostgres(b))
			}
			s := ts.New(b, opts...)
			asker := s.Register(b, "asker")
			users := seedUsers(b, s, 100, b.N)
			want := map[string]map[string]string{}
			for u := range users {
				want[u] = map[string]string{"DEV": "signed_curve25519"}
			}
			body := map[string]any{"one_time_keys": want}
			b.ResetTimer()
			for range b.N {
				var res struct {
					OneTimeKeys map[string]map[string]map[string]any `json:"one_time_keys"`
				}
				asker.MustDo("POST", "/_matrix/client/v3/keys/claim", body, &res)
				if len(res.OneTimeKeys) != 100 {
					b.Fatalf("%d keys", len(res.OneTimeKeys))
				}
			}
		})
	}
}

// seedUsers creates n users with a device "DEV" each, its keys, otks
// one-time keys and cross-signing keys, straight through the services.
func seedUsers(b *testing.B, s *ts.Server, n, otks int) map[string][]string {
	ctx := context.Background()
	users := map[string][]string{}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 2)
	for i := range n {
		userID := fmt.Sprintf("@seed%d:%s", i, s.Config.ServerName)
		users[userID] = []string{}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := s.Store.InTx(ctx, func(tx *store.Tx) error {
				if err := tx.CreateUser(ctx, store.User{UserID: userID}); err != nil {
					return err
				}
				return tx.UpsertDevice(ctx, store.Device{UserID: userID, DeviceID: "DEV"})
			})
			if err != nil {
				errs <- err
				return
			}
			d := e2eetest.NewDevice(userID, "DEV")
			c := e2ee.Caller{UserID: userID, DeviceID: "DEV"}
			req := e2ee.UploadRequest{DeviceKeys: mustRaw(d.DeviceKeys())}
			for left := otks; ; left -= 1000 {
				req.OneTimeKeys = map[string]json.RawMessage{}
				for k, v := range d.OneTimeKeys(min(left, 1000)) {
					req.OneTimeKeys[k] = mustRaw(v)
				}
				if _, err := s.E2EE.Upload(ctx, c, req); err != nil {
					errs <- err
					return
				}
				req.DeviceKeys = nil
				if left <= 1000 {
					break
				}
			}
			cs := e2eetest.NewCrossSigning(userID)
			if err := s.E2EE.UploadSigningKeys(ctx, c, e2ee.SigningKeysRequest{MasterKey: mustRaw(cs.MasterKey()), SelfSigningKey: mustRaw(cs.SelfSigningKey())}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return users
}

func mustRaw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzE2EEAPI throws arbitrary bodies at the end-to-end encryption
// endpoints: the answer is a Matrix error or success, never a 500.
func FuzzE2EEAPI(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"device_keys":{"user_id":"@a:b","device_id":"D","algorithms":[],"keys":{"ed25519:D":"x"},"signatures":{"@a:b":{"ed25519:D":"y"}}}}`,
		`{"one_time_keys":{"signed_curve25519:A":{"key":"k","signatures":{}}}}`, `{"device_keys":{"@a:localhost":["D"]}}`,
		`{"one_time_keys":{"@a:localhost":{"D":"signed_curve25519"}}}`, `{"master_key":{"user_id":"@a:b","usage":["master"],"keys":{"ed25519:k":"k"}}}`,
		`{"messages":{"@a:localhost":{"*":{"a":1}}}}`, `{"rooms":{"!r:x":{"sessions":{"s":{"first_message_index":1e99}}}}}`,
		`{"algorithm":"m.megolm_backup.v1.curve25519-aes-sha2","auth_data":{}}`, `{"device_data":{},"device_id":""}`, "\xff", `[`,
	} {
		f.Add(seed)
	}
	s := ts.New(f)
	alice := newE2EEUser(f, s, "fuzz")
	f.Fuzz(func(t *testing.T, body string) {
		alice.SetT(t)
		for _, p := range []string{"POST /keys/upload", "POST /keys/query", "POST /keys/claim", "POST /keys/device_signing/upload",
			"POST /keys/signatures/upload", "PUT /sendToDevice/m.fz/1", "POST /room_keys/version", "PUT /room_keys/version/1",
			"PUT /room_keys/keys?version=1", "PUT /room_keys/keys/!r:x/s?version=1"} {
			method, path, _ := strings.Cut(p, " ")
			r := alice.Do(method, "/_matrix/client/v3"+path, []byte(body))
			if r.Status >= http.StatusInternalServerError {
				t.Fatalf("%s with %q: %d %s", p, body, r.Status, r.Body)
			}
		}
		for _, p := range []string{"PUT /dehydrated_device", "POST /dehydrated_device/D/events"} {
			method, path, _ := strings.Cut(p, " ")
			r := alice.Do(method, "/_matrix/client/unstable/org.matrix.msc3814.v1"+path, []byte(body))
			if r.Status >= http.StatusInternalServerError {
				t.Fatalf("%s with %q: %d %s", p, body, r.Status, r.Body)
			}
		}
	})
}
