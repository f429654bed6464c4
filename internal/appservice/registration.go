package appservice

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"strings"

	"gopkg.in/yaml.v3"
)

// Registration is one application service as its registration file
// describes it (content/application-service-api.md, "Registration").
type Registration struct {
	ID              string
	URL             string // "": the service receives nothing (url: null)
	ASToken         string
	HSToken         string
	SenderLocalpart string
	Sender          string // @sender_localpart:server_name
	RateLimited     bool
	Protocols       []string
	// Ephemeral: typing, receipts, presence and to-device messages are
	// pushed (receive_ephemeral or MSC2409's push_ephemeral).
	Ephemeral bool
	// Internal marks the server's own service (the alert bot; not
	// settable in a file): its only user is its sender, so it is
	// interested in the rooms its sender is in, read from the membership
	// table rather than from the rooms' members (which would load every
	// room with news into the rooms cache); of the ephemeral data it gets
	// to-device messages only, not every user's typing, receipts and
	// presence; and it does not make m.login.application_service a
	// login type.
	Internal bool
	// MSC3202: device list changes and one-time key counts are pushed,
	// and device_id masquerading is allowed.
	MSC3202 bool
	// MSC4190: the service creates and deletes its users' devices.
	MSC4190 bool
	Users   []Namespace
	Aliases []Namespace
	Rooms   []Namespace
	File    string // where it was read from, for messages
}

// Namespace is one regex of a registration.
type Namespace struct {
	Exclusive bool
	Regex     string
	re        *regexp.Regexp
	prefix    string // the literal text every match starts with
}

// Match reports whether s is in the namespace. Like other servers, the
// regex is anchored at the start only: "@_irc_" covers "@_irc_bob:hs".
func (n Namespace) Match(s string) bool { return n.re.MatchString(s) }

// registrationFile is the YAML form. Unknown keys are allowed: tools
// write their own (Complement writes push_ephemeral).
type registrationFile struct {
	ID              *string `yaml:"id"`
	URL             *string `yaml:"url"`
	ASToken         string  `yaml:"as_token"`
	HSToken         string  `yaml:"hs_token"`
	SenderLocalpart string  `yaml:"sender_localpart"`
	RateLimited     *bool   `yaml:"rate_limited"`
	Protocols       []string
	Namespaces      struct {
		Users   []namespaceFile `yaml:"users"`
		Aliases []namespaceFile `yaml:"aliases"`
		Rooms   []namespaceFile `yaml:"rooms"`
	} `yaml:"namespaces"`
	ReceiveEphemeral bool `yaml:"receive_ephemeral"`
	MSC2409          bool `yaml:"de.sorunome.msc2409.push_ephemeral"`
	PushEphemeral    bool `yaml:"push_ephemeral"`
	MSC3202          bool `yaml:"org.matrix.msc3202"`
	MSC4190          bool `yaml:"io.element.msc4190"`
}

type namespaceFile struct {
	Exclusive bool   `yaml:"exclusive"`
	Regex     string `yaml:"regex"`
}

// validLocalpart is the spec's grammar of new user ids' localparts.
var validLocalpart = regexp.MustCompile(`^[a-z0-9._=\-/+]{1,255}$`)

// Load reads the registration files (a pattern with *, ? or [ names the
// files it matches, none being fine: Complement's directory may be empty)
// and checks them alone and together.
func Load(patterns []string, serverName string) ([]*Registration, error) {
	var regs []*Registration
	for _, p := range patterns {
		files := []string{p}
		if strings.ContainsAny(p, "*?[") {
			var err error
			if files, err = filepath.Glob(p); err != nil {
				return nil, fmt.Errorf("appservices.config_files: %q: %w", p, err)
			}
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("appservices.config_files: %w", err)
			}
			reg, err := Parse(data, serverName)
			if err != nil {
				return nil, fmt.Errorf("appservice registration %s: %w", f, err)
			}
			reg.File = f
			regs = append(regs, reg)
		}
	}
	if err := checkTogether(regs); err != nil {
		return nil, err
	}
	return regs, nil
}

// Parse decodes and checks one registration file.
func Parse(data []byte, serverName string) (*Registration, error) {
	var f registrationFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a YAML registration: %w", err)
	}
	var errs []error
	r := &Registration{ASToken: f.ASToken, HSToken: f.HSToken, SenderLocalpart: f.SenderLocalpart, RateLimited: true,
		Protocols: f.Protocols, Ephemeral: f.ReceiveEphemeral || f.MSC2409 || f.PushEphemeral, MSC3202: f.MSC3202, MSC4190: f.MSC4190}
	if f.ID == nil || *f.ID == "" {
		errs = append(errs, errors.New("id must be set"))
	} else {
		r.ID = *f.ID
	}
	if f.URL != nil && *f.URL != "" {
		u, err := url.Parse(*f.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("url must be an http(s) URL or null, not %q", *f.URL))
		}
		r.URL = strings.TrimSuffix(*f.URL, "/")
	}
	if f.RateLimited != nil {
		r.RateLimited = *f.RateLimited
	}
	if r.ASToken == "" || r.HSToken == "" {
		errs = append(errs, errors.New("as_token and hs_token must be set"))
	} else if r.ASToken == r.HSToken {
		errs = append(errs, errors.New("as_token and hs_token must differ"))
	}
	if !validLocalpart.MatchString(r.SenderLocalpart) {
		errs = append(errs, fmt.Errorf("sender_localpart must be a user id localpart (a-z, 0-9, ._=-/+), not %q", r.SenderLocalpart))
	}
	r.Sender = "@" + r.SenderLocalpart + ":" + serverName
	for _, kind := range []struct {
		name string
		in   []namespaceFile
		out  *[]Namespace
	}{{"users", f.Namespaces.Users, &r.Users}, {"aliases", f.Namespaces.Aliases, &r.Aliases}, {"rooms", f.Namespaces.Rooms, &r.Rooms}} {
		for i, n := range kind.in {
			ns, err := compileNamespace(n)
			if err != nil {
				errs = append(errs, fmt.Errorf("namespaces.%s[%d]: %w", kind.name, i, err))
				continue
			}
			*kind.out = append(*kind.out, ns)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

func compileNamespace(n namespaceFile) (Namespace, error) {
	if n.Regex == "" {
		return Namespace{}, errors.New("regex must be set")
	}
	re, err := regexp.Compile(`^(?:` + n.Regex + `)`)
	if err != nil {
		return Namespace{}, fmt.Errorf("regex %q: %w", n.Regex, err)
	}
	ns := Namespace{Exclusive: n.Exclusive, Regex: n.Regex, re: re}
	if p, err := syntax.Parse(n.Regex, syntax.Perl); err == nil {
		ns.prefix = literalPrefix(p)
	}
	return ns, nil
}

// literalPrefix is the literal text at the start of every match of a
// parsed regex ("@_irc_" of "@_irc_.*:hs").
func literalPrefix(re *syntax.Regexp) string {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase == 0 {
			return string(re.Rune)
		}
	case syntax.OpConcat:
		var b strings.Builder
		for _, sub := range re.Sub {
			if sub.Op == syntax.OpBeginText || sub.Op == syntax.OpBeginLine {
				continue
			}
			p := literalPrefix(sub)
			b.WriteString(p)
			if sub.Op != syntax.OpLiteral || p == "" {
				break
			}
		}
		return b.String()
	case syntax.OpCapture:
		return literalPrefix(re.Sub[0])
	}
	return ""
}

// Check checks registrations together as Load does: the server calls it
// again once its own services (the alert bot's) are added to the files'.
func Check(regs []*Registration) error { return checkTogether(regs) }

// checkTogether enforces what the spec asks of several services: unique
// ids and tokens, and no two services claiming the same things
// exclusively. Regexes cannot be compared in general; two exclusive
// namespaces overlap here when one matches the other's literal prefix
// (every id the other covers starts with it), which catches equal
// regexes and one namespace nested in another ("@_irc_.*" and
// "@_irc_bridge_.*"). A service's sender in another's exclusive user
// namespace is refused too.
func checkTogether(regs []*Registration) error {
	var errs []error
	ids, tokens := map[string]string{}, map[string]string{}
	for _, r := range regs {
		if f, dup := ids[r.ID]; dup {
			errs = append(errs, fmt.Errorf("appservice id %q is used by %s and %s", r.ID, f, r.File))
		}
		ids[r.ID] = r.File
		for _, t := range []string{r.ASToken, r.HSToken} {
			if f, dup := tokens[t]; dup {
				errs = append(errs, fmt.Errorf("appservice %q (%s) reuses a token of %s: every as_token and hs_token must be unique", r.ID, r.File, f))
			}
			tokens[t] = r.File
		}
	}
	for i, a := range regs {
		for _, b := range regs[i+1:] {
			for _, kind := range []struct {
				name string
				a, b []Namespace
			}{{"users", a.Users, b.Users}, {"aliases", a.Aliases, b.Aliases}, {"rooms", a.Rooms, b.Rooms}} {
				for _, na := range kind.a {
					for _, nb := range kind.b {
						if na.Exclusive && nb.Exclusive && overlap(na, nb) {
							errs = append(errs, fmt.Errorf("appservices %q and %q both claim exclusive %s namespaces that overlap (%q, %q)",
								a.ID, b.ID, kind.name, na.Regex, nb.Regex))
						}
					}
				}
			}
			for _, pair := range [][2]*Registration{{a, b}, {b, a}} {
				for _, n := range pair[1].Users {
					if n.Exclusive && n.Match(pair[0].Sender) {
						errs = append(errs, fmt.Errorf("appservice %q's sender %s is in appservice %q's exclusive namespace %q",
							pair[0].ID, pair[0].Sender, pair[1].ID, n.Regex))
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

func overlap(a, b Namespace) bool {
	return a.Regex == b.Regex || (b.prefix != "" && a.Match(b.prefix)) || (a.prefix != "" && b.Match(a.prefix))
}
