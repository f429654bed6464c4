package appservice

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = `id: irc
url: http://127.0.0.1:9000
as_token: as-irc
hs_token: hs-irc
sender_localpart: _irc_bot
namespaces:
  users: [{exclusive: true, regex: "@_irc_.*"}]
  aliases: [{exclusive: false, regex: "#_irc_.*"}]
`

func write(t *testing.T, dir, name, text string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseRegistration(t *testing.T) {
	r, err := Parse([]byte(good+"rate_limited: false\nde.sorunome.msc2409.push_ephemeral: true\npush_ephemeral: true\n"), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if r.Sender != "@_irc_bot:example.org" || r.RateLimited || !r.Ephemeral || r.URL != "http://127.0.0.1:9000" {
		t.Fatalf("parsed %+v", r)
	}
	if !r.IsInterestedInUser("@_irc_bob:example.org") || r.IsInterestedInUser("@bob:example.org") || r.IsInterestedInUser("@x_irc_bob:example.org") {
		t.Fatal("user namespace: anchored at the start")
	}
	null, err := Parse([]byte(strings.Replace(good, "url: http://127.0.0.1:9000", "url: null", 1)), "example.org")
	if err != nil || null.URL != "" {
		t.Fatalf("url: null: %v %q", err, null.URL)
	}
}

func TestParseRegistrationRefusals(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"bad regex", `"@_irc_.*"`, `"@_irc_(.*"`, "namespaces.users[0]: regex"},
		{"no id", "id: irc\n", "", "id must be set"},
		{"no as_token", "as_token: as-irc\n", "", "as_token and hs_token must be set"},
		{"same tokens", "hs_token: hs-irc", "hs_token: as-irc", "must differ"},
		{"bad sender", "_irc_bot", "IRC Bot", "sender_localpart"},
		{"bad url", "http://127.0.0.1:9000", "ftp://x", "url must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(strings.Replace(good, tc.from, tc.to, 1)), "example.org")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadTogether(t *testing.T) {
	other := func(id, as, hs, sender, users string) string {
		return "id: " + id + "\nurl: null\nas_token: " + as + "\nhs_token: " + hs + "\nsender_localpart: " + sender +
			"\nnamespaces:\n  users: [{exclusive: true, regex: \"" + users + "\"}]\n"
	}
	for _, tc := range []struct{ name, second, want string }{
		{"fine", other("slack", "as-slack", "hs-slack", "_slack_bot", "@_slack_.*"), ""},
		{"duplicate id", other("irc", "as-slack", "hs-slack", "_slack_bot", "@_slack_.*"), "appservice id \"irc\" is used"},
		{"duplicate token", other("slack", "as-irc", "hs-slack", "_slack_bot", "@_slack_.*"), "reuses a token"},
		{"equal namespaces", other("slack", "as-slack", "hs-slack", "_slack_bot", "@_irc_.*"), "overlap"},
		{"nested namespace", other("slack", "as-slack", "hs-slack", "_slack_bot", "@_irc_bridge_.*"), "overlap"},
		{"sender in another's namespace", other("slack", "as-slack", "hs-slack", "_irc_slackbot", "@_slack_.*"), "exclusive namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "a.yaml", good)
			write(t, dir, "b.yaml", tc.second)
			regs, err := Load([]string{filepath.Join(dir, "*.yaml")}, "example.org")
			if tc.want == "" {
				if err != nil || len(regs) != 2 {
					t.Fatalf("got %d, %v", len(regs), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if regs, err := Load([]string{filepath.Join(t.TempDir(), "*.yaml")}, "example.org"); err != nil || len(regs) != 0 {
		t.Fatalf("empty pattern: %d %v", len(regs), err)
	}
	if _, err := Load([]string{"/nonexistent/irc.yaml"}, "example.org"); err == nil {
		t.Fatal("a missing file must be an error")
	}
}

// Complement writes its blueprints' services so (internal/docker/builder.go).
func TestParseComplementRegistration(t *testing.T) {
	text := "id: my_as_id\nhs_token: 2d\nas_token: 3e\nurl: 'http://localhost:9000'\nsender_localpart: the-bridge-user\nrate_limited: false\n" +
		"de.sorunome.msc2409.push_ephemeral: false\npush_ephemeral: false\norg.matrix.msc3202: false\nnamespaces:\n  users:\n" +
		"    - exclusive: false\n      regex: .*\n  rooms: []\n  aliases: []\n"
	r, err := Parse([]byte(text), "hs1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Sender != "@the-bridge-user:hs1" || r.RateLimited || !r.IsInterestedInUser("@alice:hs1") {
		t.Fatalf("parsed %+v", r)
	}
}
