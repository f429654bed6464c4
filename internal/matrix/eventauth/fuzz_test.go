package eventauth

import (
	"encoding/json"
	"testing"

	"luxchat/internal/matrix/pdu"
)

// FuzzCheck feeds arbitrary content to member and power levels events, and
// to the current power levels and join rules, in every room version. It
// only asserts that Check and SelectAuthEvents neither panic nor return
// anything but nil or a rejection.
func FuzzCheck(f *testing.F) {
	f.Add(uint8(12), true, `{"membership":"join","join_authorised_via_users_server":"@bob:b.test"}`, `{"users":{"@bob:b.test":50}}`)
	f.Add(uint8(1), false, `{"users":{"@bob:b.test":"50"},"ban":1e400}`, `{"ban":" 60 "}`)
	f.Add(uint8(9), true, `{"membership":"invite","third_party_invite":{"signed":{"mxid":"@dave:d.test","token":"tok","signatures":{"x":{"ed25519:0":"AA"}}}}}`, `{}`)
	f.Add(uint8(10), false, `{"events":{"a":1},"notifications":[],"users":{"@x:y":9007199254740991}}`, `null`)
	f.Add(uint8(7), true, `{"membership":"knock"}`, `{"join_rule":"knock"}`)
	f.Add(uint8(3), false, `[]`, `"x"`)
	f.Fuzz(func(t *testing.T, vid uint8, isMember bool, content, current string) {
		v := version(t, itoa(int(vid%12)+1))
		r := newRoom(t, v, "").standard()
		r.state[powerLevelsTuple] = &pdu.Event{ID: "$pl", RoomID: r.id, Sender: alice, Type: typePowerLevels,
			StateKey: sk(""), Content: json.RawMessage(current), Version: v}
		r.state[joinRulesTuple] = &pdu.Event{ID: "$jr", RoomID: r.id, Sender: alice, Type: typeJoinRules,
			StateKey: sk(""), Content: json.RawMessage(current), Version: v}
		r.state[pdu.StateTuple{Type: typeThirdPartyInvite, StateKey: "tok"}] = &pdu.Event{ID: "$tpi", RoomID: r.id, Sender: bob,
			Type: typeThirdPartyInvite, StateKey: sk("tok"), Content: json.RawMessage(current), Version: v}
		s := levels(bob, "")
		s.levels = false
		if isMember {
			s = memberWith(bob, dave, "")
		}
		s.content = content
		ev := r.build(s)
		signed := WithSignatureCheck(func(*pdu.Event, string) bool { return true })
		for _, auth := range []AuthEvents{r.state, r.authEventsOf(ev)} {
			if err := Check(ev, auth, signed); err != nil {
				ruleOf(t, err)
			}
		}
		_ = RoomPowerLevels(r.create, r.state[powerLevelsTuple]).UserLevel(bob)
	})
}
