package webhooks

import (
	"encoding/json"
	"strings"
	"testing"

	"luxchat/internal/matrix/errcode"
)

// Alertmanager's webhook_config example (version 4), one alert resolved.
const amDoc = `{"version":"4","groupKey":"{}:{alertname=\"InstanceDown\"}","truncatedAlerts":2,"status":"resolved","receiver":"team-ops",
"groupLabels":{"alertname":"InstanceDown"},"commonLabels":{"alertname":"InstanceDown","severity":"page"},
"commonAnnotations":{"summary":"Instance down"},"externalURL":"http://am.example:9093",
"alerts":[{"status":"resolved","labels":{"alertname":"InstanceDown","instance":"db-1:9100"},"annotations":{"description":"db-1 was down\nfor 5 minutes"},
"startsAt":"2026-12-07T08:00:00.000Z","endsAt":"2026-12-07T08:05:00Z","generatorURL":"http://prom.example:9090/graph","fingerprint":"ffee"}]}`

const grafanaDoc = `{"receiver":"My Super Webhook","status":"firing","orgId":1,"alerts":[{"status":"firing","labels":{"alertname":"High CPU usage","team":"blue"},
"annotations":{"summary":"cpu"},"startsAt":"2021-10-12T09:56:03.157076+02:00","endsAt":"0001-01-01T00:00:00Z","generatorURL":"https://play.grafana.org/alerting/d1rdpdv7k/edit",
"fingerprint":"bc97ff14869b13e3","silenceURL":"https://play.grafana.org/alerting/silence/new","dashboardURL":"","panelURL":"","valueString":"[ metric='' labels={} value=14151.33 ]"}],
"groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"https://play.grafana.org/","version":"1","groupKey":"{}:{}","truncatedAlerts":0}`

func TestParseFormats(t *testing.T) {
	n, err := Parse([]byte(amDoc))
	if err != nil || n.Format != FormatAlertmanager || len(n.Alerts) != 1 || n.Truncated != 2 || n.GroupKey == "" {
		t.Fatalf("alertmanager: %+v %v", n, err)
	}
	a := n.Alerts[0]
	if a.Labels["severity"] != "page" || a.Annotations["summary"] != "Instance down" || a.Key() != "fp:ffee" {
		t.Fatalf("common labels and annotations not applied: %+v", a)
	}
	m := renderAlert(&a, n)
	for _, want := range []string{"✅ RESOLVED [page] InstanceDown: Instance down", "db-1 was down\nfor 5 minutes", "instance=db-1:9100", "since 2026-12-07 08:00:00 UTC, resolved 2026-12-07 08:05:00 UTC", "Source: http://prom.example:9090/graph"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, m.Body)
		}
	}
	if !strings.Contains(m.HTML, "db-1 was down<br>for 5 minutes") {
		t.Errorf("html: %s", m.HTML)
	}
	if o := renderOverflow(n, 1, 2); !strings.Contains(o.Body, "2 more alerts") || !strings.Contains(o.HTML, `href="http://am.example:9093"`) {
		t.Errorf("overflow: %+v", o)
	}

	n, err = Parse([]byte(grafanaDoc))
	if err != nil || n.Format != FormatGrafana || n.Alerts[0].SilenceURL == "" {
		t.Fatalf("grafana: %+v %v", n, err)
	}
	m = renderAlert(&n.Alerts[0], n)
	if !strings.Contains(m.Body, "Values: [ metric='' labels={} value=14151.33 ]") || !strings.Contains(m.Body, "since 2021-10-12 07:56:03 UTC") || strings.Contains(m.Body, "Dashboard") {
		t.Errorf("grafana body:\n%s", m.Body)
	}

	n, err = Parse([]byte(`{"html": "<p>Backup <b>failed</b> &amp; retried</p>"}`))
	if err != nil || n.Format != FormatGeneric || n.Text != "Backup failed & retried" {
		t.Fatalf("generic html only: %+v %v", n, err)
	}
	// Labels without a fingerprint: the same labels are the same alert.
	a1 := Alert{Labels: map[string]string{"a": "b", "c": "d"}}
	a2 := Alert{Labels: map[string]string{"c": "d", "a": "b"}}
	a3 := Alert{Labels: map[string]string{"a": "bc", "": "d"}}
	if a1.Key() != a2.Key() || a1.Key() == a3.Key() {
		t.Fatalf("label keys: %s %s %s", a1.Key(), a2.Key(), a3.Key())
	}
}

func TestParseRefusals(t *testing.T) {
	for body, code := range map[string]string{
		"":                               "M_NOT_JSON",
		"{":                              "M_NOT_JSON",
		"\xff":                           "M_NOT_JSON",
		"null":                           "M_BAD_JSON",
		`"text"`:                         "M_BAD_JSON",
		`{}`:                             "M_BAD_JSON",
		`{"alerts": null, "text": null}`: "M_BAD_JSON",
		`{"version": "3", "alerts": []}`: "M_BAD_JSON",
		`{"alerts": [{"status": "ok"}]}`: "M_BAD_JSON",
		`{"alerts": [1]}`:                "M_BAD_JSON",
		`{"html": "<br>"}`:               "M_BAD_JSON",
		`{"alerts": [], "groupKey": 5}`:  "M_BAD_JSON",
		`{"text": "` + strings.Repeat("a", maxGenericText+1) + `"}`: "M_TOO_LARGE",
	} {
		_, err := Parse([]byte(body))
		e, ok := errcode.As(err)
		if !ok || e.Code != code || e.Status >= 500 {
			t.Errorf("%.30q: %v, want %s", body, err, code)
		}
	}
}

func TestRenderEscapes(t *testing.T) {
	a := Alert{Status: "firing", Labels: map[string]string{"alertname": `<img src=x onerror=alert(1)>`, "severity": `"><b>`},
		Annotations: map[string]string{"summary": "a & b", "runbook_url": "javascript:alert(1)"}, GeneratorURL: `https://x.example/?q="><script>`}
	m := renderAlert(&a, &Notification{})
	if strings.Contains(m.HTML, "<img") || strings.Contains(m.HTML, "<b>\"") || strings.Contains(m.HTML, "javascript:") || strings.Contains(m.HTML, "<script>") || !strings.Contains(m.HTML, "a &amp; b") {
		t.Fatalf("html not escaped: %s", m.HTML)
	}
	// Huge labels stay within an event.
	big := Alert{Status: "firing", Labels: map[string]string{}}
	for i := 0; i < maxLabels; i++ {
		big.Labels[strings.Repeat("k", 10)+string(rune('a'+i%26))+strings.Repeat("z", i)] = strings.Repeat("<", 3000)
	}
	m = renderAlert(&big, &Notification{})
	data := eventJSON(t, m.editContent("m.notice", "$x"))
	if len(data) > 60000 {
		t.Fatalf("edit content of %d bytes", len(data))
	}
}

// FuzzParse: any body is parsed or refused with a client error, and
// whatever parses renders into content that fits an event, without a
// link other than http(s).
func FuzzParse(f *testing.F) {
	for _, s := range []string{amDoc, grafanaDoc, `{"text":"hi","html":"<b>hi</b>"}`, `{"alerts":[{"status":"firing"}]}`, `{"version":"4","alerts":[]}`, `[]`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := Parse(body)
		if err != nil {
			if e, ok := errcode.As(err); !ok || e.Status >= 500 {
				t.Fatalf("error %v", err)
			}
			return
		}
		var msgs []message
		if n.Format == FormatGeneric {
			msgs = append(msgs, renderGeneric(n))
		}
		for i := range n.Alerts {
			m := renderAlert(&n.Alerts[i], n)
			if strings.Contains(m.HTML, `href="javascript`) || strings.Contains(m.HTML, `href="data`) {
				t.Fatalf("bad link in %s", m.HTML)
			}
			msgs = append(msgs, m, renderResolvedReply(&n.Alerts[i]))
			_ = n.Alerts[i].Key()
		}
		for _, m := range msgs {
			if data := eventJSON(t, m.editContent("m.notice", "$e")); len(data) > 60000 {
				t.Fatalf("content of %d bytes", len(data))
			}
			if m.Body == "" {
				t.Fatal("empty body")
			}
		}
	})
}

// eventJSON encodes content as an event holds it: without HTML escapes.
func eventJSON(t *testing.T, v any) []byte {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}
