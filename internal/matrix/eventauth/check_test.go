package eventauth

import (
	"encoding/base64"
	"errors"
	"testing"

	"luxchat/internal/matrix/pdu"
)

// authCase is one row of the rules table. want gives the outcome per room
// version: "ok", or the rule broken, e.g. "1-5:5.2.3 6-7:4.2.3 8-11:4.3.3
// 12:5.3.3" (the same rule moves as versions add and remove rules).
type authCase struct {
	name   string
	fresh  bool   // the room holds only its create event, not the standard state
	create string // merged into the create event's content
	setup  []spec
	event  spec
	unsig  bool // the join_authorised_via_users_server server has not signed
	want   string
}

var createCases = []authCase{
	{name: "1 create: a room is born", fresh: true, event: spec{sender: alice, typ: typeCreate, key: sk("")}, want: "ok"},
	{name: "1.1 create with prev_events", fresh: true,
		event: with(spec{sender: alice, typ: typeCreate, key: sk("")}, func(e *pdu.Event, _ *room) { e.PrevEvents = []string{"$x"} }),
		want:  "1.1"},
	{name: "1.2 room id on another server than the sender (v1–11)", fresh: true,
		event: with(spec{sender: alice, typ: typeCreate, key: sk("")}, func(e *pdu.Event, _ *room) { e.RoomID = "!room:b.test" }),
		want:  "1-11:1.2"},
	{name: "1.2 create with a room_id (v12)", fresh: true,
		event: with(spec{sender: alice, typ: typeCreate, key: sk("")}, func(e *pdu.Event, _ *room) { e.RoomID = "!abc" }),
		want:  "12:1.2"},
	{name: "1.3 unrecognised room_version", fresh: true,
		event: spec{sender: alice, typ: typeCreate, key: sk(""), content: `{"room_version":"99"}`}, want: "1.3"},
	{name: "1.3 room_version not a string", fresh: true,
		event: spec{sender: alice, typ: typeCreate, key: sk(""), content: `{"room_version":12}`}, want: "1.3"},
	{name: "1.4 no creator (required until v10)", fresh: true,
		event: spec{sender: alice, typ: typeCreate, key: sk(""), content: `{"creator":"$delete"}`}, want: "1-10:1.4 11-12:ok"},
	{name: "1.4 additional_creators must be user ids (v12)", fresh: true,
		event: spec{sender: alice, typ: typeCreate, key: sk(""), content: `{"additional_creators":["bob"]}`}, want: "1-11:ok 12:1.4"},
	{name: "1.4 additional_creators must be an array (v12)", fresh: true,
		event: spec{sender: alice, typ: typeCreate, key: sk(""), content: `{"additional_creators":"@bob:b.test"}`}, want: "1-11:ok 12:1.4"},
	{name: "1.4 additional_creators may not be null (v12)", fresh: true,
		event: spec{sender: alice, typ: typeCreate, key: sk(""), content: `{"additional_creators":null}`}, want: "1-11:ok 12:1.4"},
	{name: "1 valid additional_creators", fresh: true,
		event: spec{sender: alice, typ: typeCreate, key: sk(""), content: `{"additional_creators":["@bob:b.test","@x:[::1]:8448"]}`}, want: "ok"},
}

var roomCases = []authCase{
	{name: "2 (v12) / 2.5 room id is not the create event's",
		event: with(message(carol, "m.room.message"), func(e *pdu.Event, _ *room) { e.RoomID = "!elsewhere" }),
		want:  "1-11:2.5 12:2"},
	{name: "2.4 (v12: 2) no create event",
		event: with(message(carol, "m.room.message"), func(_ *pdu.Event, r *room) { delete(r.state, createTuple) }),
		want:  "1-11:2.4 12:2"},
	{name: "2.5 (v12: 3.4) an auth event from another room",
		setup: []spec{forced(with(levels(alice, `{}`), func(e *pdu.Event, _ *room) { e.RoomID = "!other:a.test" }))},
		event: message(carol, "m.room.message"),
		want:  "1-11:2.5 12:3.4"},
	{name: "3 (v12: 4) m.federate false keeps other servers out", fresh: true, create: `{"m.federate":false}`,
		setup: []spec{join(alice), joinRules("public")},
		event: join(dave),
		want:  "1-11:3 12:4"},
	{name: "3 m.federate false lets the creator's server in", fresh: true, create: `{"m.federate":false}`,
		setup: []spec{join(alice), joinRules("public")},
		event: join("@alice2:a.test"),
		want:  "ok"},
	{name: "4 (v1–5) a server sets its own m.room.aliases, member or not",
		event: state(dave, typeAliases, "d.test", `{"aliases":["#x:d.test"]}`),
		want:  "1-5:ok 6-11:5 12:6"},
	{name: "4.2 (v1–5) m.room.aliases of another server",
		event: state(bob, typeAliases, "a.test", `{"aliases":[]}`),
		want:  "1-5:4.2 6-12:ok"},
	{name: "4.1 (v1–5) m.room.aliases without state_key",
		event: message(bob, typeAliases),
		want:  "1-5:4.1 6-12:ok"},
}

var joinCases = []authCase{
	{name: "member rule 1: no membership", event: memberWith(bob, bob, `{}`), want: "1-5:5.1 6-11:4.1 12:5.1"},
	{name: "member rule 1: no state_key", event: spec{sender: bob, typ: typeMember, content: `{"membership":"join"}`}, want: "1-5:5.1 6-11:4.1 12:5.1"},
	{name: "join 1: the creator's first join", fresh: true, event: join(alice), want: "ok"},
	{name: "join 1: the creator's first join, sent by someone else (as written)", fresh: true,
		event: member(bob, alice, "join"), want: "ok"},
	{name: "join 1: only the creator joins straight after create", fresh: true, event: join(bob),
		want: "1-5:5.2.6 6-7:4.2.6 8-11:4.3.7 12:5.3.7"},
	{name: "join 1: v1–10 creator comes from content.creator", fresh: true, create: `{"creator":"@bob:b.test"}`,
		event: join(bob), want: "1-10:ok 11:4.3.7 12:5.3.7"},
	{name: "join 2: joining for someone else", event: member(carol, dave, "join"),
		want: "1-5:5.2.2 6-7:4.2.2 8-11:4.3.2 12:5.3.2"},
	{name: "join 3: banned", setup: []spec{member(bob, dave, "ban")}, event: join(dave),
		want: "1-5:5.2.3 6-7:4.2.3 8-11:4.3.3 12:5.3.3"},
	{name: "join: public room", event: join(dave), want: "ok"},
	{name: "join 4: invite-only, not invited", setup: []spec{joinRules("invite")}, event: join(dave),
		want: "1-5:5.2.6 6-7:4.2.6 8-11:4.3.7 12:5.3.7"},
	{name: "join 4: invite-only, invited", setup: []spec{joinRules("invite"), member(bob, dave, "invite")}, event: join(dave), want: "ok"},
	{name: "join 4: invite-only, already joined (profile change)", setup: []spec{joinRules("invite")},
		event: memberWith(carol, carol, `{"membership":"join","displayname":"Carol"}`), want: "ok"},
	{name: "join 4: no join rules behaves as invite-only", fresh: true,
		setup: []spec{join(alice), member(alice, dave, "invite")}, event: join(dave), want: "ok"},
	{name: "join 4: knock rule, invited (v7+)", setup: []spec{joinRules("knock"), member(bob, dave, "invite")}, event: join(dave),
		want: "1-5:5.2.6 6:4.2.6 7-12:ok"},
	{name: "join 4: knock rule, not invited", setup: []spec{joinRules("knock")}, event: join(dave),
		want: "1-5:5.2.6 6-7:4.2.6 8-11:4.3.7 12:5.3.7"},
	{name: "join 5.1: restricted, invited (v8+)", setup: []spec{joinRules("restricted"), member(bob, dave, "invite")}, event: join(dave),
		want: "1-5:5.2.6 6-7:4.2.6 8-12:ok"},
	{name: "join 5.3: restricted, authorised by a joined member who may invite", setup: []spec{joinRules("restricted")},
		event: memberWith(dave, dave, `{"membership":"join","join_authorised_via_users_server":"@bob:b.test"}`),
		want:  "1-5:5.2.6 6-7:4.2.6 8-12:ok"},
	{name: "join 5.2: restricted, no authorising user", setup: []spec{joinRules("restricted")}, event: join(dave),
		want: "8-11:4.3.5.2 12:5.3.5.2"},
	{name: "join 5.2: restricted, authorising user not joined", setup: []spec{joinRules("restricted")},
		event: memberWith(dave, dave, `{"membership":"join","join_authorised_via_users_server":"@frank:f.test"}`),
		want:  "8-11:4.3.5.2 12:5.3.5.2"},
	{name: "join 5.2: restricted, authorising user below the invite level",
		setup: []spec{joinRules("restricted"), levels(alice, `{"invite":10}`)},
		event: memberWith(dave, dave, `{"membership":"join","join_authorised_via_users_server":"@carol:c.test"}`),
		want:  "8-11:4.3.5.2 12:5.3.5.2"},
	{name: "member 2: join_authorised_via_users_server not signed by its server", setup: []spec{joinRules("restricted")},
		event: memberWith(dave, dave, `{"membership":"join","join_authorised_via_users_server":"@bob:b.test"}`), unsig: true,
		want: "1-5:5.2.6 6-7:4.2.6 8-11:4.2.1 12:5.2.1"},
	{name: "member 2: join_authorised_via_users_server not a user id", setup: []spec{joinRules("restricted")},
		event: memberWith(dave, dave, `{"membership":"join","join_authorised_via_users_server":42}`),
		want:  "8-11:4.2.1 12:5.2.1"},
	{name: "member 2: applies to every membership, not just join",
		event: memberWith(carol, carol, `{"membership":"leave","join_authorised_via_users_server":"@bob:b.test"}`), unsig: true,
		want: "1-7:ok 8-11:4.2.1 12:5.2.1"},
	{name: "join 5: knock_restricted, authorised (v10+)", setup: []spec{joinRules("knock_restricted")},
		event: memberWith(dave, dave, `{"membership":"join","join_authorised_via_users_server":"@bob:b.test"}`),
		want:  "1-5:5.2.6 6-7:4.2.6 8-9:4.3.7 10-12:ok"},
	{name: "join 5.1: knock_restricted, invited", setup: []spec{joinRules("knock_restricted"), member(bob, dave, "invite")},
		event: join(dave), want: "1-5:5.2.6 6-7:4.2.6 8-9:4.3.7 10-12:ok"},
	{name: "join: private is not a joinable rule", setup: []spec{joinRules("private")}, event: join(dave),
		want: "1-5:5.2.6 6-7:4.2.6 8-11:4.3.7 12:5.3.7"},
}

var inviteCases = []authCase{
	{name: "invite by a member at the invite level", event: member(carol, dave, "invite"), want: "ok"},
	{name: "invite 2: by a non-member", event: member(dave, "@frank:f.test", "invite"),
		want: "1-5:5.3.2 6-7:4.3.2 8-11:4.4.2 12:5.4.2"},
	{name: "invite 3: of a joined user", event: member(carol, bob, "invite"),
		want: "1-5:5.3.3 6-7:4.3.3 8-11:4.4.3 12:5.4.3"},
	{name: "invite 3: of a banned user", setup: []spec{member(bob, dave, "ban")}, event: member(bob, dave, "invite"),
		want: "1-5:5.3.3 6-7:4.3.3 8-11:4.4.3 12:5.4.3"},
	{name: "invite 5: below the invite level", setup: []spec{levels(alice, `{"invite":10}`)}, event: member(carol, dave, "invite"),
		want: "1-5:5.3.5 6-7:4.3.5 8-11:4.4.5 12:5.4.5"},
	{name: "invite 4: a v12 creator outranks any level", setup: []spec{forced(levels(alice, `{"invite":1000}`))},
		event: member(alice, dave, "invite"), want: "1-5:5.3.5 6-7:4.3.5 8-11:4.4.5 12:ok"},

	{name: "third-party invite 7: signed by the invite's key", setup: []spec{thirdPartyInviteEvent(bob, "tok")},
		event: thirdPartyMember(bob, dave, signedBlock(nil, idKey, dave, "tok")), want: "ok"},
	{name: "third-party invite 7: needs no membership once the invite exists",
		setup: []spec{thirdPartyInviteEvent(bob, "tok"), member(bob, bob, "leave")},
		event: thirdPartyMember(bob, dave, signedBlock(nil, idKey, dave, "tok")), want: "ok"},
	{name: "third-party invite 7: key listed in public_keys, URL-safe alphabet",
		setup: []spec{state(bob, typeThirdPartyInvite, "tok", `{"display_name":"d","key_validity_url":"https://id.test/v","public_key":"junk",`+
			`"public_keys":[{"public_key":"`+pubKey(otherKey, base64.RawURLEncoding)+`"}]}`)},
		event: thirdPartyMember(bob, dave, signedBlock(nil, otherKey, dave, "tok")), want: "ok"},
	{name: "third-party invite 1: target banned", setup: []spec{thirdPartyInviteEvent(bob, "tok"), member(bob, dave, "ban")},
		event: thirdPartyMember(bob, dave, signedBlock(nil, idKey, dave, "tok")),
		want:  "1-5:5.3.1.1 6-7:4.3.1.1 8-11:4.4.1.1 12:5.4.1.1"},
	{name: "third-party invite 2: no signed", setup: []spec{thirdPartyInviteEvent(bob, "tok")},
		event: memberWith(bob, dave, `{"membership":"invite","third_party_invite":{"display_name":"d"}}`),
		want:  "1-5:5.3.1.2 6-7:4.3.1.2 8-11:4.4.1.2 12:5.4.1.2"},
	{name: "third-party invite 3: signed has no token", setup: []spec{thirdPartyInviteEvent(bob, "tok")},
		event: thirdPartyMember(bob, dave, `{"mxid":"@dave:d.test","signatures":{}}`),
		want:  "1-5:5.3.1.3 6-7:4.3.1.3 8-11:4.4.1.3 12:5.4.1.3"},
	{name: "third-party invite 4: mxid is not the target", setup: []spec{thirdPartyInviteEvent(bob, "tok")},
		event: thirdPartyMember(bob, dave, signedBlock(nil, idKey, "@frank:f.test", "tok")),
		want:  "1-5:5.3.1.4 6-7:4.3.1.4 8-11:4.4.1.4 12:5.4.1.4"},
	{name: "third-party invite 5: no third-party invite for the token", setup: []spec{thirdPartyInviteEvent(bob, "tok")},
		event: thirdPartyMember(bob, dave, signedBlock(nil, idKey, dave, "other")),
		want:  "1-5:5.3.1.5 6-7:4.3.1.5 8-11:4.4.1.5 12:5.4.1.5"},
	{name: "third-party invite 6: sent by someone else than the invite's sender", setup: []spec{thirdPartyInviteEvent(bob, "tok")},
		event: thirdPartyMember(carol, dave, signedBlock(nil, idKey, dave, "tok")),
		want:  "1-5:5.3.1.6 6-7:4.3.1.6 8-11:4.4.1.6 12:5.4.1.6"},
	{name: "third-party invite 8: signed by an unknown key", setup: []spec{thirdPartyInviteEvent(bob, "tok")},
		event: thirdPartyMember(bob, dave, signedBlock(nil, otherKey, dave, "tok")),
		want:  "1-5:5.3.1.8 6-7:4.3.1.8 8-11:4.4.1.8 12:5.4.1.8"},
}

var leaveBanKnockCases = []authCase{
	{name: "leave 1: a member leaves", event: member(carol, carol, "leave"), want: "ok"},
	{name: "leave 1: rejecting an invite", setup: []spec{member(bob, dave, "invite")}, event: member(dave, dave, "leave"), want: "ok"},
	{name: "leave 1: rescinding a knock (v7+)", setup: []spec{joinRules("knock"), member(dave, dave, "knock")},
		event: member(dave, dave, "leave"), want: "7-12:ok"},
	{name: "leave 1: leaving a room one is not in", event: member(dave, dave, "leave"),
		want: "1-5:5.4.1 6-7:4.4.1 8-11:4.5.1 12:5.5.1"},
	{name: "leave 1: a banned user cannot unban themself", setup: []spec{member(bob, dave, "ban")}, event: member(dave, dave, "leave"),
		want: "1-5:5.4.1 6-7:4.4.1 8-11:4.5.1 12:5.5.1"},
	{name: "leave 4: a moderator kicks a member", event: member(bob, carol, "leave"), want: "ok"},
	{name: "leave 2: kick by a non-member", event: member(dave, carol, "leave"),
		want: "1-5:5.4.2 6-7:4.4.2 8-11:4.5.2 12:5.5.2"},
	{name: "leave 5: kick of an equal", event: member(bob, erin, "leave"),
		want: "1-5:5.4.5 6-7:4.4.5 8-11:4.5.5 12:5.5.5"},
	{name: "leave 5: kick below the kick level", setup: []spec{member(bob, dave, "invite")}, event: member(carol, dave, "leave"),
		want: "1-5:5.4.5 6-7:4.4.5 8-11:4.5.5 12:5.5.5"},
	{name: "leave 5: nobody kicks the creator", event: member(bob, alice, "leave"),
		want: "1-5:5.4.5 6-7:4.4.5 8-11:4.5.5 12:5.5.5"},
	{name: "leave 4: a v12 creator outranks any level", setup: []spec{forced(levels(alice, `{"users":{"@bob:b.test":1000}}`))},
		event: member(alice, bob, "leave"), want: "1-5:5.4.5 6-7:4.4.5 8-11:4.5.5 12:ok"},
	{name: "leave 4: unban by a moderator", setup: []spec{member(bob, dave, "ban")}, event: member(bob, dave, "leave"), want: "ok"},
	{name: "leave 3: unban below the ban level",
		setup: []spec{levels(alice, `{"ban":60}`), member(alice, dave, "ban")}, event: member(bob, dave, "leave"),
		want: "1-5:5.4.3 6-7:4.4.3 8-11:4.5.3 12:5.5.3"},

	{name: "ban 2: a moderator bans a member", event: member(bob, carol, "ban"), want: "ok"},
	{name: "ban 2: a moderator bans an outsider", event: member(bob, dave, "ban"), want: "ok"},
	{name: "ban 1: ban by a non-member", event: member(dave, carol, "ban"),
		want: "1-5:5.5.1 6-7:4.5.1 8-11:4.6.1 12:5.6.1"},
	{name: "ban 3: ban of an equal", event: member(bob, erin, "ban"),
		want: "1-5:5.5.3 6-7:4.5.3 8-11:4.6.3 12:5.6.3"},
	{name: "ban 3: ban below the ban level", event: member(carol, dave, "ban"),
		want: "1-5:5.5.3 6-7:4.5.3 8-11:4.6.3 12:5.6.3"},

	{name: "knock 3: knocking on a knock room (v7+)", setup: []spec{joinRules("knock")}, event: member(dave, dave, "knock"),
		want: "1-5:5.6 6:4.6 7-12:ok"},
	{name: "knock 3: knocking on a knock_restricted room (v10+)", setup: []spec{joinRules("knock_restricted")},
		event: member(dave, dave, "knock"), want: "1-5:5.6 6:4.6 7:4.6.1 8-9:4.7.1 10-12:ok"},
	{name: "knock 1: knocking on a public room", event: member(dave, dave, "knock"),
		want: "1-5:5.6 6:4.6 7:4.6.1 8-11:4.7.1 12:5.7.1"},
	{name: "knock 2: knocking for someone else", setup: []spec{joinRules("knock")}, event: member(carol, dave, "knock"),
		want: "7:4.6.2 8-11:4.7.2 12:5.7.2"},
	{name: "knock 4: knocking while banned", setup: []spec{joinRules("knock"), member(bob, dave, "ban")},
		event: member(dave, dave, "knock"), want: "7:4.6.4 8-11:4.7.4 12:5.7.4"},
	{name: "knock 4: knocking while joined", setup: []spec{joinRules("knock")}, event: member(carol, carol, "knock"),
		want: "7:4.6.4 8-11:4.7.4 12:5.7.4"},
	{name: "member: unknown membership", event: member(bob, bob, "dance"),
		want: "1-5:5.6 6:4.6 7:4.7 8-11:4.8 12:5.8"},
	{name: "member: membership that is not a string", event: memberWith(bob, bob, `{"membership":["join"]}`),
		want: "1-5:5.6 6:4.6 7:4.7 8-11:4.8 12:5.8"},
}

var otherCases = []authCase{
	{name: "joined: a message from a non-member", event: message(dave, "m.room.message"), want: "1-5:6 6-11:5 12:6"},
	{name: "joined: a message after leaving", setup: []spec{member(carol, carol, "leave")}, event: message(carol, "m.room.message"),
		want: "1-5:6 6-11:5 12:6"},
	{name: "required level: a message at events_default", event: message(carol, "m.room.message"), want: "ok"},
	{name: "required level: a message below events_default", setup: []spec{levels(alice, `{"events_default":10}`)},
		event: message(carol, "m.room.message"), want: "1-5:8 6-11:7 12:8"},
	{name: "required level: state needs state_default", event: state(carol, "m.room.topic", "", `{"topic":"x"}`),
		want: "1-5:8 6-11:7 12:8"},
	{name: "required level: a moderator sets state", event: state(bob, "m.room.topic", "", `{"topic":"x"}`), want: "ok"},
	{name: "required level: an events entry overrides state_default", setup: []spec{levels(alice, `{"events":{"m.room.topic":0}}`)},
		event: state(carol, "m.room.topic", "", `{"topic":"x"}`), want: "ok"},
	{name: "required level: without power levels the creator has 100", fresh: true, setup: []spec{join(alice)},
		event: state(alice, "m.room.name", "", `{"name":"x"}`), want: "ok"},
	{name: "required level: without power levels others have 0", fresh: true,
		setup: []spec{join(alice), joinRules("public"), join(bob)},
		event: state(bob, "m.room.name", "", `{"name":"x"}`), want: "1-5:8 6-11:7 12:8"},
	{name: "third-party invite event at the invite level", event: thirdPartyInviteEvent(carol, "tok"), want: "ok"},
	{name: "third-party invite event below the invite level", setup: []spec{levels(alice, `{"invite":10}`)},
		event: thirdPartyInviteEvent(carol, "tok"), want: "1-5:7.1 6-11:6.1 12:7.1"},
	{name: "state_key of another user", event: state(bob, "org.example.x", carol, `{}`), want: "1-5:9 6-11:8 12:9"},
	{name: "state_key of the sender", setup: []spec{levels(alice, `{"state_default":0}`)},
		event: state(carol, "org.example.x", carol, `{}`), want: "ok"},

	{name: "redaction (v1–2): at the redact level", event: with(message(bob, typeRedaction), redacts("$9:a.test")), want: "ok"},
	{name: "redaction (v1–2): of an event from the sender's server", event: with(message(carol, typeRedaction), redacts("$9:c.test")),
		want: "ok"},
	{name: "redaction (v1–2): below the redact level, other server; later versions leave it to redaction handling",
		event: with(message(carol, typeRedaction), redacts("$9:a.test")), want: "1-2:11.3 3-12:ok"},
	{name: "redaction: an events entry applies as for any event", setup: []spec{levels(alice, `{"events":{"m.room.redaction":10}}`)},
		event: with(message(carol, typeRedaction), redacts("$9:c.test")), want: "1-5:8 6-11:7 12:8"},
}

// Power level rules: the number of each rule by version group.
//
//	v1–5: 10.x   v6–9: 9.x   v10–11: 9.x (two rules inserted)   v12: 10.x (one more)
var powerLevelCases = []authCase{
	{name: "power levels: the first event may set anything", fresh: true, setup: []spec{join(alice)},
		event: levels(alice, `{"users":{"@bob:b.test":1000},"ban":1000}`), want: "ok"},
	{name: "power levels: need their own required level", event: levels(carol, `{}`), want: "1-5:8 6-11:7 12:8"},
	{name: "users: a key that is not a user id", event: levels(alice, `{"users":{"bob":10}}`),
		want: "1-5:10.1 6-9:9.1 10-11:9.3 12:10.3"},
	{name: "users: a value that is not an integer", event: levels(alice, `{"users":{"@carol:c.test":"ten"}}`),
		want: "1-5:10.1 6-9:9.1 10-11:9.3 12:10.3"},
	{name: "users: not an object", event: levels(alice, `{"users":null}`),
		want: "1-5:10.1 6-9:9.1 10-11:9.3 12:10.3"},
	{name: "users: integer strings until v9", event: levels(alice, `{"users":{"@carol:c.test":" +010 "}}`),
		want: "1-9:ok 10-11:9.3 12:10.3"},
	{name: "users: floats until v5, truncated", event: levels(alice, `{"users":{"@carol:c.test":10.9}}`),
		want: "1-5:ok 6-9:9.1 10-11:9.3 12:10.3"},
	{name: "users: floats beyond binary64", event: levels(alice, `{"users":{"@carol:c.test":1e400}}`),
		want: "1-5:10.1 6-9:9.1 10-11:9.3 12:10.3"},
	{name: "scalars: integer strings until v9", event: levels(alice, `{"ban":"50"}`), want: "1-9:ok 10-11:9.1 12:10.1"},
	{name: "scalars: null is not an integer", event: levels(alice, `{"kick":null}`), want: "1-5:10.3 6-9:9.3 10-11:9.1 12:10.1"},
	{name: "events: integer strings until v9", event: levels(alice, `{"events":{"m.room.name":"50"}}`), want: "1-9:ok 10-11:9.2 12:10.2"},
	{name: "events: not an object", event: levels(alice, `{"events":[]}`), want: "1-5:10.5 6-9:9.5 10-11:9.2 12:10.2"},
	{name: "notifications: must hold integers from v10", event: levels(alice, `{"notifications":{"room":true}}`),
		want: "1-5:ok 6-9:9.5 10-11:9.2 12:10.2"},
	{name: "unchanged value written differently is no change (until v9)", setup: []spec{levels(alice, `{"kick":"60"}`)},
		event: levels(bob, `{"kick":60}`), want: "1-9:ok"},

	{name: "scalars: a moderator lowers ban", event: levels(bob, `{"ban":40}`), want: "ok"},
	{name: "scalars: a moderator raises ban above themself", event: levels(bob, `{"ban":60}`),
		want: "1-5:10.3.2 6-9:9.3.2 10-11:9.5.2 12:10.6.2"},
	{name: "scalars: changing a level above the sender", setup: []spec{levels(alice, `{"kick":60}`)},
		event: levels(bob, `{"kick":40}`), want: "1-5:10.3.1 6-9:9.3.1 10-11:9.5.1 12:10.6.1"},
	{name: "scalars: removing a level above the sender", setup: []spec{levels(alice, `{"kick":60}`)},
		event: levels(bob, `{"kick":"$delete"}`), want: "1-5:10.3.1 6-9:9.3.1 10-11:9.5.1 12:10.6.1"},
	{name: "events: changing an entry above the sender", setup: []spec{levels(alice, `{"events":{"m.room.name":60}}`)},
		event: levels(bob, `{"events":{"m.room.name":10}}`), want: "1-5:10.4.1 6-9:9.4.1 10-11:9.6.1 12:10.7.1"},
	{name: "events: adding an entry above the sender", event: levels(bob, `{"events":{"m.room.name":60}}`),
		want: "1-5:10.5.1 6-9:9.5.1 10-11:9.7.1 12:10.8.1"},
	{name: "events: adding an entry at the sender's level", event: levels(bob, `{"events":{"m.room.name":50}}`), want: "ok"},
	{name: "notifications: checked from v6", event: levels(bob, `{"notifications":{"room":60}}`),
		want: "1-5:ok 6-9:9.5.1 10-11:9.7.1 12:10.8.1"},
	{name: "notifications: removing an entry above the sender", setup: []spec{levels(alice, `{"notifications":{"room":60}}`)},
		event: levels(bob, `{"notifications":"$delete"}`), want: "1-5:ok 6-9:9.4.1 10-11:9.6.1 12:10.7.1"},
	{name: "users: promoting a member to the sender's level", event: levels(bob, `{"users":{"@carol:c.test":50}}`), want: "ok"},
	{name: "users: promoting a member above the sender", event: levels(bob, `{"users":{"@carol:c.test":51}}`),
		want: "1-5:10.7.1 6-9:9.7.1 10-11:9.9.1 12:10.10.1"},
	{name: "users: demoting an equal", event: levels(bob, `{"users":{"@erin:b.test":0}}`),
		want: "1-5:10.6.1 6-9:9.6.1 10-11:9.8.1 12:10.9.1"},
	{name: "users: removing an equal", event: levels(bob, `{"users":{"@erin:b.test":"$delete"}}`),
		want: "1-5:10.6.1 6-9:9.6.1 10-11:9.8.1 12:10.9.1"},
	{name: "users: demoting oneself", event: levels(bob, `{"users":{"@bob:b.test":10}}`), want: "ok"},
	{name: "users: promoting oneself", event: levels(bob, `{"users":{"@bob:b.test":60}}`),
		want: "1-5:10.7.1 6-9:9.7.1 10-11:9.9.1 12:10.10.1"},
	{name: "users: demoting the creator (v12: creators cannot be listed)", event: levels(bob, `{"users":{"@alice:a.test":0}}`),
		want: "1-5:10.6.1 6-9:9.6.1 10-11:9.8.1 12:10.4"},
	{name: "users: a v12 creator may not list themself", event: levels(alice, `{"users":{"@alice:a.test":100}}`),
		want: "1-11:ok 12:10.4"},
	{name: "users: a v12 additional creator may not be listed", create: `{"additional_creators":["@zed:z.test"]}`,
		event: levels(alice, `{"users":{"@zed:z.test":100}}`), want: "1-11:ok 12:10.4"},
	{name: "a v12 creator changes any level", event: levels(alice, `{"ban":1000000,"users":{"@bob:b.test":999999}}`),
		want: "1-5:10.3.2 6-9:9.3.2 10-11:9.5.2 12:ok"},
}

func redacts(id string) func(e *pdu.Event, r *room) {
	return func(e *pdu.Event, _ *room) { e.Redacts = id }
}

func TestCheck(t *testing.T) {
	groups := map[string][]authCase{
		"create": createCases, "room": roomCases, "join": joinCases, "invite": inviteCases,
		"leave-ban-knock": leaveBanKnockCases, "other": otherCases, "power-levels": powerLevelCases,
	}
	for group, cases := range groups {
		for _, tc := range cases {
			want := expectations(t, tc.want)
			for vid := 1; vid <= 12; vid++ {
				rule, ok := want[itoa(vid)]
				if !ok {
					continue
				}
				t.Run(group+"/v"+itoa(vid)+"/"+tc.name, func(t *testing.T) {
					runCase(t, tc, itoa(vid), rule)
				})
			}
		}
	}
}

func runCase(t *testing.T, tc authCase, vid, want string) {
	signed := WithSignatureCheck(func(ev *pdu.Event, server string) bool { return !tc.unsig })
	r := newRoom(t, version(t, vid), tc.create, WithSignatureCheck(func(*pdu.Event, string) bool { return true }))
	if !tc.fresh {
		r.standard()
	}
	for _, s := range tc.setup {
		r.apply(s)
	}
	ev := r.build(tc.event)

	got := ruleOf(t, Check(ev, r.state, signed))
	if got != want {
		t.Fatalf("against the room state: got %s, want %s (%v)", got, want, Check(ev, r.state, signed))
	}
	// The selected auth events must be all the rules need: checking against
	// them alone decides the same way.
	if got := ruleOf(t, Check(ev, r.authEventsOf(ev), signed)); got != want {
		t.Fatalf("against its own auth events: got %s, want %s", got, want)
	}
	// An auth_events list that the shape rules reject is one Check rejects
	// too (possibly under an earlier rule).
	if err := CheckAuthEventsShape(ev, r.byID(), nil); err != nil && want == "ok" {
		t.Fatalf("shape check says %s, Check allows", ruleOf(t, err))
	}
}

func itoa(i int) string {
	if i >= 10 {
		return string(rune('0'+i/10)) + string(rune('0'+i%10))
	}
	return string(rune('0' + i))
}

func TestRejectionsNameTheirRule(t *testing.T) {
	r := newRoom(t, version(t, "12"), "").standard()
	err := Check(r.build(member(dave, carol, "ban")), r.state)
	var na *NotAllowed
	if !errors.As(err, &na) || !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("got %v", err)
	}
	if na.Rule != "5.6.1" || na.RoomVersion != "12" || na.Error() != "room version 12 auth rule 5.6.1: sender's membership is \"leave\", not join" {
		t.Fatalf("got %+v: %q", na, na.Error())
	}
}

func TestSignatureCheckIsRequired(t *testing.T) {
	// Without a signature check, restricted joins cannot be shown to be
	// authorised and are rejected.
	r := newRoom(t, version(t, "10"), "").standard()
	r.apply(joinRules("restricted"))
	ev := r.build(memberWith(dave, dave, `{"membership":"join","join_authorised_via_users_server":"@bob:b.test"}`))
	if got := ruleOf(t, Check(ev, r.state)); got != "4.2.1" {
		t.Fatalf("got %s", got)
	}
	var asked string
	check := WithSignatureCheck(func(e *pdu.Event, server string) bool { asked = server; return e == ev })
	if err := Check(ev, r.state, check); err != nil || asked != "b.test" {
		t.Fatalf("got %v, asked %q", err, asked)
	}
}

func TestCheckUnusableInput(t *testing.T) {
	r := newRoom(t, version(t, "9"), "").standard()
	ev := r.build(message(carol, "m.room.message"))
	wrong := AuthEventsFunc(func(pdu.StateTuple) *pdu.Event { return r.create })
	if err := Check(ev, wrong); err == nil || errors.Is(err, ErrNotAllowed) {
		t.Fatalf("a lookup returning the wrong tuple: got %v", err)
	}
	ev.Version = nil
	if err := Check(ev, r.state); err == nil || errors.Is(err, ErrNotAllowed) {
		t.Fatalf("no version: got %v", err)
	}
}
