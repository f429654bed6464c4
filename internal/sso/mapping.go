package sso

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"luxchat/internal/config"
)

// Claims are the claims of a provider's user: the ID token's over the
// userinfo endpoint's.
type Claims map[string]any

// str returns a claim as a string: strings as they are, numbers and
// booleans written out, anything else (missing, objects, lists) "".
func (c Claims) str(name string) string {
	switch v := c[name].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// strs returns a claim as the strings it holds: one for a string, those
// of a list.
func (c Claims) strs(name string) []string {
	switch v := c[name].(type) {
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case nil:
		return nil
	}
	if s := c.str(name); s != "" {
		return []string{s}
	}
	return nil
}

// template is a mapping template: text with {{ claim }} placeholders, each
// optionally filtered: {{ claim | lower }}, {{ claim | localpart }} (the
// part before '@'). A missing claim renders as "".
type template struct {
	parts []templatePart
}

type templatePart struct {
	text, claim, filter string
}

var placeholderRe = regexp.MustCompile(`\{\{\s*([A-Za-z0-9_.:-]+)\s*(?:\|\s*([a-z]+)\s*)?\}\}`)

func parseTemplate(src string) (*template, error) {
	t := &template{}
	last := 0
	for _, m := range placeholderRe.FindAllStringSubmatchIndex(src, -1) {
		if m[0] > last {
			t.parts = append(t.parts, templatePart{text: src[last:m[0]]})
		}
		p := templatePart{claim: src[m[2]:m[3]]}
		if m[4] >= 0 {
			p.filter = src[m[4]:m[5]]
			if p.filter != "lower" && p.filter != "localpart" {
				return nil, fmt.Errorf("template %q: unknown filter %q (lower, localpart)", src, p.filter)
			}
		}
		t.parts = append(t.parts, p)
		last = m[1]
	}
	if rest := src[last:]; rest != "" {
		if strings.Contains(rest, "{{") {
			return nil, fmt.Errorf("template %q: malformed placeholder", src)
		}
		t.parts = append(t.parts, templatePart{text: rest})
	}
	return t, nil
}

// render fills the template in; "" when a claim it names is missing.
func (t *template) render(c Claims) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.claim == "" {
			b.WriteString(p.text)
			continue
		}
		v := c.str(p.claim)
		if v == "" {
			return ""
		}
		switch p.filter {
		case "lower":
			v = strings.ToLower(v)
		case "localpart":
			v, _, _ = strings.Cut(v, "@")
		}
		b.WriteString(v)
	}
	return b.String()
}

// mapping turns claims into an account's localpart, display name and
// email, and decides who may log in.
type mapping struct {
	localpart, displayName, email *template
	conditions                    []config.ClaimCondition
}

func newMapping(pc config.OIDCProvider) (*mapping, error) {
	m := &mapping{conditions: pc.Conditions}
	for _, f := range []struct {
		dst *(*template)
		src string
		def string
	}{
		{&m.localpart, pc.LocalpartTemplate, "{{ preferred_username }}"},
		{&m.displayName, pc.DisplayNameTemplate, "{{ name }}"},
		{&m.email, pc.EmailTemplate, "{{ email }}"},
	} {
		src := f.src
		if src == "" {
			src = f.def
		}
		t, err := parseTemplate(src)
		if err != nil {
			return nil, err
		}
		*f.dst = t
	}
	return m, nil
}

// allowed reports whether every condition holds, and the first that does
// not.
func (m *mapping) allowed(c Claims) (bool, string) {
	for _, cond := range m.conditions {
		if !conditionHolds(cond, c.strs(cond.Claim)) {
			return false, cond.Claim
		}
	}
	return true, ""
}

func conditionHolds(cond config.ClaimCondition, values []string) bool {
	for _, v := range values {
		switch {
		case cond.Equals != "" && v == cond.Equals:
			return true
		case cond.Suffix != "" && strings.HasSuffix(strings.ToLower(v), strings.ToLower(cond.Suffix)):
			return true
		case len(cond.OneOf) > 0:
			for _, o := range cond.OneOf {
				if v == o {
					return true
				}
			}
		}
	}
	return false
}

// validLocalpart matches the localparts new accounts may have.
var validLocalpart = regexp.MustCompile(`^[a-z0-9._=\-/+]{1,64}$`)

// localpartFor is the localpart a new account of the provider's user
// asks for: the template's, lowercased, when it is a valid localpart;
// otherwise one derived from a hash of the provider and subject, stable
// across logins.
func (m *mapping) localpartFor(providerID, subject string, c Claims) string {
	lp := strings.ToLower(m.localpart.render(c))
	if validLocalpart.MatchString(lp) {
		return lp
	}
	return hashedLocalpart(providerID, subject)
}

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func hashedLocalpart(providerID, subject string) string {
	sum := sha256.Sum256([]byte(providerID + "\x00" + subject))
	return "u" + lowerBase32.EncodeToString(sum[:10])
}

// emailFor is the email to keep as a 3PID: the template's when it looks
// like an address and the provider did not say it is unverified.
func (m *mapping) emailFor(c Claims) string {
	if v, ok := c["email_verified"].(bool); ok && !v {
		return ""
	}
	e := strings.ToLower(strings.TrimSpace(m.email.render(c)))
	if local, domain, ok := strings.Cut(e, "@"); !ok || local == "" || domain == "" || strings.ContainsAny(e, " \t\r\n<>") || len(e) > 254 {
		return ""
	}
	return e
}

// displayNameFor is the display name of a new account ("": the localpart).
func (m *mapping) displayNameFor(c Claims) string {
	d := strings.TrimSpace(m.displayName.render(c))
	if len(d) > 256 {
		d = strings.ToValidUTF8(d[:256], "")
	}
	return d
}
