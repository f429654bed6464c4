package sso

import (
	"testing"

	"luxchat/internal/config"
)

// The embedded web client gets its login token without a confirmation
// page; nothing else on the server's origin does.
func TestOwnWebClientWhitelisted(t *testing.T) {
	cfg := config.Default()
	cfg.PublicBaseURL = "https://chat.example.lu"
	s := &Service{cfg: cfg}
	for raw, want := range map[string]bool{
		"https://chat.example.lu/":                        true,
		"https://chat.example.lu":                         true,
		"https://chat.example.lu/room/!a:chat.example.lu": true,
		"https://chat.example.lu/_matrix/media/v3/x":      false,
		"https://chat.example.lu/x/../_matrix/client/":    false,
		"https://chat.example.lu/.well-known/matrix/x":    false,
		"http://chat.example.lu/":                         false,
		"https://chat.example.lu.evil.example/":           false,
		"https://user@chat.example.lu/":                   false,
		"https://other.example.lu/":                       false,
		"element://vector/webapp/":                        false,
	} {
		if got := s.whitelisted(raw); got != want {
			t.Errorf("%s: whitelisted %v, want %v", raw, got, want)
		}
	}
	cfg.Web.Path = "/chat/"
	if !s.whitelisted("https://chat.example.lu/chat/") || !s.whitelisted("https://chat.example.lu/chat") || s.whitelisted("https://chat.example.lu/") || s.whitelisted("https://chat.example.lu/chatter") {
		t.Error("web.path /chat/: wrong pages whitelisted")
	}
	cfg.Web.Enabled = false
	if s.whitelisted("https://chat.example.lu/chat/") {
		t.Error("web.enabled false: the client's page is still whitelisted")
	}
}
