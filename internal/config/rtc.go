package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// RTC configures MatrixRTC: the media server (SFU) that group calls use,
// advertised to clients (MSC4143), and the built-in token service that
// lets a room's members into it (MSC4195, the lk-jwt-service contract).
type RTC struct {
	LiveKit LiveKit `yaml:"livekit"`
}

// LiveKit locates a LiveKit SFU and holds the API key pair it shares with
// us. With url, key and secret unset, no transport is advertised and the
// token service is off.
type LiveKit struct {
	// URL is the SFU's WebSocket URL as clients reach it (wss://…).
	URL string `yaml:"url"`
	// Key and Secret are one of the API key pairs of the SFU's keys:
	// tokens are signed with Secret and name Key as their issuer. The
	// _file variants read them from a file (surrounding space dropped).
	Key        string `yaml:"key"`
	KeyFile    string `yaml:"key_file"`
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// ServiceURL is the token service clients are sent to; empty:
	// {public_base_url}/_luxchat/livekit/jwt, the one built in. It may
	// name an external lk-jwt-service instead.
	ServiceURL string `yaml:"service_url"`
}

// LiveKitServicePath is where the built-in token service answers on the
// client listener.
const LiveKitServicePath = "/_luxchat/livekit/jwt"

// Enabled reports whether a LiveKit SFU is configured.
func (l LiveKit) Enabled() bool {
	return l.URL != "" || l.Key != "" || l.KeyFile != "" || l.Secret != "" || l.SecretFile != ""
}

// ClientBaseURL is the base URL clients use: public_base_url, or
// http://<listen.client> when unset.
func (c *Config) ClientBaseURL() string {
	if c.PublicBaseURL != "" {
		return strings.TrimSuffix(c.PublicBaseURL, "/")
	}
	return "http://" + c.Listen.Client
}

// LiveKitServiceURL is the token service URL advertised to clients.
func (c *Config) LiveKitServiceURL() string {
	if s := c.RTC.LiveKit.ServiceURL; s != "" {
		return strings.TrimSuffix(s, "/")
	}
	return c.ClientBaseURL() + LiveKitServicePath
}

// Credentials returns the API key and secret, read from their
// files when so configured.
func (l LiveKit) Credentials() (key, secret string, err error) {
	key, err = valueOrFile("rtc.livekit.key", l.Key, l.KeyFile)
	if err != nil {
		return "", "", err
	}
	secret, err = valueOrFile("rtc.livekit.secret", l.Secret, l.SecretFile)
	return key, secret, err
}

func valueOrFile(name, value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_file: %w", name, err)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("%s_file %s is empty", name, file)
	}
	return v, nil
}

func (c *Config) validateRTC() []error {
	l := c.RTC.LiveKit
	if !l.Enabled() {
		if l.ServiceURL != "" {
			return []error{errors.New("rtc.livekit.service_url needs rtc.livekit.url, key and secret")}
		}
		return nil
	}
	var errs []error
	if u, err := url.Parse(l.URL); err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
		errs = append(errs, fmt.Errorf("rtc.livekit.url must be the SFU's ws:// or wss:// URL, not %q", l.URL))
	}
	if (l.Key == "") == (l.KeyFile == "") {
		errs = append(errs, errors.New("rtc.livekit: set one of key and key_file"))
	}
	if (l.Secret == "") == (l.SecretFile == "") {
		errs = append(errs, errors.New("rtc.livekit: set one of secret and secret_file"))
	}
	if len(errs) == 0 {
		if _, secret, err := l.Credentials(); err != nil {
			errs = append(errs, err)
		} else if len(secret) < 32 {
			// LiveKit itself refuses secrets shorter than 32 characters.
			errs = append(errs, errors.New("rtc.livekit.secret must be at least 32 characters"))
		}
	}
	if s := l.ServiceURL; s != "" {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("rtc.livekit.service_url must be an http(s) URL, not %q", s))
		}
	}
	return errs
}
