package webhooks

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"luxchat/internal/matrix/errcode"
)

// Formats of a notification body, told apart by what it holds.
const (
	FormatAlertmanager = "alertmanager" // Prometheus Alertmanager's webhook JSON, version 4
	FormatGrafana      = "grafana"      // Grafana alerting's webhook JSON (orgId, silenceURL, …)
	FormatGeneric      = "generic"      // {"text": "…", "html": "…"}
)

// Notification is a parsed notification body.
type Notification struct {
	Format      string
	GroupKey    string // Alertmanager's and Grafana's group key ("" for generic)
	Receiver    string
	ExternalURL string
	Alerts      []Alert
	Truncated   int // alerts the sender left out (truncatedAlerts)

	// Text and HTML are a generic message's.
	Text, HTML string
}

// Alert is one alert of a notification.
type Alert struct {
	Status       string // firing | resolved
	Labels       map[string]string
	Annotations  map[string]string
	StartsAt     string
	EndsAt       string
	GeneratorURL string
	Fingerprint  string
	// Grafana's.
	SilenceURL   string
	DashboardURL string
	PanelURL     string
	ImageURL     string
	ValueString  string
	Values       map[string]any
}

// Key identifies the alert across notifications: its fingerprint, or a
// hash of its labels when the sender gave none.
func (a *Alert) Key() string {
	if a.Fingerprint != "" {
		return "fp:" + a.Fingerprint
	}
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(a.Labels[k]), a.Labels[k])
	}
	return "labels:" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Limits of what a notification may hold.
const (
	maxAlerts      = 1000 // in one notification
	maxFieldBytes  = 256  // a fingerprint, status, group key's share of a key
	maxLabels      = 100  // of one alert
	maxGenericText = 32 << 10
)

// wire forms: pointers and raw values so that a field of the wrong type
// is named, and presence is known.
type wireNotification struct {
	Version           *string           `json:"version"`
	OrgID             json.RawMessage   `json:"orgId"`
	GroupKey          *string           `json:"groupKey"`
	Status            *string           `json:"status"`
	Receiver          *string           `json:"receiver"`
	ExternalURL       *string           `json:"externalURL"`
	TruncatedAlerts   *int              `json:"truncatedAlerts"`
	Alerts            *[]wireAlert      `json:"alerts"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	GroupLabels       map[string]string `json:"groupLabels"`
	Text              *string           `json:"text"`
	HTML              *string           `json:"html"`
}

type wireAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     string            `json:"startsAt"`
	EndsAt       string            `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
	SilenceURL   *string           `json:"silenceURL"`
	DashboardURL *string           `json:"dashboardURL"`
	PanelURL     *string           `json:"panelURL"`
	ImageURL     *string           `json:"imageURL"`
	ValueString  *string           `json:"valueString"`
	Values       map[string]any    `json:"values"`
}

func (w *wireAlert) grafana() bool {
	return w.SilenceURL != nil || w.DashboardURL != nil || w.PanelURL != nil || w.ValueString != nil || w.Values != nil
}

// Parse reads a notification body and tells its format. Malformed JSON is
// M_NOT_JSON; JSON that is none of the formats, or holds a field of the
// wrong type, is M_BAD_JSON.
func Parse(body []byte) (*Notification, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errcode.NotJSON("empty body: expected Alertmanager's or Grafana's webhook JSON, or {\"text\": …}")
	}
	if !utf8.Valid(trimmed) || !json.Valid(trimmed) {
		return nil, errcode.NotJSON("body is not valid JSON")
	}
	if trimmed[0] != '{' {
		return nil, errcode.BadJSON("body must be a JSON object")
	}
	var w wireNotification
	if err := json.Unmarshal(trimmed, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, errcode.BadJSON("%s: expected %s", cmpOr(te.Field, "body"), te.Type.String())
		}
		return nil, errcode.BadJSON("invalid body: %v", err)
	}
	if w.Alerts != nil {
		return parseAlerts(&w)
	}
	if w.Text != nil || w.HTML != nil {
		n := &Notification{Format: FormatGeneric}
		if w.Text != nil {
			n.Text = strings.TrimSpace(*w.Text)
		}
		if w.HTML != nil {
			n.HTML = strings.TrimSpace(*w.HTML)
		}
		if n.Text == "" {
			n.Text = strings.TrimSpace(plainOfHTML(n.HTML))
		}
		if n.Text == "" {
			return nil, errcode.BadJSON("text (or html) must be a non-empty string")
		}
		if len(n.Text) > maxGenericText || len(n.HTML) > maxGenericText {
			return nil, errcode.TooLarge("text and html may hold at most %d bytes each", maxGenericText)
		}
		return n, nil
	}
	return nil, errcode.BadJSON("unrecognised body: expected Alertmanager's or Grafana's webhook JSON (with alerts), or {\"text\": …, \"html\": …}")
}

func parseAlerts(w *wireNotification) (*Notification, error) {
	n := &Notification{Format: FormatAlertmanager}
	grafana := len(w.OrgID) > 0 || (w.Version != nil && *w.Version == "1")
	for i := range *w.Alerts {
		grafana = grafana || (*w.Alerts)[i].grafana()
	}
	if grafana {
		n.Format = FormatGrafana
	} else if w.Version != nil && *w.Version != "4" {
		return nil, errcode.BadJSON("version %q: Alertmanager's webhook version 4 is understood", *w.Version)
	}
	if len(*w.Alerts) > maxAlerts {
		return nil, errcode.TooLarge("at most %d alerts per notification (Alertmanager's max_alerts)", maxAlerts)
	}
	if w.GroupKey != nil {
		n.GroupKey = *w.GroupKey
	}
	if w.Receiver != nil {
		n.Receiver = *w.Receiver
	}
	if w.ExternalURL != nil {
		n.ExternalURL = *w.ExternalURL
	}
	if w.TruncatedAlerts != nil && *w.TruncatedAlerts > 0 {
		n.Truncated = *w.TruncatedAlerts
	}
	for i, wa := range *w.Alerts {
		if wa.Status != "firing" && wa.Status != "resolved" {
			return nil, errcode.BadJSON("alerts[%d].status must be firing or resolved", i)
		}
		if len(wa.Fingerprint) > maxFieldBytes {
			return nil, errcode.BadJSON("alerts[%d].fingerprint is too long", i)
		}
		if len(wa.Labels) > maxLabels || len(wa.Annotations) > maxLabels {
			return nil, errcode.BadJSON("alerts[%d]: at most %d labels and %d annotations", i, maxLabels, maxLabels)
		}
		a := Alert{Status: wa.Status, Labels: wa.Labels, Annotations: wa.Annotations, StartsAt: wa.StartsAt, EndsAt: wa.EndsAt,
			GeneratorURL: wa.GeneratorURL, Fingerprint: wa.Fingerprint, Values: wa.Values}
		if a.Labels == nil {
			a.Labels = map[string]string{}
		}
		if a.Annotations == nil {
			a.Annotations = map[string]string{}
		}
		// Labels and annotations shared by the group belong to each alert.
		for k, v := range w.CommonLabels {
			if _, ok := a.Labels[k]; !ok && len(a.Labels) < maxLabels {
				a.Labels[k] = v
			}
		}
		for k, v := range w.CommonAnnotations {
			if _, ok := a.Annotations[k]; !ok && len(a.Annotations) < maxLabels {
				a.Annotations[k] = v
			}
		}
		for _, f := range []struct {
			dst *string
			src *string
		}{{&a.SilenceURL, wa.SilenceURL}, {&a.DashboardURL, wa.DashboardURL}, {&a.PanelURL, wa.PanelURL}, {&a.ImageURL, wa.ImageURL}, {&a.ValueString, wa.ValueString}} {
			if f.src != nil {
				*f.dst = *f.src
			}
		}
		n.Alerts = append(n.Alerts, a)
	}
	return n, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// plainOfHTML is the text of an HTML fragment, tags left out, for a
// generic message that gave only html.
func plainOfHTML(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>' && in:
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return html.UnescapeString(b.String())
}
