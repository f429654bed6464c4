package push

import (
	"encoding/json"
	"strings"

	"luxchat/internal/matrix/errcode"
)

// Find returns the index of a rule in its kind, or an M_NOT_FOUND error
// (also for an unknown kind).
func (rs *Ruleset) Find(kind, ruleID string) (int, error) {
	rules := rs.Kind(kind)
	if rules == nil {
		return 0, errcode.NotFound("unknown push rule kind %q", kind)
	}
	for i, r := range *rules {
		if r.RuleID == ruleID {
			return i, nil
		}
	}
	return 0, errcode.NotFound("the push rule was not found")
}

// NewRule is the body of PUT /pushrules/global/{kind}/{ruleId}.
type NewRule struct {
	Actions    []json.RawMessage `json:"actions"`
	Conditions []json.RawMessage `json:"conditions"`
	Pattern    *string           `json:"pattern"`
}

// Put adds or replaces a user-defined rule. before and after name other
// user-defined rules of the kind ("" for none); a new rule without them
// becomes the most important user-defined rule of its kind, a replaced one
// keeps its place.
func (rs *Ruleset) Put(kind, ruleID string, nr NewRule, before, after string) error {
	rules := rs.Kind(kind)
	if rules == nil {
		return errcode.InvalidParam("unknown push rule kind %q", kind)
	}
	if err := validRuleID(kind, ruleID); err != nil {
		return err
	}
	if nr.Actions == nil {
		return errcode.MissingParam("actions are required")
	}
	if len(nr.Actions) > maxItems || len(nr.Conditions) > maxItems {
		return errcode.InvalidParam("at most %d actions and %d conditions", maxItems, maxItems)
	}
	actions, err := CleanActions(nr.Actions)
	if err != nil {
		return err
	}
	r := Rule{RuleID: ruleID, Enabled: true, Actions: actions}
	switch kind {
	case "override", "underride":
		conds := nr.Conditions
		if conds == nil {
			conds = []json.RawMessage{}
		}
		for _, c := range conds {
			if _, err := parseCondition(c); err != nil {
				return errcode.InvalidParam("invalid condition: %s", err.Error())
			}
		}
		r.Conditions = conds
	case "content":
		if nr.Pattern == nil || *nr.Pattern == "" {
			return errcode.InvalidParam("content rules need a pattern")
		}
		if len(*nr.Pattern) > 1024 {
			return errcode.InvalidParam("pattern too long")
		}
		r.Pattern = *nr.Pattern
	}
	for _, ref := range []string{before, after} {
		if ref == "" {
			continue
		}
		if isServerDefault(ref) {
			return errcode.Unknown("before/after rule not found: %s (server-default rules cannot be used)", ref)
		}
		if ref == ruleID {
			return errcode.Unknown("before/after rule not found: %s", ref)
		}
		if _, err := rs.Find(kind, ref); err != nil {
			return errcode.Unknown("before/after rule not found: %s", ref)
		}
	}
	cur := *rules
	old := -1
	for i, x := range cur {
		if x.RuleID == ruleID {
			old = i
		}
	}
	if old < 0 && rs.userRules() >= MaxUserRules {
		return errcode.InvalidParam("too many push rules (at most %d)", MaxUserRules)
	}
	if old >= 0 && before == "" && after == "" {
		// Updated in place; the enabled flag is kept.
		r.Enabled = cur[old].Enabled
		cur[old] = r
		return nil
	}
	if old >= 0 {
		cur = append(cur[:old:old], cur[old+1:]...)
	}
	at := 0
	switch {
	case before != "":
		at = indexOf(cur, before)
	case after != "":
		at = indexOf(cur, after) + 1
	default:
		// The most important user-defined rule: after .m.rule.master only.
		if kind == "override" && len(cur) > 0 && cur[0].RuleID == ".m.rule.master" {
			at = 1
		}
	}
	cur = append(cur[:at:at], append([]Rule{r}, cur[at:]...)...)
	*rules = cur
	return nil
}

// MaxUserRules bounds a user's own rules: every event is evaluated
// against all of them, for every recipient.
const MaxUserRules = 500

// maxItems bounds the actions and the conditions of one rule.
const maxItems = 32

func (rs *Ruleset) userRules() int {
	n := 0
	for _, kind := range Kinds {
		for _, r := range *rs.Kind(kind) {
			if !r.Default {
				n++
			}
		}
	}
	return n
}

func indexOf(rules []Rule, id string) int {
	for i, r := range rules {
		if r.RuleID == id {
			return i
		}
	}
	return -1
}

// Delete removes a user-defined rule.
func (rs *Ruleset) Delete(kind, ruleID string) error {
	i, err := rs.Find(kind, ruleID)
	if err != nil {
		return err
	}
	rules := rs.Kind(kind)
	if (*rules)[i].Default || isServerDefault(ruleID) {
		return errcode.Forbidden("server-default rules cannot be deleted")
	}
	*rules = append((*rules)[:i:i], (*rules)[i+1:]...)
	return nil
}

// SetEnabled enables or disables a rule.
func (rs *Ruleset) SetEnabled(kind, ruleID string, enabled bool) error {
	i, err := rs.Find(kind, ruleID)
	if err != nil {
		return err
	}
	(*rs.Kind(kind))[i].Enabled = enabled
	return nil
}

// SetActions replaces a rule's actions.
func (rs *Ruleset) SetActions(kind, ruleID string, actions []json.RawMessage) error {
	i, err := rs.Find(kind, ruleID)
	if err != nil {
		return err
	}
	if len(actions) > maxItems {
		return errcode.InvalidParam("at most %d actions", maxItems)
	}
	clean, err := CleanActions(actions)
	if err != nil {
		return err
	}
	(*rs.Kind(kind))[i].Actions = clean
	return nil
}

// validRuleID checks a user-defined rule id: no leading dot (reserved for
// server-default rules), no slash or backslash; room and sender rules are
// named after the room or the user.
func validRuleID(kind, id string) error {
	switch {
	case id == "":
		return errcode.InvalidParam("empty rule id")
	case len(id) > 255:
		return errcode.InvalidParam("rule id too long")
	case strings.HasPrefix(id, "."):
		return errcode.InvalidParam("rule ids starting with a dot are reserved for server-default rules")
	case strings.ContainsAny(id, "/\\"):
		return errcode.InvalidParam("rule ids cannot contain slashes or backslashes")
	case kind == "room" && (len(id) < 2 || id[0] != '!'):
		return errcode.InvalidParam("the id of a room rule is a room id")
	case kind == "sender" && (!strings.HasPrefix(id, "@") || !strings.Contains(id, ":")):
		return errcode.InvalidParam("the id of a sender rule is a user id")
	}
	return nil
}

// CleanActions validates actions. The historical dont_notify and coalesce
// are kept as the client gave them (clients read their rules back) and
// ignored by evaluation, as the spec requires.
func CleanActions(actions []json.RawMessage) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(actions))
	for _, a := range actions {
		var s string
		if json.Unmarshal(a, &s) == nil {
			switch s {
			case "notify", "dont_notify", "coalesce":
				out = append(out, json.RawMessage(`"`+s+`"`))
			default:
				return nil, errcode.InvalidParam("unknown action %q", s)
			}
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(a, &obj); err != nil || obj == nil {
			return nil, errcode.InvalidParam("an action is a string or an object")
		}
		var tweak string
		if err := json.Unmarshal(obj["set_tweak"], &tweak); err != nil || tweak == "" {
			return nil, errcode.InvalidParam("unknown action: objects need a set_tweak name")
		}
		out = append(out, a)
	}
	return out, nil
}
