package integration

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"luxchat/internal/e2ee/e2eetest"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// readArchive opens an export and returns its files by name.
func readArchive(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("export is not a zip archive: %v (%d bytes: %.200q)", err, len(data), data)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		files[f.Name] = b
	}
	return files
}

func exportUser(t *testing.T, admin *ts.Client, userID string) map[string][]byte {
	t.Helper()
	r := admin.Do("POST", "/_luxchat/admin/v1/users/"+esc(userID)+"/export", nil)
	if r.Status != 200 || r.Header.Get("Content-Type") != "application/zip" {
		t.Fatalf("export: %d %s %.300s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	return readArchive(t, r.Body)
}

// The export of a user holds what they sent and set, checked against what
// was sent: their profile, account data, devices, memberships, push rules,
// pushers, reports, each event they sent as stored (the ciphertext of an
// encrypted room's event, byte for byte), and their upload decrypted from
// the server's at-rest encryption, byte for byte.
func TestGDPRExport(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		alice.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/displayname", map[string]string{"displayname": "Alice Archive"}, nil)
		file := make([]byte, 150_000)
		_, _ = rand.Read(file)
		mediaID := upload(t, alice, "application/octet-stream", "report.pdf", file)
		alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/account_data/org.example.settings", map[string]any{"theme": "dark"}, nil)

		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Plain"})
		bob.Join(room)
		var sent []string
		for _, body := range []string{"first words", "second words", "third words"} {
			sent = append(sent, alice.SendText(room, body))
		}
		alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/rooms/"+esc(room)+"/account_data/org.example.room", map[string]any{"pinned": true}, nil)
		bobsEvent := bob.SendText(room, "bob's words")
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report/"+esc(bobsEvent), map[string]any{"reason": "rude", "score": -50}, nil)
		if r := setPusher(alice, "https://push.example.org", "alice-pushkey", nil); r.Status != 200 {
			t.Fatalf("pusher: %d %s", r.Status, r.Body)
		}
		alice.MustDo("PUT", "/_matrix/client/v3/pushrules/global/content/secretword", map[string]any{"pattern": "secretword", "actions": []string{"notify"}}, nil)

		secret := alice.CreateRoom(map[string]any{"preset": "private_chat", "initial_state": []map[string]any{
			{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
		const ciphertext = "AwgAEnAwZfqKVqPRxcjYRbJJ2r2ZMkhlWYmVpc2hXNzQ2V0o0cHJvRG5CeEp4R2lqWW9hWmRxd0xnVVp0"
		encrypted := alice.Send(secret, "m.room.encrypted", map[string]any{"algorithm": "m.megolm.v1.aes-sha2",
			"sender_key": "sXwYlEA4RsIYPThzQzqBx4H9I3pH3LhU0OyVb5cNZ0s", "session_id": "sess1", "device_id": alice.DeviceID, "ciphertext": ciphertext})

		// Refused: not an administrator, a malformed id, another server's
		// user, no such user.
		if r := bob.Do("POST", "/_luxchat/admin/v1/users/"+esc(alice.UserID)+"/export", nil); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("export by a user: %d %s", r.Status, r.Body)
		}
		for _, c := range []struct {
			id     string
			status int
			code   string
		}{{"alice", 400, "M_INVALID_PARAM"}, {"@alice:elsewhere.example", 400, "M_INVALID_PARAM"}, {"@nobody:" + s.Config.ServerName, 404, "M_NOT_FOUND"}} {
			if r := admin.Do("POST", "/_luxchat/admin/v1/users/"+esc(c.id)+"/export", nil); r.Status != c.status || r.ErrCode() != c.code {
				t.Errorf("export of %q: %d %s", c.id, r.Status, r.Body)
			}
		}

		files := exportUser(t, admin, alice.UserID)
		var manifest struct {
			Server    string `json:"server"`
			User      string `json:"user_id"`
			CreatedTS int64  `json:"created_ts"`
			Files     []struct {
				Name        string `json:"name"`
				Description string `json:"description"`
				Count       int64  `json:"count"`
			} `json:"files"`
		}
		if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
			t.Fatalf("manifest: %v %s", err, files["manifest.json"])
		}
		counts := map[string]int64{}
		for _, f := range manifest.Files {
			counts[f.Name] = f.Count
			if f.Description == "" {
				t.Errorf("manifest: %s undescribed", f.Name)
			}
			if _, ok := files[f.Name]; !ok && f.Name != "media/" {
				t.Errorf("manifest lists %s, not in the archive", f.Name)
			}
		}
		if manifest.Server != s.Config.ServerName || manifest.User != alice.UserID || manifest.CreatedTS == 0 {
			t.Errorf("manifest header %+v", manifest)
		}

		readme := string(files["README.txt"])
		if !strings.Contains(readme, "ciphertext") || !strings.Contains(readme, "never had those keys") {
			t.Errorf("README does not say why encrypted messages are ciphertext:\n%s", readme)
		}

		var profile map[string]any
		_ = json.Unmarshal(files["profile.json"], &profile)
		if profile["displayname"] != "Alice Archive" || profile["user_id"] != alice.UserID {
			t.Errorf("profile.json %s", files["profile.json"])
		}
		var ad struct {
			Global map[string]map[string]any
			Rooms  map[string]map[string]map[string]any
		}
		_ = json.Unmarshal(files["account_data.json"], &ad)
		if ad.Global["org.example.settings"]["theme"] != "dark" || ad.Rooms[room]["org.example.room"]["pinned"] != true {
			t.Errorf("account_data.json %s", files["account_data.json"])
		}
		var devices, memberships, pushers, reports []map[string]any
		_ = json.Unmarshal(files["devices.json"], &devices)
		if len(devices) != 1 || devices[0]["device_id"] != alice.DeviceID {
			t.Errorf("devices.json %s", files["devices.json"])
		}
		_ = json.Unmarshal(files["memberships.json"], &memberships)
		var rooms []string
		for _, m := range memberships {
			if m["membership"] == "join" {
				rooms = append(rooms, m["room_id"].(string))
			}
		}
		if slices.Sort(rooms); !slices.Equal(rooms, sorted(room, secret)) || counts["memberships.json"] != 2 {
			t.Errorf("memberships.json %s", files["memberships.json"])
		}
		_ = json.Unmarshal(files["pushers.json"], &pushers)
		if len(pushers) != 1 || pushers[0]["pushkey"] != "alice-pushkey" {
			t.Errorf("pushers.json %s", files["pushers.json"])
		}
		if !strings.Contains(string(files["push_rules.json"]), "secretword") {
			t.Errorf("push_rules.json lacks the user's rule: %.300s", files["push_rules.json"])
		}
		_ = json.Unmarshal(files["reports.json"], &reports)
		if len(reports) != 1 || reports[0]["event_id"] != bobsEvent || reports[0]["reason"] != "rude" {
			t.Errorf("reports.json %s", files["reports.json"])
		}

		// events.jsonl: every event Alice sent, bodies as sent, the
		// encrypted one as the ciphertext she sent.
		byID := map[string]map[string]any{}
		sc := bufio.NewScanner(bytes.NewReader(files["events.jsonl"]))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var line struct {
				EventID string `json:"event_id"`
				RoomID  string `json:"room_id"`
				PDU     map[string]any
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("events.jsonl line %q: %v", sc.Text(), err)
			}
			if line.PDU["sender"] != alice.UserID {
				t.Errorf("event of another sender exported: %s", sc.Text())
			}
			byID[line.EventID] = line.PDU
		}
		if int64(len(byID)) != counts["events.jsonl"] || len(byID) < 10 {
			t.Errorf("events.jsonl holds %d events, manifest says %d", len(byID), counts["events.jsonl"])
		}
		for i, id := range sent {
			want := []string{"first words", "second words", "third words"}[i]
			if c, _ := byID[id]["content"].(map[string]any); c == nil || c["body"] != want {
				t.Errorf("event %s exported as %v, sent with body %q", id, byID[id], want)
			}
		}
		if byID[bobsEvent] != nil {
			t.Error("bob's event is in alice's export")
		}
		ev := byID[encrypted]
		if c, _ := ev["content"].(map[string]any); ev["type"] != "m.room.encrypted" || c == nil || c["ciphertext"] != ciphertext {
			t.Errorf("encrypted event exported as %v", ev)
		}

		// The upload, decrypted, byte for byte.
		var media []struct {
			MediaID    string `json:"media_id"`
			File       string `json:"file"`
			UploadName string `json:"upload_name"`
			Size       int64  `json:"size"`
		}
		if err := json.Unmarshal(files["media.json"], &media); err != nil || len(media) != 1 {
			t.Fatalf("media.json %s", files["media.json"])
		}
		if m := media[0]; m.MediaID != mediaID || m.UploadName != "report.pdf" || m.File != "media/"+mediaID+".pdf" || m.Size != int64(len(file)) {
			t.Errorf("media.json %+v", m)
		}
		if got := files[media[0].File]; !bytes.Equal(got, file) {
			t.Errorf("exported file: %d bytes, differs from the %d uploaded", len(got), len(file))
		}
		if counts["media/"] != 1 {
			t.Errorf("manifest media/ count %d", counts["media/"])
		}
	})
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// Erasure (deactivation with erase): a user who joins afterwards gets the
// erased user's events redacted, everywhere they read them; a user who
// was in the room when they were sent still reads them (Synapse's rule);
// the profile, directory entry, uploads, keys, backups, pushers and
// account data are gone, and every table that names users has no row of
// them left but the documented ones; reactivating brings nothing back.
func TestGDPRErasure(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		ctx := context.Background()
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		alice := newE2EEUser(t, s, "alice")
		bob, carol := s.Register(t, "bob"), s.Register(t, "carol")
		alice.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/displayname", map[string]string{"displayname": "Alice Gone"}, nil)
		avatar := upload(t, alice.Client, "image/png", "me.png", []byte("\x89PNG not really"))
		alice.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/avatar_url", map[string]string{"avatar_url": "mxc://localhost/" + avatar}, nil)
		photo := upload(t, alice.Client, "application/octet-stream", "photo.bin", []byte("holiday photo"))
		alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/account_data/org.example.settings", map[string]any{"theme": "dark"}, nil)
		alice.upload(t, 5, true)
		cs := e2eetest.NewCrossSigning(alice.UserID)
		alice.MustDo("POST", "/_matrix/client/v3/keys/device_signing/upload", cs.Upload(), nil)
		var backup struct{ Version string }
		alice.MustDo("POST", "/_matrix/client/v3/room_keys/version", map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]string{"public_key": "pk"}}, &backup)
		alice.MustDo("PUT", "/_matrix/client/v3/room_keys/keys/"+esc("!r:localhost")+"/s1?version="+backup.Version,
			map[string]any{"first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": map[string]string{"ciphertext": "c"}}, nil)
		if r := setPusher(alice.Client, "https://push.example.org", "alice-pushkey", nil); r.Status != 200 {
			t.Fatalf("pusher: %d %s", r.Status, r.Body)
		}

		room := bob.CreateRoom(map[string]any{"preset": "public_chat"})
		alice.Join(room)
		said := alice.SendText(room, "my secretive words")
		image := alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.file", "body": "photo.bin", "url": "mxc://localhost/" + photo})
		bob.SendText(room, "bob answers")
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report/"+esc(said), map[string]any{"reason": "testing"}, nil)
		if n := searchCount(t, bob, "secretive"); n != 1 {
			t.Fatalf("search before erasure: %d results", n)
		}

		if r := bob.Do("POST", "/_synapse/admin/v1/deactivate/"+esc(alice.UserID), map[string]any{"erase": true}); r.Status != 403 {
			t.Fatalf("erase by a user: %d %s", r.Status, r.Body)
		}
		admin.MustDo("POST", "/_synapse/admin/v1/deactivate/"+esc(alice.UserID), map[string]any{"erase": true}, nil)
		carol.Join(room)

		// Carol joined later: Alice's events are redacted for her, in
		// /messages, /event, /context and her initial sync.
		wantRedacted := func(who string, evs []event) {
			t.Helper()
			found := 0
			for _, e := range evs {
				if e.EventID == said || e.EventID == image {
					found++
					if len(e.Content) != 0 {
						t.Errorf("%s reads %s of the erased user: %v", who, e.EventID, e.Content)
					}
				}
			}
			if found != 2 {
				t.Errorf("%s: %d of the erased user's 2 events listed", who, found)
			}
		}
		wantRedacted("carol's /messages", roomMessages(t, carol, room))
		var one event
		carol.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(said), nil, &one)
		if len(one.Content) != 0 {
			t.Errorf("carol's /event: %v", one.Content)
		}
		var ctxRes struct {
			Event        event   `json:"event"`
			EventsBefore []event `json:"events_before"`
		}
		carol.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/context/"+esc(image)+"?limit=10", nil, &ctxRes)
		wantRedacted("carol's /context", append(ctxRes.EventsBefore, ctxRes.Event))
		wantRedacted("carol's sync", syncTimeline(t, carol, room))

		// Bob was in the room when they were sent: he still reads them.
		for _, e := range roomMessages(t, bob, room) {
			if e.EventID == said && e.Content["body"] != "my secretive words" {
				t.Errorf("bob's /messages: %v", e.Content)
			}
		}
		for _, e := range syncTimeline(t, bob, room) {
			if e.EventID == said && e.Content["body"] != "my secretive words" {
				t.Errorf("bob's sync: %v", e.Content)
			}
		}
		// Administrators read the room as someone who was not there.
		var am messagesPage
		admin.MustDo("GET", "/_synapse/admin/v1/rooms/"+esc(room)+"/messages?dir=b&limit=50", nil, &am)
		wantRedacted("the admin API's /messages", am.Chunk)

		// Search no longer finds the erased words (for anyone).
		if n := searchCount(t, bob, "secretive"); n != 0 {
			t.Errorf("search after erasure: %d results", n)
		}
		// Profile, avatar and uploads, directory, keys, backup: gone.
		var prof map[string]any
		_ = json.Unmarshal(bob.Do("GET", "/_matrix/client/v3/profile/"+esc(alice.UserID), nil).Body, &prof)
		if prof["displayname"] != nil || prof["avatar_url"] != nil {
			t.Errorf("profile after erasure: %v", prof)
		}
		for _, id := range []string{avatar, photo} {
			if r := bob.Do("GET", "/_matrix/client/v1/media/download/localhost/"+id, nil); r.Status != 404 {
				t.Errorf("media %s after erasure: %d", id, r.Status)
			}
		}
		var dir struct{ Results []map[string]any }
		bob.MustDo("POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": "alice"}, &dir)
		if len(dir.Results) != 0 {
			t.Errorf("directory after erasure: %v", dir.Results)
		}
		if q := query(t, bob, alice.UserID); len(q.DeviceKeys[alice.UserID]) != 0 || q.MasterKeys[alice.UserID] != nil {
			t.Errorf("keys after erasure: %+v", q)
		}
		var u map[string]any
		admin.MustDo("GET", "/_synapse/admin/v2/users/"+esc(alice.UserID), nil, &u)
		if u["erased"] != true || u["deactivated"] != true {
			t.Errorf("admin view after erasure: %v", u)
		}
		checkTraces(t, s, alice.UserID)

		// Reactivation brings nothing back.
		admin.MustDo("PUT", "/_synapse/admin/v2/users/"+esc(alice.UserID), map[string]any{"deactivated": false, "password": "a new password 1"}, nil)
		wantRedacted("carol's /messages after reactivation", roomMessages(t, carol, room))
		if r := bob.Do("GET", "/_matrix/client/v1/media/download/localhost/"+photo, nil); r.Status != 404 {
			t.Errorf("media after reactivation: %d", r.Status)
		}
		exported := exportUser(t, admin, alice.UserID)
		for _, f := range []string{"account_data.json", "pushers.json", "media.json", "threepids.json", "reports.json"} {
			if s := strings.TrimSpace(string(exported[f])); s != "[]" && s != `{"global": {}, "rooms": {}}` && !strings.Contains(s, `"global": {}`) {
				t.Errorf("%s of the reactivated account: %s", f, s)
			}
		}

		// A user erasing their own account (the client's deactivation).
		dave := s.Register(t, "dave")
		dave.Join(room)
		dave.SendText(room, "dave was here")
		upload(t, dave, "text/plain", "d.txt", []byte("dave's file"))
		if r := dave.Do("POST", "/_matrix/client/v3/account/deactivate", map[string]any{"erase": true, "auth": uia(dave.UserID)}); r.Status != 200 {
			t.Fatalf("self-deactivation with erase: %d %s", r.Status, r.Body)
		}
		admin.MustDo("GET", "/_synapse/admin/v2/users/"+esc(dave.UserID), nil, &u)
		if u["erased"] != true {
			t.Errorf("dave not erased: %v", u)
		}
		checkTraces(t, s, dave.UserID)
		_ = ctx
	})
}

// checkTraces fails when a table that names users holds a row of userID
// but in store.KeptUserColumns (read from the schema: a table added later
// is checked too).
func checkTraces(t *testing.T, s *ts.Server, userID string) {
	t.Helper()
	traces, err := s.Store.UserTraces(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	for col, n := range traces {
		if store.KeptUserColumns[col] == "" {
			t.Errorf("after erasure %s still holds %d rows of %s", col, n, userID)
		}
	}
	if traces["events.sender"] == 0 || traces["users.user_id"] != 1 {
		t.Errorf("traces %v: the events and the account row stay", traces)
	}
}

func roomMessages(t *testing.T, c *ts.Client, room string) []event {
	t.Helper()
	var p messagesPage
	c.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/messages?dir=b&limit=100", nil, &p)
	return p.Chunk
}

func syncTimeline(t *testing.T, c *ts.Client, room string) []event {
	t.Helper()
	var out struct {
		Rooms struct {
			Join map[string]struct {
				Timeline struct{ Events []event }
			}
		}
	}
	r := c.Do("GET", "/_matrix/client/v3/sync?filter="+esc(`{"room":{"timeline":{"limit":100}}}`), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("sync: %d %s", r.Status, r.Body)
	}
	_ = json.Unmarshal(r.Body, &out)
	return out.Rooms.Join[room].Timeline.Events
}

func searchCount(t *testing.T, c *ts.Client, term string) int {
	t.Helper()
	var out struct {
		SearchCategories struct {
			RoomEvents struct{ Results []any } `json:"room_events"`
		} `json:"search_categories"`
	}
	c.MustDo("POST", "/_matrix/client/v3/search", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": term}}}, &out)
	return len(out.SearchCategories.RoomEvents.Results)
}
