package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTURNValues(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"turn: {enabled: true, external_ip: 203.0.113.7}", "turn.shared_secret"},
		{"turn: {uris: ['turn:t.example.org']}", "turn.shared_secret"},
		{"turn: {shared_secret: s, uris: ['http://t.example.org']}", "must be a turn, turns or stun URI"},
		{"turn: {shared_secret: s, shared_secret_file: /x}", "either shared_secret or shared_secret_file"},
		{"turn: {shared_secret_file: /nonexistent/turn.secret}", "turn.shared_secret_file"},
		{"turn: {relay_ports: '49160'}", "turn.relay_ports"},
		{"turn: {relay_ports: '49200-49160'}", "turn.relay_ports"},
		{"turn: {relay_ports: '0-10'}", "turn.relay_ports"},
		{"turn: {relay_ports: '60000-70000'}", "turn.relay_ports"},
		{"turn: {relay_ports: 'a-b'}", "turn.relay_ports"},
		{"turn: {ttl: 10s}", "turn.ttl"},
		{"turn: {allowed_peer_networks: [10.0.0.0]}", "turn.allowed_peer_networks"},
		{"turn: {max_allocations_per_user: 0}", "max_allocations_per_user"},
		{"turn: {max_bitrate: -1}", "max_bitrate"},
		{"turn: {external_ip: turn.example.org}", "turn.external_ip"},
		{"turn: {external_ip: 0.0.0.0}", "turn.external_ip"},
		{"turn: {external_ip: '2001:db8::1'}", "turn.external_ip"},
		{"{listen: {turn: '[::1]:3478'}, turn: {enabled: true, shared_secret: s}}", "turn.external_ip must be set"},
		{"turn: {enabled: true, shared_secret: s}", "turn.external_ip must be set"},
		{"{listen: {turn: ':3478'}, turn: {enabled: true, shared_secret: s}}", "listen.turn"},
		{"{listen: {turn: 'localhost:3478'}, turn: {enabled: true, shared_secret: s}}", "listen.turn"},
		{"turn: {enable: true}", `unknown key "enable"`},
	} {
		_, err := Parse([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.in, err, c.want)
		}
	}

	file := filepath.Join(t.TempDir(), "turn.secret")
	if err := os.WriteFile(file, []byte("  from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte("listen: {turn: '10.0.0.5:3479'}\nturn: {enabled: true, shared_secret_file: " + file + ", relay_ports: 49160-49200, allowed_peer_networks: [10.20.0.0/16]}"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.TURN.Secret(); err != nil || s != "from-a-file" {
		t.Fatalf("secret %q %v", s, err)
	}
	if lo, hi, err := c.TURN.RelayPortRange(); lo != 49160 || hi != 49200 || err != nil {
		t.Fatalf("relay ports %d-%d %v", lo, hi, err)
	}
	d := Default()
	if d.Listen.TURN != "0.0.0.0:3478" || d.TURN.Enabled || d.TURN.TTL.Hours() != 24 || d.TURN.MaxAllocationsPerUser != 10 {
		t.Fatalf("defaults %+v %q", d.TURN, d.Listen.TURN)
	}
}
