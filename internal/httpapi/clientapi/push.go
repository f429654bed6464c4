package clientapi

import (
	"encoding/json"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/notifications"
	"luxchat/internal/push"
)

// GET /pushrules/
func (a *API) pushRules(r *httputil.Request) (any, error) {
	rs, err := a.Push.Rules(r.Context(), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"global": rs}, nil
}

// GET /pushrules/global/
func (a *API) pushRulesGlobal(r *httputil.Request) (any, error) {
	return a.Push.Rules(r.Context(), r.Session.UserID)
}

// GET /pushrules/global/{kind}/
func (a *API) pushRulesOfKind(r *httputil.Request) (any, error) {
	rs, err := a.Push.Rules(r.Context(), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	rules := rs.Kind(r.Var("kind"))
	if rules == nil {
		return nil, errcode.NotFound("unknown push rule kind")
	}
	return *rules, nil
}

// findRule returns the rule named by the path.
func (a *API) findRule(r *httputil.Request) (*push.Rule, error) {
	rs, err := a.Push.Rules(r.Context(), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	kind := r.Var("kind")
	i, err := rs.Find(kind, r.Var("ruleId"))
	if err != nil {
		return nil, err
	}
	return &(*rs.Kind(kind))[i], nil
}

// GET /pushrules/global/{kind}/{ruleId}
func (a *API) pushRule(r *httputil.Request) (any, error) {
	return a.findRule(r)
}

// PUT /pushrules/global/{kind}/{ruleId}
func (a *API) putPushRule(r *httputil.Request) (any, error) {
	var nr push.NewRule
	if err := r.ReadJSON(&nr); err != nil {
		return nil, err
	}
	kind, id := r.Var("kind"), r.Var("ruleId")
	before, after := r.Query("before"), r.Query("after")
	err := a.Push.EditRules(r.Context(), r.Session.UserID, func(rs *push.Ruleset) error {
		if rules := rs.Kind(kind); rules != nil {
			for _, x := range *rules {
				if x.RuleID == id && x.Default {
					return errcode.InvalidParam("server-default rules can only be enabled, disabled or given other actions")
				}
			}
		}
		return rs.Put(kind, id, nr, before, after)
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// DELETE /pushrules/global/{kind}/{ruleId}
func (a *API) deletePushRule(r *httputil.Request) (any, error) {
	err := a.Push.EditRules(r.Context(), r.Session.UserID, func(rs *push.Ruleset) error {
		return rs.Delete(r.Var("kind"), r.Var("ruleId"))
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// GET /pushrules/global/{kind}/{ruleId}/enabled
func (a *API) pushRuleEnabled(r *httputil.Request) (any, error) {
	rule, err := a.findRule(r)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"enabled": rule.Enabled}, nil
}

// PUT /pushrules/global/{kind}/{ruleId}/enabled
func (a *API) putPushRuleEnabled(r *httputil.Request) (any, error) {
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Enabled == nil {
		return nil, errcode.MissingParam("enabled is required")
	}
	err := a.Push.EditRules(r.Context(), r.Session.UserID, func(rs *push.Ruleset) error {
		return rs.SetEnabled(r.Var("kind"), r.Var("ruleId"), *body.Enabled)
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// GET /pushrules/global/{kind}/{ruleId}/actions
func (a *API) pushRuleActions(r *httputil.Request) (any, error) {
	rule, err := a.findRule(r)
	if err != nil {
		return nil, err
	}
	actions := rule.Actions
	if actions == nil {
		actions = []json.RawMessage{}
	}
	return map[string]any{"actions": actions}, nil
}

// PUT /pushrules/global/{kind}/{ruleId}/actions
func (a *API) putPushRuleActions(r *httputil.Request) (any, error) {
	var body struct {
		Actions []json.RawMessage `json:"actions"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Actions == nil {
		return nil, errcode.MissingParam("actions is required")
	}
	err := a.Push.EditRules(r.Context(), r.Session.UserID, func(rs *push.Ruleset) error {
		return rs.SetActions(r.Var("kind"), r.Var("ruleId"), body.Actions)
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// GET /pushers
func (a *API) getPushers(r *httputil.Request) (any, error) {
	ps, err := a.Push.Pushers(r.Context(), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pushers": ps}, nil
}

// POST /pushers/set
func (a *API) setPusher(r *httputil.Request) (any, error) {
	raw, err := r.Body()
	if err != nil {
		return nil, err
	}
	var req notifications.PusherRequest
	if err := httputil.DecodeJSON(raw, &req); err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(raw, &fields)
	_, kindPresent := fields["kind"]
	if err := a.Push.SetPusher(r.Context(), r.Session.UserID, r.Session.DeviceID, req, kindPresent); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// GET /notifications
func (a *API) notifications(r *httputil.Request) (any, error) {
	limit, err := r.QueryInt("limit", 20)
	if err != nil {
		return nil, err
	}
	only := r.Query("only")
	if only != "" && only != "highlight" {
		return nil, errcode.InvalidParam("only must be highlight")
	}
	return a.Push.Notifications(r.Context(), r.Session.UserID, r.Query("from"), int(limit), only == "highlight")
}
