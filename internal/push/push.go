package push

import (
	_ "embed"
	"encoding/json"
	"strings"
)

// defaults.json is the spec's predefined override and underride rules, in
// the spec's order, and MSC3930's poll rules (stable and unstable ids);
// "[the user's Matrix ID]" stands for the owner.
//
//go:embed defaults.json
var defaultsJSON string

// Rule is one push rule as the API and the m.push_rules event show it.
// Conditions are kept as sent so that unknown kinds survive a round trip.
type Rule struct {
	RuleID     string            `json:"rule_id"`
	Default    bool              `json:"default"`
	Enabled    bool              `json:"enabled"`
	Conditions []json.RawMessage `json:"conditions,omitempty"`
	Actions    []json.RawMessage `json:"actions"`
	Pattern    string            `json:"pattern,omitempty"`
}

// Ruleset is a user's rules by kind, each kind in priority order.
type Ruleset struct {
	Override  []Rule `json:"override"`
	Content   []Rule `json:"content"`
	Room      []Rule `json:"room"`
	Sender    []Rule `json:"sender"`
	Underride []Rule `json:"underride"`
}

// Kinds are the rule kinds in the order they are checked.
var Kinds = []string{"override", "content", "room", "sender", "underride"}

// Kind returns the rules of a kind, nil for an unknown kind.
func (rs *Ruleset) Kind(kind string) *[]Rule {
	switch kind {
	case "override":
		return &rs.Override
	case "content":
		return &rs.Content
	case "room":
		return &rs.Room
	case "sender":
		return &rs.Sender
	case "underride":
		return &rs.Underride
	}
	return nil
}

// Defaults returns the server-default rules for a user.
func Defaults(userID string) *Ruleset {
	quoted, _ := json.Marshal(userID)
	text := strings.ReplaceAll(defaultsJSON, `"[the user's Matrix ID]"`, string(quoted))
	var d struct {
		Override  []Rule `json:"override"`
		Underride []Rule `json:"underride"`
	}
	if err := json.Unmarshal([]byte(text), &d); err != nil {
		panic("push: invalid embedded defaults: " + err.Error())
	}
	return &Ruleset{Override: d.Override, Content: []Rule{}, Room: []Rule{}, Sender: []Rule{}, Underride: d.Underride}
}

// Merge returns the rule set in force for a user whose stored rule set is
// stored (nil when the user never changed anything): the user's own rules
// in their order, the server-default rules after them (except
// .m.rule.master, which always comes first) with the enabled flag and
// actions the user chose for them. Defaults the server no longer has are
// dropped, new ones appear.
func Merge(userID string, stored *Ruleset) *Ruleset {
	out := Defaults(userID)
	if stored == nil {
		return out
	}
	for _, kind := range Kinds {
		defs := out.Kind(kind)
		saved := *stored.Kind(kind)
		byID := make(map[string]*Rule, len(saved))
		var own []Rule
		for i := range saved {
			r := saved[i]
			if isServerDefault(r.RuleID) {
				byID[r.RuleID] = &saved[i]
				continue
			}
			r.Default = false
			own = append(own, r)
		}
		merged := make([]Rule, 0, len(own)+len(*defs))
		rest := *defs
		if kind == "override" && len(rest) > 0 && rest[0].RuleID == ".m.rule.master" {
			merged = append(merged, withChoices(rest[0], byID))
			rest = rest[1:]
		}
		merged = append(merged, own...)
		for _, d := range rest {
			merged = append(merged, withChoices(d, byID))
		}
		*defs = merged
	}
	return out
}

// withChoices applies what the user chose for a server-default rule.
func withChoices(d Rule, saved map[string]*Rule) Rule {
	if s := saved[d.RuleID]; s != nil {
		d.Enabled = s.Enabled
		if s.Actions != nil {
			d.Actions = s.Actions
		}
	}
	return d
}

func isServerDefault(ruleID string) bool { return strings.HasPrefix(ruleID, ".") }

// ownerPlaceholder stands for the owner in a shared rule set (no user id
// contains a NUL).
const ownerPlaceholder = "\x00owner"

// Shared returns the rule set in force for any user whose stored rule set
// is stored (nil when never changed), with the owner left as a parameter,
// and a key equal for users who made the same choices: they can share one
// compiled set (CompileShared), evaluated with each user as Recipient.
func Shared(stored *Ruleset) (rs *Ruleset, key string) {
	rs = Merge(ownerPlaceholder, stored)
	if stored == nil {
		return rs, ""
	}
	b, _ := json.Marshal(rs)
	return rs, string(b)
}

// isOwner reports whether a condition names the shared rule set's owner.
func isOwner(c condition) bool {
	switch c.kind {
	case condEventMatch:
		return c.glob.re == nil && c.glob.literal == ownerPlaceholder
	case condPropertyIs, condPropertyContains:
		return c.value == ownerPlaceholder
	}
	return false
}
