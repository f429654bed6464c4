// Package push holds push rules: the server-default rule set of the spec
// ("Predefined Rules"), per user.
//
// It imports only the standard library.
package push

import (
	_ "embed"
	"encoding/json"
	"strings"
)

// defaults.json is the spec's predefined override and underride rules, in
// the spec's order; "[the user's Matrix ID]" stands for the owner.
//
//go:embed defaults.json
var defaultsJSON string

// Rule is one push rule.
type Rule struct {
	RuleID     string            `json:"rule_id"`
	Default    bool              `json:"default"`
	Enabled    bool              `json:"enabled"`
	Conditions []json.RawMessage `json:"conditions,omitempty"`
	Actions    []json.RawMessage `json:"actions"`
	Pattern    string            `json:"pattern,omitempty"`
}

// Ruleset is a user's rules by kind.
type Ruleset struct {
	Override  []Rule `json:"override"`
	Content   []Rule `json:"content"`
	Room      []Rule `json:"room"`
	Sender    []Rule `json:"sender"`
	Underride []Rule `json:"underride"`
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
