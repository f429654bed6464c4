package webhooks

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of a rendered message: an event may hold 64 KiB in all.
const (
	maxValueRunes = 2000     // of one annotation or label value shown
	maxBodyBytes  = 12 << 10 // of the text, and of the HTML, as JSON
)

// message is a rendered message's text and HTML.
type message struct {
	Body, HTML string
}

// digest identifies what a message shows: an unchanged repeat has the
// same digest and is left out.
func (m message) digest() string {
	h := sha256.Sum256([]byte(m.Body + "\x00" + m.HTML))
	return hex.EncodeToString(h[:16])
}

// content is the event content of a message of msgtype.
func (m message) content(msgtype string) map[string]any {
	c := map[string]any{"msgtype": msgtype, "body": m.Body}
	if m.HTML != "" {
		c["format"], c["formatted_body"] = "org.matrix.custom.html", m.HTML
	}
	return c
}

// editContent is an edit (m.replace) of event id to m.
func (m message) editContent(msgtype, id string) map[string]any {
	fallback := message{Body: "* " + m.Body}
	if m.HTML != "" {
		fallback.HTML = "* " + m.HTML
	}
	c := fallback.content(msgtype)
	c["m.new_content"] = m.content(msgtype)
	c["m.relates_to"] = map[string]any{"rel_type": "m.replace", "event_id": id}
	return c
}

// replyContent is m as an answer to event id.
func (m message) replyContent(msgtype, id string) map[string]any {
	c := m.content(msgtype)
	c["m.relates_to"] = map[string]any{"m.in_reply_to": map[string]any{"event_id": id}}
	return c
}

// renderAlert renders one alert: status, severity, name, summary and
// description, labels, times and links.
func renderAlert(a *Alert, n *Notification) message {
	var t, h strings.Builder
	firing := a.Status == "firing"
	status, color := "🔥 FIRING", "#d0021b"
	if !firing {
		status, color = "✅ RESOLVED", "#2e7d32"
	}
	name := cmpOr(a.Labels["alertname"], "alert")
	severity := a.Labels["severity"]
	summary := cmpOr(a.Annotations["summary"], a.Annotations["message"])
	description := a.Annotations["description"]

	t.WriteString(status)
	fmt.Fprintf(&h, `<p><strong><font data-mx-color="%s">%s</font></strong>`, color, esc(status))
	if severity != "" {
		fmt.Fprintf(&t, " [%s]", clip(severity))
		fmt.Fprintf(&h, ` <code>%s</code>`, esc(clip(severity)))
	}
	fmt.Fprintf(&t, " %s", clip(name))
	fmt.Fprintf(&h, ` <strong>%s</strong>`, esc(clip(name)))
	if summary != "" {
		fmt.Fprintf(&t, ": %s", clip(summary))
		fmt.Fprintf(&h, `: %s`, escLines(clip(summary)))
	}
	h.WriteString("</p>")
	if description != "" && description != summary {
		fmt.Fprintf(&t, "\n%s", clip(description))
		fmt.Fprintf(&h, "<p>%s</p>", escLines(clip(description)))
	}
	if v := values(a); v != "" {
		fmt.Fprintf(&t, "\nValues: %s", v)
		fmt.Fprintf(&h, "<p>Values: <code>%s</code></p>", esc(v))
	}
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		if k == "alertname" || k == "severity" {
			continue
		}
		labels = append(labels, clip(k)+"="+clip(a.Labels[k]))
	}
	if len(labels) > 0 {
		fmt.Fprintf(&t, "\nLabels: %s", strings.Join(labels, ", "))
		h.WriteString("<p>Labels: ")
		for i, l := range labels {
			if i > 0 {
				h.WriteString(" ")
			}
			fmt.Fprintf(&h, "<code>%s</code>", esc(l))
		}
		h.WriteString("</p>")
	}
	var times []string
	if s := when(a.StartsAt); s != "" {
		times = append(times, "since "+s)
	}
	if e := when(a.EndsAt); e != "" && !firing {
		times = append(times, "resolved "+e)
	}
	if len(times) > 0 {
		fmt.Fprintf(&t, "\n%s", strings.Join(times, ", "))
		fmt.Fprintf(&h, "<p><em>%s</em></p>", esc(strings.Join(times, ", ")))
	}
	links := []struct{ name, url string }{
		{"Source", a.GeneratorURL},
		{"Runbook", a.Annotations["runbook_url"]},
		{"Dashboard", a.DashboardURL},
		{"Panel", a.PanelURL},
		{"Silence", a.SilenceURL},
		{"Image", a.ImageURL},
	}
	var lt, lh []string
	for _, l := range links {
		if u, ok := webURL(l.url); ok {
			lt = append(lt, l.name+": "+u)
			lh = append(lh, fmt.Sprintf(`<a href="%s">%s</a>`, esc(u), l.name))
		}
	}
	if len(lt) > 0 {
		fmt.Fprintf(&t, "\n%s", strings.Join(lt, "\n"))
		fmt.Fprintf(&h, "<p>%s</p>", strings.Join(lh, " · "))
	}
	return bounded(message{Body: t.String(), HTML: h.String()})
}

// renderOverflow says how many alerts of a group are not shown.
func renderOverflow(n *Notification, shown, left int) message {
	text := fmt.Sprintf("… and %d more alerts of this group not shown here", left)
	html := esc(text)
	if u, ok := webURL(n.ExternalURL); ok {
		text += " (see " + u + ")"
		html += fmt.Sprintf(` (see <a href="%s">%s</a>)`, esc(u), esc(u))
	}
	_ = shown
	return message{Body: text, HTML: "<p>" + html + "</p>"}
}

// renderResolvedReply is the answer to a firing message when its alert
// resolves: edits do not notify, the answer does.
func renderResolvedReply(a *Alert) message {
	name := clip(cmpOr(a.Labels["alertname"], "alert"))
	text := "✅ Resolved: " + name
	return message{Body: text, HTML: "<p><strong>✅ Resolved</strong>: " + esc(name) + "</p>"}
}

// renderGeneric is a generic message; its HTML is the sender's, which
// clients sanitise as they do any formatted_body.
func renderGeneric(n *Notification) message {
	h := n.HTML
	if h == "" {
		h = escLines(n.Text)
	}
	return bounded(message{Body: n.Text, HTML: h})
}

// values is Grafana's evaluation values, "B=44.2, C=1", or its older
// valueString.
func values(a *Alert) string {
	if len(a.Values) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(a.Values)) {
			parts = append(parts, fmt.Sprintf("%s=%v", clip(k), a.Values[k]))
		}
		return clip(strings.Join(parts, ", "))
	}
	return clip(a.ValueString)
}

// when formats an RFC 3339 time in UTC; "" for none (Alertmanager's and
// Grafana's zero time, 0001-01-01) or one that does not parse.
func when(s string) string {
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || ts.Year() <= 1 {
		return ""
	}
	return ts.UTC().Format("2006-01-02 15:04:05 UTC")
}

// webURL accepts absolute http(s) URLs only: no javascript: or data:
// links in a message.
func webURL(s string) (string, bool) {
	if s == "" || len(s) > 4096 {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", false
	}
	return u.String(), true
}

func esc(s string) string { return html.EscapeString(s) }

// escLines escapes text and keeps its line breaks.
func escLines(s string) string {
	return strings.ReplaceAll(esc(s), "\n", "<br>")
}

// clip shortens a value to maxValueRunes runes.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= maxValueRunes {
		return s
	}
	r := []rune(s)
	return string(r[:maxValueRunes]) + "…"
}

// bounded keeps a message within an event's size, as JSON (an edit holds
// it twice): one with very many long labels loses the end of its text,
// and its HTML form when that is still too long.
func bounded(m message) message {
	if jsonLen(m.Body)+jsonLen(m.HTML) <= 2*maxBodyBytes {
		return m
	}
	if jsonLen(m.Body) > maxBodyBytes {
		n, cut := 0, len(m.Body)
		for i, r := range m.Body {
			if n += jsonRuneLen(r); n > maxBodyBytes-8 {
				cut = i
				break
			}
		}
		m.Body = m.Body[:cut] + "…"
	}
	m.HTML = escLines(m.Body)
	if jsonLen(m.HTML) > maxBodyBytes {
		m.HTML = ""
	}
	return m
}

// jsonLen is the length of s as a JSON string in an event (canonical
// JSON: UTF-8 kept, control characters escaped).
func jsonLen(s string) int {
	n := 2
	for _, r := range s {
		n += jsonRuneLen(r)
	}
	return n
}

func jsonRuneLen(r rune) int {
	switch {
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 2
	case r < 0x20:
		return 6
	case r == utf8.RuneError:
		return 3
	}
	return utf8.RuneLen(r)
}
