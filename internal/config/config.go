// Package config holds luxchat's typed configuration: defaults, loading from
// YAML (unknown keys are an error), validation, and the commented template
// printed by `luxchat generate-config`. A *Config is passed down explicitly;
// there is no global.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration of one server.
type Config struct {
	ServerName   string       `yaml:"server_name"`
	Listen       Listen       `yaml:"listen"`
	DataDir      string       `yaml:"data_dir"`
	Database     string       `yaml:"database"`
	Registration Registration `yaml:"registration"`
	RateLimits   RateLimits   `yaml:"rate_limits"`
	Limits       Limits       `yaml:"limits"`
	Encryption   Encryption   `yaml:"encryption"`
	Media        Media        `yaml:"media"`
	Log          Log          `yaml:"log"`
	Auth         Auth         `yaml:"auth"`
	// PublicBaseURL is advertised in /.well-known/matrix/client; defaults
	// to http://<listen.client>.
	PublicBaseURL string `yaml:"public_base_url"`
}

// Listen holds listener addresses.
type Listen struct {
	Client  string `yaml:"client"`
	Metrics string `yaml:"metrics"` // empty: no metrics listener
}

// Registration controls who may create accounts.
type Registration struct {
	Mode         string `yaml:"mode"` // closed | token | open
	SharedSecret string `yaml:"shared_secret"`
}

// Registration modes.
const (
	RegistrationClosed = "closed"
	RegistrationToken  = "token"
	RegistrationOpen   = "open"
)

// RateLimits configures per-user (or per-IP when anonymous) request limits.
type RateLimits struct {
	Enabled   bool    `yaml:"enabled"`
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Limits bounds request sizes and long polls.
type Limits struct {
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
}

// Encryption holds end-to-end-encryption defaults for new rooms.
type Encryption struct {
	// Default makes private_chat and trusted_private_chat rooms encrypted.
	Default bool `yaml:"default"`
}

// Media configures the media repository.
type Media struct {
	// MaxUploadBytes is the largest file accepted (advertised as m.upload.size).
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
	// QuotaBytes bounds the total size of one user's uploads; 0: no quota.
	QuotaBytes int64 `yaml:"quota_bytes"`
	// LegacyUnauthenticated is "frozen" (the spec's freeze: media uploaded
	// while frozen is served only by the authenticated endpoints) or "open".
	LegacyUnauthenticated string `yaml:"legacy_unauthenticated"`
	// MaxPendingUploads bounds a user's unexpired POST /create reservations.
	MaxPendingUploads int `yaml:"max_pending_uploads"`
	// UnusedExpiry is how long a reservation waits for its content.
	UnusedExpiry Duration `yaml:"unused_expiry"`
}

// Legacy unauthenticated media modes.
const (
	MediaLegacyFrozen = "frozen"
	MediaLegacyOpen   = "open"
)

// Log configures structured logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Auth holds session and password settings.
type Auth struct {
	// AccessTokenLifetime enables refresh tokens when > 0 and the client
	// asks for them.
	AccessTokenLifetime Duration `yaml:"access_token_lifetime"`
	// PasswordMinLength is the shortest password accepted.
	PasswordMinLength int `yaml:"password_min_length"`
	// Argon2 memory in KiB for password hashing (argon2id).
	PasswordHashMemoryKiB uint32 `yaml:"password_hash_memory_kib"`
	PasswordHashTime      uint32 `yaml:"password_hash_time"`
}

// Duration is a time.Duration written like "5m" in YAML.
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Default returns the configuration used when no file is given.
func Default() *Config {
	return &Config{
		ServerName:   "localhost",
		Listen:       Listen{Client: "127.0.0.1:8008"},
		DataDir:      "./luxchat-data",
		Database:     "sqlite",
		Registration: Registration{Mode: RegistrationClosed},
		RateLimits:   RateLimits{Enabled: true, PerSecond: 10, Burst: 50},
		Limits:       Limits{MaxRequestBytes: 1 << 20},
		Encryption:   Encryption{Default: true},
		Media: Media{
			MaxUploadBytes:        100 << 20,
			LegacyUnauthenticated: MediaLegacyFrozen,
			MaxPendingUploads:     10,
			UnusedExpiry:          Duration{24 * time.Hour},
		},
		Log: Log{Level: "info", Format: "text"},
		Auth: Auth{
			AccessTokenLifetime: Duration{0},
			PasswordMinLength:   8,
			// One of OWASP's equivalent argon2id settings (9 MiB, 4
			// passes): half the memory of 19 MiB/2 for the same cost to
			// an attacker, which keeps registration bursts small.
			PasswordHashMemoryKiB: 9 * 1024,
			PasswordHashTime:      4,
		},
	}
}

// Load reads a YAML file over the defaults. Unknown keys are an error that
// names the key.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data)
}

// envRef matches ${NAME} references, which Parse replaces by the
// environment variable's value (container images pass the server name so).
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Parse decodes YAML over the defaults and validates the result.
func Parse(data []byte) (*Config, error) {
	data = envRef.ReplaceAllFunc(data, func(m []byte) []byte {
		return []byte(os.Getenv(string(envRef.FindSubmatch(m)[1])))
	})
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: %s", unknownKeyMessage(err))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// unknownKeyMessage turns yaml.v3's "field x not found in type config.Y"
// into a message that names the key as the operator wrote it.
func unknownKeyMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "field "); i >= 0 && strings.Contains(msg, " not found in type") {
		rest := msg[i+len("field "):]
		key := rest[:strings.Index(rest, " not found")]
		line := ""
		if j := strings.Index(msg, "line "); j >= 0 {
			line = " (" + strings.SplitN(msg[j:], ":", 2)[0] + ")"
		}
		return fmt.Sprintf("unknown key %q%s", key, line)
	}
	return msg
}

// Validate checks values that YAML types cannot.
func (c *Config) Validate() error {
	var errs []error
	if c.ServerName == "" {
		errs = append(errs, errors.New("server_name must be set"))
	}
	switch c.Registration.Mode {
	case RegistrationClosed, RegistrationToken, RegistrationOpen:
	default:
		errs = append(errs, fmt.Errorf("registration.mode must be closed, token or open, not %q", c.Registration.Mode))
	}
	if c.Database != "sqlite" && !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") {
		errs = append(errs, fmt.Errorf("database must be \"sqlite\" or a postgres:// DSN"))
	}
	if c.Listen.Client == "" {
		errs = append(errs, errors.New("listen.client must be set"))
	}
	if c.RateLimits.Enabled && (c.RateLimits.PerSecond <= 0 || c.RateLimits.Burst <= 0) {
		errs = append(errs, errors.New("rate_limits.per_second and rate_limits.burst must be positive"))
	}
	if c.Limits.MaxRequestBytes < 65536 {
		errs = append(errs, errors.New("limits.max_request_bytes must be at least 65536"))
	}
	if c.Media.MaxUploadBytes < 1 || c.Media.QuotaBytes < 0 || c.Media.MaxPendingUploads < 1 || c.Media.UnusedExpiry.Duration < time.Minute {
		errs = append(errs, errors.New("media.max_upload_bytes and media.max_pending_uploads must be positive, media.quota_bytes >= 0, media.unused_expiry >= 1m"))
	}
	switch c.Media.LegacyUnauthenticated {
	case MediaLegacyFrozen, MediaLegacyOpen:
	default:
		errs = append(errs, fmt.Errorf("media.legacy_unauthenticated must be frozen or open, not %q", c.Media.LegacyUnauthenticated))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level must be debug, info, warn or error"))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format must be text or json"))
	}
	if c.Auth.PasswordHashMemoryKiB < 1024 || c.Auth.PasswordHashTime < 1 {
		errs = append(errs, errors.New("auth.password_hash_memory_kib must be >= 1024 and auth.password_hash_time >= 1"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// PostgresDSN returns the DSN when the database is PostgreSQL.
func (c *Config) PostgresDSN() (string, bool) {
	if c.Database == "sqlite" {
		return "", false
	}
	return c.Database, true
}

// Template is the commented configuration printed by generate-config.
const Template = `# luxchat configuration. Every key is optional; the values shown are the defaults.

# The public name of this homeserver: the part after ':' in user ids.
server_name: localhost

# Base URL that clients use, advertised in /.well-known/matrix/client.
# Empty: http://<listen.client>.
public_base_url: ""

listen:
  # Client-Server API (plain HTTP; put a TLS reverse proxy in front in production).
  client: 127.0.0.1:8008
  # Prometheus metrics at /metrics; empty disables the listener.
  metrics: ""

# Where the SQLite database and the signing key live.
data_dir: ./luxchat-data

# "sqlite" (embedded, in data_dir) or a PostgreSQL DSN such as
# postgres://luxchat:secret@127.0.0.1:5432/luxchat?sslmode=disable
database: sqlite

registration:
  # closed: only "luxchat user add" and the admin API create accounts.
  # token:  registration needs a token from "luxchat token create".
  # open:   anyone may register (m.login.dummy).
  mode: closed
  # Enables POST /_synapse/admin/v1/register (nonce + HMAC) when set.
  shared_secret: ""

rate_limits:
  enabled: true
  # Sustained requests per second per user (per IP when not logged in).
  per_second: 10
  burst: 50

limits:
  # Largest request body accepted by the client API.
  max_request_bytes: 1048576

encryption:
  # New private_chat and trusted_private_chat rooms are end-to-end encrypted.
  default: true

media:
  # Largest upload in bytes (100 MiB).
  max_upload_bytes: 104857600
  # Total bytes one user may upload; 0: no quota.
  quota_bytes: 0
  # The deprecated unauthenticated /_matrix/media/v3/download|thumbnail
  # endpoints. frozen: media uploaded while frozen is served only by the
  # authenticated /_matrix/client/v1/media endpoints (404 on the old ones),
  # as the spec asks of servers since Matrix 1.12. open: serve it on both.
  legacy_unauthenticated: frozen
  # Unexpired POST /_matrix/media/v1/create reservations one user may hold.
  max_pending_uploads: 10
  # How long a reservation waits for its content.
  unused_expiry: 24h0m0s
  # Files are encrypted at rest under keys wrapped by a master key kept
  # in data_dir/media.key (created on first start) or, when set, in the
  # LUXCHAT_MEDIA_KEY environment variable. "luxchat media rotate-key"
  # replaces it.

log:
  level: info   # debug | info | warn | error
  format: text  # text | json

auth:
  # Lifetime of access tokens for clients that ask for refresh tokens
  # ("0s": access tokens do not expire).
  access_token_lifetime: 0s
  password_min_length: 8
  # argon2id cost (OWASP: 9 MiB with 4 passes ~ 19 MiB with 2).
  password_hash_memory_kib: 9216
  password_hash_time: 4
`
