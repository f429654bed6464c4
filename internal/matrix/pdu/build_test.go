package pdu

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
)

// buildRoom builds create, join, power levels, message and redaction
// events for v, each referencing the previous ones.
func buildRoom(t testing.TB, v *roomversion.Version, k signing.KeyPair) []*Event {
	t.Helper()
	const alice = "@alice:example.org"
	createContent := `{"room_version":"` + v.ID + `"}`
	if v.CreatorInContent {
		createContent = `{"room_version":"` + v.ID + `","creator":"` + alice + `"}`
	}
	roomID := ""
	if !v.RoomIDFromCreate {
		roomID = "!room:example.org"
	}
	refs := map[string]string{}
	var events []*Event
	add := func(p Proto) *Event {
		t.Helper()
		p.RoomID, p.Sender, p.RefHashes = roomID, alice, refs
		p.Depth, p.OriginServerTS = int64(len(events)+1), 1700000000000+int64(len(events))
		if len(events) > 0 {
			p.PrevEvents = []string{events[len(events)-1].ID}
			p.AuthEvents = []string{events[0].ID}
			if v.RoomIDFromCreate { // never the create event
				p.AuthEvents = nil
				if len(events) > 1 {
					p.AuthEvents = []string{events[1].ID}
				}
			}
		}
		ev, err := Build(p, v, "example.org", k)
		if err != nil {
			t.Fatalf("v%s build %s: %v", v.ID, p.Type, err)
		}
		h := ev.ReferenceHash()
		refs[ev.ID] = signing.EncodeBase64(h[:])
		events = append(events, ev)
		return ev
	}
	create := add(Proto{Type: "m.room.create", StateKey: ptr(""), Content: json.RawMessage(createContent)})
	roomID = RoomIDForCreate(create)
	add(Proto{Type: "m.room.member", StateKey: ptr(alice), Content: json.RawMessage(`{"membership":"join","displayname":"Alice"}`)})
	add(Proto{Type: "m.room.power_levels", StateKey: ptr(""), Content: json.RawMessage(`{"users":{"@alice:example.org":100},"ban":50}`)})
	msg := add(Proto{Type: "m.room.message", Content: json.RawMessage(`{"body":"hello <world> & \u2028","msgtype":"m.text"}`)})
	add(Proto{Type: "m.room.redaction", Redacts: msg.ID, Content: json.RawMessage(`{"reason":"oops"}`)})
	return events
}

func TestBuildRoundTrip(t *testing.T) {
	k := specKey(t)
	for _, v := range roomversion.All() {
		events := buildRoom(t, v, k)
		create := events[0]
		if v.RoomIDFromCreate {
			if create.RoomID != "" || RoomIDForCreate(create) != "!"+create.ID[1:] || events[1].RoomID != RoomIDForCreate(create) {
				t.Errorf("v%s: room id %q / %q", v.ID, create.RoomID, events[1].RoomID)
			}
		} else if create.RoomID != "!room:example.org" {
			t.Errorf("v%s: create room id %q", v.ID, create.RoomID)
		}
		for _, ev := range events {
			name := "v" + v.ID + " " + ev.Type
			if err := checkEventID(ev.ID, v); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			again, err := Parse(ev.JSON(), v)
			if err != nil {
				t.Fatalf("%s: re-parse: %v", name, err)
			}
			// What Parse keeps for verification only is not compared.
			want := *ev
			again.signed, again.sigs, want.signed, want.sigs = nil, nil, nil, nil
			if !reflect.DeepEqual(again, &want) {
				t.Errorf("%s: re-parse differs:\n%+v\n%+v", name, again, ev)
			}
			if err := VerifyHashes(ev); err != nil {
				t.Errorf("%s: VerifyHashes: %v", name, err)
			}
			if err := VerifySignature(ev, "example.org", k.ID(), k.Public()); err != nil {
				t.Errorf("%s: VerifySignature: %v", name, err)
			}
			if sigs := ev.Signatures(); len(sigs) != 1 || sigs["example.org"][k.ID()] == "" {
				t.Errorf("%s: Signatures() = %v", name, sigs)
			}
			checkLayout(t, name, ev)
			if bytes.Contains(ev.JSON(), []byte(`\u`)) {
				t.Errorf("%s: JSON is not canonical: %s", name, ev.JSON())
			}

			red, err := RedactEvent(ev)
			if err != nil || red.ID != ev.ID {
				t.Fatalf("%s: RedactEvent: %v", name, err)
			}
			if err := VerifySignature(red, "example.org", k.ID(), k.Public()); err != nil {
				t.Errorf("%s: signature lost by redaction: %v", name, err)
			}
			if red.Type == "m.room.message" {
				if err := VerifyHashes(red); !errors.Is(err, ErrContentHash) {
					t.Errorf("%s: redacted message passes the hash check: %v", name, err)
				}
			}
		}
		// The redaction points at the message wherever the version keeps it.
		if red := events[4]; red.Redacts != events[3].ID {
			t.Errorf("v%s: Redacts = %q, want %q", v.ID, red.Redacts, events[3].ID)
		}
	}
}

// checkLayout checks the per-version keys of a built event.
func checkLayout(t *testing.T, name string, ev *Event) {
	t.Helper()
	v := ev.Version
	var m map[string]json.RawMessage
	if err := json.Unmarshal(ev.JSON(), &m); err != nil {
		t.Fatal(err)
	}
	_, hasEventID := m["event_id"]
	_, hasOrigin := m["origin"]
	_, hasRoomID := m["room_id"]
	_, hasTopRedacts := m["redacts"]
	if hasEventID != (v.EventFormat == roomversion.FormatV1) {
		t.Errorf("%s: event_id present = %v", name, hasEventID)
	}
	if hasOrigin != (v.Redaction < roomversion.RedactV11) {
		t.Errorf("%s: origin present = %v", name, hasOrigin)
	}
	if hasRoomID == (v.RoomIDFromCreate && ev.Type == "m.room.create") {
		t.Errorf("%s: room_id present = %v", name, hasRoomID)
	}
	if ev.Type == "m.room.redaction" {
		inContent := strings.Contains(string(ev.Content), `"redacts"`)
		if hasTopRedacts == v.RedactsInContent || inContent != v.RedactsInContent {
			t.Errorf("%s: redacts top-level %v, in content %v", name, hasTopRedacts, inContent)
		}
	}
	if len(ev.PrevEvents) > 0 {
		pairs := bytes.HasPrefix(m["prev_events"], []byte(`[[`))
		if pairs != (v.EventFormat == roomversion.FormatV1) {
			t.Errorf("%s: prev_events %s", name, m["prev_events"])
		}
	}
	if v.EventFormat == roomversion.FormatV1 && !strings.HasSuffix(ev.ID, ":example.org") {
		t.Errorf("%s: event id %s", name, ev.ID)
	}
}

func TestBuildErrors(t *testing.T) {
	k := specKey(t)
	base := Proto{RoomID: "!room:example.org", Sender: "@a:example.org", Type: "m.room.message", Depth: 1}
	cases := []struct {
		name    string
		version string
		change  func(p *Proto)
	}{
		{"content not an object", "10", func(p *Proto) { p.Content = json.RawMessage(`[1]`) }},
		{"content not JSON", "10", func(p *Proto) { p.Content = json.RawMessage(`{`) }},
		{"float content in strict version", "6", func(p *Proto) { p.Content = json.RawMessage(`{"a":1.5}`) }},
		{"redacts on a message", "10", func(p *Proto) { p.Redacts = "$x" }},
		{"conflicting content redacts", "11", func(p *Proto) {
			p.Type, p.Redacts, p.Content = "m.room.redaction", eventIDFor(version(t, "11"), 1), json.RawMessage(`{"redacts":"$other"}`)
		}},
		{"v12 create with room id", "12", func(p *Proto) { p.Type, p.StateKey = "m.room.create", ptr("") }},
		{"v12 event without room id", "12", func(p *Proto) { p.RoomID = "" }},
		{"missing reference hash", "1", func(p *Proto) { p.PrevEvents = []string{"$a:example.org"} }},
		{"bad sender", "10", func(p *Proto) { p.Sender = "nobody" }},
		{"negative depth", "10", func(p *Proto) { p.Depth = -1 }},
		{"too many prev events", "10", func(p *Proto) {
			for i := 0; i < 21; i++ {
				p.PrevEvents = append(p.PrevEvents, eventIDFor(version(t, "10"), i%8))
			}
		}},
	}
	for _, c := range cases {
		p := base
		c.change(&p)
		if ev, err := Build(p, version(t, c.version), "example.org", k); err == nil {
			t.Errorf("%s: built %s", c.name, ev.JSON())
		}
	}
	if _, err := Build(base, nil, "example.org", k); err == nil {
		t.Error("built without a room version")
	}
	// Lenient versions keep floats as written.
	p := base
	p.Content = json.RawMessage(`{"pl":50.57}`)
	if ev, err := Build(p, version(t, "5"), "example.org", k); err != nil || string(ev.Content) != `{"pl":50.57}` {
		t.Errorf("v5 float content: %v", err)
	}
}

func TestSizeLimit(t *testing.T) {
	k := specKey(t)
	for _, v := range roomversion.All() {
		p := Proto{RoomID: roomIDFor(v), Sender: "@a:example.org", Type: "m.room.message", Depth: 1}
		body := func(n int) json.RawMessage { return json.RawMessage(`{"body":"` + strings.Repeat("x", n) + `"}`) }
		p.Content = body(0)
		small, err := Build(p, v, "example.org", k)
		if err != nil {
			t.Fatalf("v%s: %v", v.ID, err)
		}
		n := MaxSize - len(small.JSON())
		p.Content = body(n)
		ev, err := Build(p, v, "example.org", k)
		if err != nil || len(ev.JSON()) != MaxSize {
			t.Errorf("v%s: event of exactly %d bytes: %v", v.ID, MaxSize, err)
		}
		p.Content = body(n + 1)
		if _, err := Build(p, v, "example.org", k); !errors.Is(err, ErrInvalid) {
			t.Errorf("v%s: event of %d bytes: %v", v.ID, MaxSize+1, err)
		}
	}
}

func TestSignEventCoSigns(t *testing.T) {
	k := specKey(t)
	resident, _ := signing.GenerateKeyPair()
	for _, v := range roomversion.All() {
		ev := buildRoom(t, v, k)[1]
		cosigned, err := SignEvent(ev.JSON(), v, "resident.example", resident)
		if err != nil {
			t.Fatal(err)
		}
		both, err := Parse(cosigned, v)
		if err != nil || both.ID != ev.ID {
			t.Fatalf("v%s: co-signing changed the event: %v", v.ID, err)
		}
		if VerifySignature(both, "example.org", k.ID(), k.Public()) != nil ||
			VerifySignature(both, "resident.example", resident.ID(), resident.Public()) != nil {
			t.Errorf("v%s: a signature does not verify", v.ID)
		}
		if err := VerifySignature(both, "resident.example", resident.ID(), k.Public()); !errors.Is(err, signing.ErrBadSignature) {
			t.Errorf("v%s: wrong key verifies: %v", v.ID, err)
		}
	}
}

func TestTamperedEvent(t *testing.T) {
	k := specKey(t)
	for _, v := range roomversion.All() {
		msg := buildRoom(t, v, k)[3]
		// Changing non-essential content breaks only the content hash.
		tampered := strings.Replace(string(msg.JSON()), `"msgtype":"m.text"`, `"msgtype":"m.notice"`, 1)
		ev, err := Parse([]byte(tampered), v)
		if err != nil {
			t.Fatal(err)
		}
		if ev.ID != msg.ID && v.EventFormat != roomversion.FormatV1 {
			t.Errorf("v%s: redactable content changed the id", v.ID)
		}
		if err := VerifySignature(ev, "example.org", k.ID(), k.Public()); err != nil {
			t.Errorf("v%s: signature: %v", v.ID, err)
		}
		if err := VerifyHashes(ev); !errors.Is(err, ErrContentHash) {
			t.Errorf("v%s: VerifyHashes = %v", v.ID, err)
		}
		// Changing an essential key breaks the signature.
		tampered = strings.Replace(string(msg.JSON()), `"sender":"@alice:example.org"`, `"sender":"@mallory:example.org"`, 1)
		ev, err = Parse([]byte(tampered), v)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifySignature(ev, "example.org", k.ID(), k.Public()); !errors.Is(err, signing.ErrBadSignature) {
			t.Errorf("v%s: VerifySignature after sender change = %v", v.ID, err)
		}
	}
	for _, bad := range []string{`{}`, `{"hashes":[]}`, `{"hashes":{"sha256":1}}`, `{"hashes":{"sha256":"!!"}}`, `[]`} {
		if err := CheckContentHash([]byte(bad)); err == nil {
			t.Errorf("CheckContentHash(%s) passed", bad)
		}
	}
}
