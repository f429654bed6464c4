// Package config holds luxchat's typed configuration: defaults, loading from
// YAML (unknown keys are an error), validation, and the commented template
// printed by `luxchat generate-config`. A *Config is passed down explicitly;
// there is no global.
package config

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	pathpkg "path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"luxchat/internal/matrix/roomversion"
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
	TLS          TLS          `yaml:"tls"`
	Federation   Federation   `yaml:"federation"`
	Directory    Directory    `yaml:"directory"`
	Profile      Profile      `yaml:"profile"`
	Push         Push         `yaml:"push"`
	// PublicBaseURL is advertised in /.well-known/matrix/client; defaults
	// to http://<listen.client>.
	PublicBaseURL string `yaml:"public_base_url"`

	// ServerNotices names the system user that sends server notices.
	ServerNotices ServerNotices `yaml:"server_notices"`

	Rooms Rooms `yaml:"rooms"`

	// Support is served at /.well-known/matrix/support.
	Support Support `yaml:"support"`

	// TURN hands out TURN credentials (/voip/turnServer) and may run the
	// embedded TURN/STUN server.
	TURN TURN `yaml:"turn"`

	// RTC configures group calls (MatrixRTC): the LiveKit SFU and its
	// token service.
	RTC RTC `yaml:"rtc"`

	// OIDC lists the upstream OpenID Connect providers (single sign-on).
	OIDC OIDC `yaml:"oidc"`
	// SSO configures the legacy single sign-on flow of the client API.
	SSO SSO `yaml:"sso"`
	// OAuth turns on the Matrix OAuth 2.0 API, this server being the
	// authorization server.
	OAuth OAuth `yaml:"oauth"`

	// DelayedEvents bounds delayed events (MSC4140).
	DelayedEvents DelayedEvents `yaml:"delayed_events"`

	// AppServices lists the application services' registration files.
	AppServices AppServices `yaml:"appservices"`

	// Web configures the embedded web client.
	Web Web `yaml:"web"`

	// Retention purges old messages (MSC1763 message retention policies).
	Retention Retention `yaml:"retention"`

	// Webhooks configures the incoming webhooks that post alerts into
	// rooms (luxchat webhook create).
	Webhooks Webhooks `yaml:"webhooks"`

	// AccountValidity locks accounts a while after their creation or last
	// renewal, until an administrator renews them.
	AccountValidity AccountValidity `yaml:"account_validity"`
}

// AccountValidity configures the accounts' validity period.
type AccountValidity struct {
	// Period after which an account created (or renewed without a date)
	// locks (M_USER_LOCKED) until an administrator renews it
	// (POST /_synapse/admin/v1/account_validity/validity); 0: accounts
	// never lock this way. Accounts created before it was set are not
	// given an end.
	Period Duration `yaml:"period"`
}

// Web configures the web client embedded in the binary
// (internal/webclient), served on the client listener.
type Web struct {
	// Enabled serves the client; false leaves only the APIs.
	Enabled bool `yaml:"enabled"`
	// Path is where the client is served, "/" or a path such as "/chat/";
	// it cannot be under /_matrix/, /_synapse/, /_luxchat/ or
	// /.well-known/, which belong to the APIs.
	Path string `yaml:"path"`
}

// Webhooks configures incoming webhooks (package webhooks): the bot
// account that posts, the message type, and the limits of one hook.
type Webhooks struct {
	// BotLocalpart is the server-owned account the hooks post as,
	// @<bot_localpart>:<server_name>; it is created without a password
	// when the first hook is made, and joins each hook's room then.
	BotLocalpart string `yaml:"bot_localpart"`
	// BotDisplayName is the bot's display name.
	BotDisplayName string `yaml:"bot_display_name"`
	// MsgType is the msgtype of the messages: m.notice (what bots send;
	// clients' default push rules do not notify for it) or m.text.
	MsgType string `yaml:"msgtype"`
	// PublicURL is the base of the hook URLs that create and rotate
	// print; empty: http://<listen.hooks> when that is set, else
	// public_base_url, else http://<listen.client>.
	PublicURL string `yaml:"public_url"`
	// MaxBodyBytes bounds one notification's body (413 M_TOO_LARGE).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// RatePerSecond and RateBurst are each hook's token bucket: a
	// notification takes a token, and one finding none is answered 429
	// M_LIMIT_EXCEEDED with retry_after_ms.
	RatePerSecond float64 `yaml:"rate_per_second"`
	RateBurst     int     `yaml:"rate_burst"`
	// Encryption: the bot's device (internal/alertbot) encrypts
	// (Olm/Megolm) what it posts into encrypted rooms. Off, hooks into
	// encrypted rooms are refused.
	Encryption bool `yaml:"encryption"`
}

// Retention configures message retention policies (MSC1763): how long
// rooms' non-state events are kept before the purge job deletes them.
type Retention struct {
	// Enabled runs the purge job every PurgeInterval (and once at start).
	Enabled bool `yaml:"enabled"`
	// DefaultPolicy applies to rooms without an m.room.retention state
	// event; a zero MaxLifetime keeps their messages forever.
	DefaultPolicy RetentionPolicy `yaml:"default_policy"`
	// AllowedLifetimeMin and AllowedLifetimeMax bound the max_lifetime of
	// every policy (the rooms' and the default); zero: no bound.
	AllowedLifetimeMin Lifetime `yaml:"allowed_lifetime_min"`
	AllowedLifetimeMax Lifetime `yaml:"allowed_lifetime_max"`
	// PurgeInterval is how often the purge job runs.
	PurgeInterval Duration `yaml:"purge_interval"`
}

// RetentionPolicy is a retention policy: events older than MaxLifetime
// are purged, never before MinLifetime. Zero: not set.
type RetentionPolicy struct {
	MinLifetime Lifetime `yaml:"min_lifetime"`
	MaxLifetime Lifetime `yaml:"max_lifetime"`
}

// Lifetime is a duration written as a Go duration ("36h"), with the
// units s, m, h, d (days), w (weeks) and y (365 days) as in "30d", or as
// a number of milliseconds; zero (or empty) means not set.
type Lifetime struct{ time.Duration }

// ParseLifetime parses a lifetime (see Lifetime).
func ParseLifetime(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > math.MaxInt64/int64(time.Millisecond) {
			return 0, fmt.Errorf("lifetime %q out of range", s)
		}
		return time.Duration(n) * time.Millisecond, nil
	}
	units := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'y': 365 * 24 * time.Hour}
	if u, ok := units[s[len(s)-1]]; ok {
		n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64/int64(u) {
			return 0, fmt.Errorf("lifetime %q: want a number of days (d), weeks (w) or years (y), a Go duration or milliseconds", s)
		}
		return time.Duration(n) * u, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("lifetime %q: want a duration such as 12h, 30d, 4w, 1y, or milliseconds", s)
	}
	return d, nil
}

// UnmarshalYAML parses a lifetime.
func (l *Lifetime) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	d, err := ParseLifetime(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	l.Duration = d
	return nil
}

// MarshalYAML writes the lifetime as a Go duration.
func (l Lifetime) MarshalYAML() (any, error) { return l.String(), nil }

// AppServices configures the Application Service API.
type AppServices struct {
	// ConfigFiles are the registration files (YAML) of the application
	// services; a pattern with *, ? or [ takes every file it matches
	// (possibly none). They are read and checked at start.
	ConfigFiles []string `yaml:"config_files"`
}

// DelayedEvents bounds the events users schedule to be sent later.
type DelayedEvents struct {
	// MaxDelay is the longest delay a user may ask for.
	MaxDelay Duration `yaml:"max_delay"`
	// MaxPerUser is how many delayed events a user may have scheduled at
	// once; 0 disables delayed events.
	MaxPerUser int `yaml:"max_per_user"`
}

// TURN configures calls' relay: the credentials /voip/turnServer issues
// (the TURN REST API's time-limited HMAC scheme, which coturn's
// use-auth-secret checks too) and the embedded TURN server.
type TURN struct {
	// Enabled runs the embedded TURN/STUN server on listen.turn.
	Enabled bool `yaml:"enabled"`
	// SharedSecret signs credentials; SharedSecretFile names a file
	// holding it instead (surrounding white space ignored).
	SharedSecret     string `yaml:"shared_secret"`
	SharedSecretFile string `yaml:"shared_secret_file"`
	// URIs are handed to clients as they are (an external coturn, or the
	// embedded server under a DNS name); empty with Enabled: derived from
	// ExternalIP (or public_base_url's host) and listen.turn's port.
	URIs []string `yaml:"uris"`
	// TTL is how long issued credentials stay valid. Allocations are
	// refreshed with the credentials they were made with, so a call
	// cannot outlast them.
	TTL Duration `yaml:"ttl"`
	// RelayPorts is the UDP port range of relayed addresses, "min-max".
	RelayPorts string `yaml:"relay_ports"`
	// ExternalIP is the relay address advertised to clients (the public
	// address when the server sits behind NAT).
	ExternalIP string `yaml:"external_ip"`
	// ExternalIPv6, when set, turns IPv6 on: the server also listens on
	// IPv6 (listen.turn's IPv6 address, or [::] at its port) and a
	// client that comes over IPv6 gets an IPv6 relay, advertised at this
	// address.
	ExternalIPv6 string `yaml:"external_ipv6"`
	// TLSCertFile and TLSKeyFile (PEM) are the certificate of the
	// turns: listener (listen.turns).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// AllowedPeerNetworks lists CIDRs of non-public addresses that may
	// still be relayed to; empty: public addresses only.
	AllowedPeerNetworks []string `yaml:"allowed_peer_networks"`
	// MaxAllocationsPerUser and MaxAllocations bound the allocations of
	// one user and of the whole server.
	MaxAllocationsPerUser int `yaml:"max_allocations_per_user"`
	MaxAllocations        int `yaml:"max_allocations"`
	// MaxBitrate bounds the traffic of one allocation, both directions
	// together, in bits per second; packets over it are dropped. 0: no
	// bound.
	MaxBitrate int64 `yaml:"max_bitrate"`
}

// Secret returns the TURN shared secret, read from SharedSecretFile when
// that is set.
func (t TURN) Secret() (string, error) {
	if t.SharedSecretFile == "" {
		return t.SharedSecret, nil
	}
	data, err := os.ReadFile(t.SharedSecretFile)
	if err != nil {
		return "", fmt.Errorf("turn.shared_secret_file: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// RelayPortRange parses RelayPorts ("49152-65535").
func (t TURN) RelayPortRange() (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(t.RelayPorts, "-")
	if !ok {
		return 0, 0, fmt.Errorf("turn.relay_ports must be a range such as 49152-65535, not %q", t.RelayPorts)
	}
	l, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil || l < 1 || h < l {
		return 0, 0, fmt.Errorf("turn.relay_ports must be a range of ports min-max with 1 <= min <= max <= 65535, not %q", t.RelayPorts)
	}
	return uint16(l), uint16(h), nil
}

// Rooms holds room defaults.
type Rooms struct {
	// DefaultVersion is the version of rooms created without one. The
	// spec (v1.16) asks servers to keep 11 for a while: clients released
	// before version 12 misread its creators' power.
	DefaultVersion string `yaml:"default_version"`
}

// Support is how users reach the server's administrators
// (/.well-known/matrix/support); with neither field set that URL is 404.
type Support struct {
	Contacts    []SupportContact `yaml:"contacts" json:"contacts,omitempty"`
	SupportPage string           `yaml:"support_page" json:"support_page,omitempty"`
}

// SupportContact is one way to reach an administrator: a Matrix user id,
// an email address or both, and a role (m.role.admin, m.role.security or
// a namespaced role of one's own).
type SupportContact struct {
	MatrixID     string `yaml:"matrix_id" json:"matrix_id,omitempty"`
	EmailAddress string `yaml:"email_address" json:"email_address,omitempty"`
	Role         string `yaml:"role" json:"role"`
}

// Listen holds listener addresses.
type Listen struct {
	Client  string `yaml:"client"`
	Metrics string `yaml:"metrics"` // empty: no metrics listener
	// Federation is the HTTPS address of the Server-Server API; empty: no
	// federation listener.
	Federation string `yaml:"federation"`
	// TURN is the UDP and TCP address of the embedded TURN server (used
	// when turn.enabled is set).
	TURN string `yaml:"turn"`
	// Hooks, when set, is the plain HTTP address of the incoming
	// webhooks (POST /_luxchat/hooks/{id}), which are then not served
	// on the client listener; empty: they are served there.
	Hooks string `yaml:"hooks"`
	// Admin, when set, is the plain-HTTP address that alone serves the
	// server administration API (/_synapse/admin/..., /_luxchat/admin/...),
	// so that operators can keep it off the public network; the client
	// listener then answers those paths with 404 M_UNRECOGNIZED. The
	// spec's own admin endpoints (/_matrix/client/v1/admin/...) stay on
	// the client listener. Empty: the client listener serves everything.
	Admin string `yaml:"admin"`
	// TURNS is the TURN-over-TLS address (turns:, usually port 5349);
	// empty: none.
	TURNS string `yaml:"turns"`
}

// TLS holds the certificate of the federation listener.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CACertFile and CAKeyFile, when set instead of cert_file and
	// key_file, name a CA with which the server issues itself a fresh
	// certificate for its server name at each start (private PKIs, test
	// federations such as Complement's).
	CACertFile string `yaml:"ca_cert_file"`
	CAKeyFile  string `yaml:"ca_key_file"`
}

// Federation configures the Server-Server API, inbound and outbound.
type Federation struct {
	// Enabled allows federation; it only listens when listen.federation
	// is set too.
	Enabled bool `yaml:"enabled"`
	// TrustedCAFile is a PEM bundle trusted, besides the system roots,
	// for the certificates of other servers.
	TrustedCAFile string `yaml:"trusted_ca_file"`
	// AllowedServers lists the server names we federate with; '*' matches
	// any run of characters ("*.gouv.test"). Empty: every server.
	AllowedServers []string `yaml:"allowed_servers"`
	// DenyNetworks lists CIDRs that outbound requests never connect to.
	DenyNetworks []string `yaml:"deny_networks"`
	// WellKnownServer, when set, is served as m.server in
	// /.well-known/matrix/server on the client listener.
	WellKnownServer string `yaml:"well_known_server"`
	// RetryBaseDelay is the wait before retrying a destination after a
	// failed transaction; it doubles with each failure up to
	// RetryMaxDelay. A destination that contacts us is retried at once.
	RetryBaseDelay time.Duration `yaml:"retry_base_delay"`
	RetryMaxDelay  time.Duration `yaml:"retry_max_delay"`
}

// DefaultDenyNetworks are the networks outbound federation never contacts
// unless the operator says otherwise: loopback, RFC 1918, link-local,
// CGNAT, and IPv6 loopback, ULA and link-local.
var DefaultDenyNetworks = []string{
	"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
	"169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8",
	"::1/128", "fc00::/7", "fe80::/10", "::/128",
}

// Directory configures the published room directory and the user
// directory.
type Directory struct {
	// RoomPublication says who may publish rooms: "everyone" (a joined
	// member allowed to send m.room.canonical_alias, or a server admin)
	// or "admins" (server admins only).
	RoomPublication string `yaml:"room_publication"`
	// DefaultVisible lists in the user directory the local users who did
	// not choose with lu.luxchat.directory account data.
	DefaultVisible bool `yaml:"default_visible"`
}

// Room publication policies.
const (
	PublicationEveryone = "everyone"
	PublicationAdmins   = "admins"
)

// Profile configures who may read profiles.
type Profile struct {
	// RequireSharedRoom answers 403 to profile look-ups of users who share
	// no room with the requester and are not listed in the user directory.
	RequireSharedRoom bool `yaml:"require_shared_room"`
}

// Push configures push notifications to push gateways.
type Push struct {
	// Enabled evaluates push rules for every event (notification counts,
	// /notifications) and sends pushes to the gateways of HTTP pushers.
	Enabled bool `yaml:"enabled"`
	// GatewayTimeout bounds one request to a push gateway.
	GatewayTimeout Duration `yaml:"gateway_timeout"`
	// DenyNetworks lists CIDRs that pushes never connect to.
	DenyNetworks []string `yaml:"deny_networks"`
}

// ServerNotices configures the user that sends server notices ("luxchat
// notice send"); its account is created, without a password, on the first
// notice.
type ServerNotices struct {
	Localpart   string `yaml:"localpart"`
	DisplayName string `yaml:"display_name"`
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
	// TrustedProxies lists the CIDRs of reverse proxies whose
	// X-Forwarded-For header names the client; any other peer is the
	// client itself, whatever the header says.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// FailedLogins throttles password guessing; it applies whether or
	// not Enabled is set.
	FailedLogins FailedLogins `yaml:"failed_logins"`
}

// FailedLogins throttles wrong passwords per account and per client
// address: after the free failures each further failure doubles the wait
// before the next attempt (from BaseDelay up to MaxDelay). A successful
// login clears the account's count.
type FailedLogins struct {
	Enabled bool `yaml:"enabled"`
	// AccountFailures and AddressFailures are the wrong passwords allowed
	// before delays start, for one account and from one client address.
	AccountFailures int      `yaml:"account_failures"`
	AddressFailures int      `yaml:"address_failures"`
	BaseDelay       Duration `yaml:"base_delay"`
	MaxDelay        Duration `yaml:"max_delay"`
}

// Limits bounds request sizes and long polls.
type Limits struct {
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// BodyReadTimeout is how long a request body may take to start
	// arriving; past it the body must keep arriving at BodyMinRate bytes
	// per second on average, or the request fails with 408 and the
	// connection is closed. Stalled bodies so cannot hold connections.
	BodyReadTimeout Duration `yaml:"body_read_timeout"`
	BodyMinRate     int64    `yaml:"body_min_rate"`
	// ParkLongPolls lets /sync long polls that find nothing wait outside
	// net/http (httputil.Park): no goroutine and no buffers per waiting
	// client, a connected client costing a few KiB instead of ~35. On by
	// default; off, a long poll waits on its connection's goroutine.
	ParkLongPolls bool `yaml:"park_long_polls"`
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
	// Store is where sealed blobs live: "fs" (data_dir/media) or "s3".
	Store string `yaml:"store"`
	// S3 locates the bucket when Store is "s3".
	S3 MediaS3 `yaml:"s3"`
	// URLPreview configures GET /_matrix/client/v1/media/preview_url.
	URLPreview URLPreview `yaml:"url_preview"`
}

// MediaS3 locates an S3-compatible bucket.
type MediaS3 struct {
	Endpoint  string `yaml:"endpoint"` // host:port
	Bucket    string `yaml:"bucket"`
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	Region    string `yaml:"region"`
	UseTLS    bool   `yaml:"use_tls"`
}

// URLPreview configures URL previews.
type URLPreview struct {
	// Enabled lets the server fetch public http(s) URLs for its users.
	Enabled bool `yaml:"enabled"`
	// AllowNetworks lists CIDRs of non-public addresses previews may
	// still reach (an intranet's web servers); empty: public ones only.
	AllowNetworks []string `yaml:"allow_networks"`
}

// Media blob stores.
const (
	MediaStoreFS = "fs"
	MediaStoreS3 = "s3"
)

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
	// PasswordHashConcurrency bounds the password hashes computed at once
	// (0: one per core); each holds PasswordHashMemoryKiB of memory.
	PasswordHashConcurrency int `yaml:"password_hash_concurrency"`
	// PasswordLogin offers password login and the password stage of
	// user-interactive auth; off, users log in through oidc.providers.
	PasswordLogin bool `yaml:"password_login"`
	// LoginTokenLifetime bounds the single-use login tokens (m.login.token)
	// that single sign-on and POST /login/get_token hand out.
	LoginTokenLifetime Duration `yaml:"login_token_lifetime"`
	// GetLoginToken enables POST /_matrix/client/v1/login/get_token
	// (logging in another device from this one; capability
	// m.get_login_token).
	GetLoginToken bool `yaml:"get_login_token"`
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
		AppServices:  AppServices{ConfigFiles: []string{}},
		Listen:       Listen{Client: "127.0.0.1:8008", TURN: "0.0.0.0:3478"},
		DataDir:      "./luxchat-data",
		Database:     "sqlite",
		Registration: Registration{Mode: RegistrationClosed},
		RateLimits: RateLimits{Enabled: true, PerSecond: 10, Burst: 50, TrustedProxies: []string{},
			FailedLogins: FailedLogins{Enabled: true, AccountFailures: 5, AddressFailures: 20,
				BaseDelay: Duration{2 * time.Second}, MaxDelay: Duration{15 * time.Minute}}},
		Limits:     Limits{MaxRequestBytes: 1 << 20, BodyReadTimeout: Duration{30 * time.Second}, BodyMinRate: 1024, ParkLongPolls: true},
		Encryption: Encryption{Default: true},
		Media: Media{
			MaxUploadBytes:        100 << 20,
			LegacyUnauthenticated: MediaLegacyFrozen,
			MaxPendingUploads:     10,
			UnusedExpiry:          Duration{24 * time.Hour},
			Store:                 MediaStoreFS,
			S3:                    MediaS3{UseTLS: true},
			URLPreview:            URLPreview{AllowNetworks: []string{}},
		},
		Log:       Log{Level: "info", Format: "text"},
		Directory: Directory{RoomPublication: PublicationEveryone},
		Push: Push{
			Enabled:        true,
			GatewayTimeout: Duration{10 * time.Second},
			DenyNetworks:   append([]string(nil), DefaultDenyNetworks...),
		},
		Federation: Federation{
			Enabled:        true,
			AllowedServers: []string{},
			DenyNetworks:   append([]string(nil), DefaultDenyNetworks...),
			RetryBaseDelay: 10 * time.Second,
			RetryMaxDelay:  time.Hour,
		},
		Rooms: Rooms{DefaultVersion: roomversion.Default},
		ServerNotices: ServerNotices{
			Localpart:   "notices",
			DisplayName: "Server Notices",
		},
		Support: Support{Contacts: []SupportContact{}},
		TURN: TURN{
			URIs:                  []string{},
			TTL:                   Duration{24 * time.Hour},
			RelayPorts:            "49152-65535",
			AllowedPeerNetworks:   []string{},
			MaxAllocationsPerUser: 10,
			MaxAllocations:        1000,
			MaxBitrate:            20_000_000,
		},
		DelayedEvents: DelayedEvents{MaxDelay: Duration{24 * time.Hour}, MaxPerUser: 100},
		Retention:     Retention{PurgeInterval: Duration{time.Hour}},
		Webhooks: Webhooks{BotLocalpart: "alerts", BotDisplayName: "Alerts", MsgType: "m.notice",
			MaxBodyBytes: 512 << 10, RatePerSecond: 1, RateBurst: 20, Encryption: true},
		Auth: Auth{
			AccessTokenLifetime: Duration{0},
			PasswordMinLength:   8,
			// One of OWASP's equivalent argon2id settings (9 MiB, 4
			// passes): half the memory of 19 MiB/2 for the same cost to
			// an attacker, which keeps registration bursts small.
			PasswordHashMemoryKiB: 9 * 1024,
			PasswordHashTime:      4,
			PasswordLogin:         true,
			LoginTokenLifetime:    Duration{2 * time.Minute},
		},
		OIDC: OIDC{Providers: []OIDCProvider{}},
		SSO:  SSO{ClientWhitelist: []string{}},
		Web:  Web{Enabled: true, Path: "/"},
	}
}

// validateRetention checks the retention section.
func (c *Config) validateRetention() []error {
	r := c.Retention
	var errs []error
	if r.PurgeInterval.Duration < time.Second {
		errs = append(errs, errors.New("retention.purge_interval must be at least 1s"))
	}
	if lo, hi := r.AllowedLifetimeMin.Duration, r.AllowedLifetimeMax.Duration; lo > 0 && hi > 0 && lo > hi {
		errs = append(errs, errors.New("retention.allowed_lifetime_min must not exceed retention.allowed_lifetime_max"))
	}
	if lo, hi := r.DefaultPolicy.MinLifetime.Duration, r.DefaultPolicy.MaxLifetime.Duration; lo > 0 && hi > 0 && lo > hi {
		errs = append(errs, errors.New("retention.default_policy.min_lifetime must not exceed its max_lifetime"))
	}
	return errs
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
	if c.DelayedEvents.MaxDelay.Duration < time.Millisecond || c.DelayedEvents.MaxPerUser < 0 {
		errs = append(errs, errors.New("delayed_events.max_delay must be at least 1ms and delayed_events.max_per_user at least 0"))
	}
	errs = append(errs, c.validateRetention()...)
	if c.Database != "sqlite" && !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") {
		errs = append(errs, fmt.Errorf("database must be \"sqlite\" or a postgres:// DSN"))
	}
	if c.Listen.Client == "" {
		errs = append(errs, errors.New("listen.client must be set"))
	}
	if c.AccountValidity.Period.Duration < 0 {
		errs = append(errs, errors.New("account_validity.period must not be negative"))
	}
	if c.Listen.Admin != "" && c.Listen.Admin == c.Listen.Client {
		errs = append(errs, errors.New("listen.admin must differ from listen.client (leave it empty to serve the admin API on the client listener)"))
	}
	if c.RateLimits.Enabled && (c.RateLimits.PerSecond <= 0 || c.RateLimits.Burst <= 0) {
		errs = append(errs, errors.New("rate_limits.per_second and rate_limits.burst must be positive"))
	}
	if c.Limits.MaxRequestBytes < 65536 {
		errs = append(errs, errors.New("limits.max_request_bytes must be at least 65536"))
	}
	if c.Limits.BodyReadTimeout.Duration <= 0 || c.Limits.BodyMinRate < 1 {
		errs = append(errs, errors.New("limits.body_read_timeout and limits.body_min_rate must be positive"))
	}
	errs = append(errs, c.validateRateLimits()...)
	if c.Media.MaxUploadBytes < 1 || c.Media.QuotaBytes < 0 || c.Media.MaxPendingUploads < 1 || c.Media.UnusedExpiry.Duration < time.Minute {
		errs = append(errs, errors.New("media.max_upload_bytes and media.max_pending_uploads must be positive, media.quota_bytes >= 0, media.unused_expiry >= 1m"))
	}
	switch c.Media.LegacyUnauthenticated {
	case MediaLegacyFrozen, MediaLegacyOpen:
	default:
		errs = append(errs, fmt.Errorf("media.legacy_unauthenticated must be frozen or open, not %q", c.Media.LegacyUnauthenticated))
	}
	switch c.Media.Store {
	case MediaStoreFS:
	case MediaStoreS3:
		if c.Media.S3.Endpoint == "" || c.Media.S3.Bucket == "" {
			errs = append(errs, errors.New("media.s3.endpoint and media.s3.bucket must be set when media.store is s3"))
		}
	default:
		errs = append(errs, fmt.Errorf("media.store must be fs or s3, not %q", c.Media.Store))
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
	if c.Auth.PasswordHashConcurrency < 0 {
		errs = append(errs, errors.New("auth.password_hash_concurrency must be >= 0 (0: one per core)"))
	}
	switch c.Directory.RoomPublication {
	case PublicationEveryone, PublicationAdmins:
	default:
		errs = append(errs, fmt.Errorf("directory.room_publication must be everyone or admins, not %q", c.Directory.RoomPublication))
	}
	if _, ok := roomversion.Get(c.Rooms.DefaultVersion); !ok {
		errs = append(errs, fmt.Errorf("rooms.default_version: room version %q is not supported", c.Rooms.DefaultVersion))
	}
	if c.Webhooks.BotLocalpart == c.ServerNotices.Localpart {
		errs = append(errs, fmt.Errorf("webhooks.bot_localpart and server_notices.localpart must differ (both %q)", c.Webhooks.BotLocalpart))
	}
	if !validLocalpart.MatchString(c.ServerNotices.Localpart) {
		errs = append(errs, fmt.Errorf("server_notices.localpart must be a user id localpart (1-64 of a-z, 0-9, ._=-/+), not %q", c.ServerNotices.Localpart))
	}
	errs = append(errs, c.validateWebhooks()...)
	errs = append(errs, c.validateFederation()...)
	errs = append(errs, c.validatePush()...)
	errs = append(errs, c.validateSupport()...)
	errs = append(errs, c.validateTURN()...)
	errs = append(errs, c.validateRTC()...)
	errs = append(errs, c.validateSSO()...)
	if err := ValidWebPath(c.Web.Path); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// APIPrefixes are the path prefixes of the APIs, which the web client
// never serves.
var APIPrefixes = []string{"/_matrix/", "/_synapse/", "/_luxchat/", "/.well-known/"}

// ValidWebPath checks web.path: an absolute, clean path that is not under
// an API prefix. A trailing slash is optional ("/chat" is "/chat/").
func ValidWebPath(p string) error {
	bad := func(why string) error { return fmt.Errorf("web.path %q %s", p, why) }
	if !strings.HasPrefix(p, "/") {
		return bad("must start with /")
	}
	if strings.ContainsAny(p, "?#%\\ \t\r\n\"'<>") {
		return bad("may contain only plain path characters")
	}
	trimmed := strings.TrimSuffix(p, "/")
	if trimmed != "" && pathpkg.Clean(trimmed) != trimmed {
		return bad("must be a clean path (no //, . or ..)")
	}
	for _, api := range APIPrefixes {
		if strings.HasPrefix(trimmed+"/", api) {
			return bad("is under " + api + ", which belongs to the APIs")
		}
	}
	return nil
}

// validLocalpart matches the characters the spec allows in new user ids.
var validLocalpart = regexp.MustCompile(`^[a-z0-9._=\-/+]{1,64}$`)

func (c *Config) validateWebhooks() []error {
	var errs []error
	w := c.Webhooks
	if !validLocalpart.MatchString(w.BotLocalpart) {
		errs = append(errs, fmt.Errorf("webhooks.bot_localpart must be a user id localpart (1-64 of a-z, 0-9, ._=-/+), not %q", w.BotLocalpart))
	}
	if w.MsgType != "m.notice" && w.MsgType != "m.text" {
		errs = append(errs, fmt.Errorf("webhooks.msgtype must be m.notice or m.text, not %q", w.MsgType))
	}
	if w.MaxBodyBytes < 1024 {
		errs = append(errs, errors.New("webhooks.max_body_bytes must be at least 1024"))
	}
	if w.RatePerSecond <= 0 || w.RateBurst < 1 {
		errs = append(errs, errors.New("webhooks.rate_per_second must be positive and webhooks.rate_burst at least 1"))
	}
	if w.PublicURL != "" {
		if u, err := url.Parse(w.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("webhooks.public_url must be an http(s) URL, not %q", w.PublicURL))
		}
	}
	if c.Listen.Hooks != "" {
		if _, _, err := net.SplitHostPort(c.Listen.Hooks); err != nil {
			errs = append(errs, fmt.Errorf("listen.hooks must be host:port, not %q", c.Listen.Hooks))
		} else if c.Listen.Hooks == c.Listen.Client {
			errs = append(errs, errors.New("listen.hooks must differ from listen.client (leave it empty to serve the hooks there)"))
		}
	}
	return errs
}

func (c *Config) validateFederation() []error {
	var errs []error
	own := c.TLS.CertFile != "" && c.TLS.KeyFile != ""
	issued := c.TLS.CACertFile != "" && c.TLS.CAKeyFile != ""
	if c.Listen.Federation != "" && c.Federation.Enabled && !own && !issued {
		errs = append(errs, errors.New("listen.federation needs tls.cert_file and tls.key_file (or tls.ca_cert_file and tls.ca_key_file)"))
	}
	if own && issued {
		errs = append(errs, errors.New("tls: set either cert_file and key_file or ca_cert_file and ca_key_file"))
	}
	for _, n := range c.Federation.DenyNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			errs = append(errs, fmt.Errorf("federation.deny_networks: %q is not a CIDR", n))
		}
	}
	for _, s := range c.Federation.AllowedServers {
		if s == "" || strings.ContainsAny(s, " \t/") {
			errs = append(errs, fmt.Errorf("federation.allowed_servers: bad pattern %q", s))
		}
	}
	if w := c.Federation.WellKnownServer; w != "" && strings.ContainsAny(w, " \t/") {
		errs = append(errs, fmt.Errorf("federation.well_known_server: bad server name %q", w))
	}
	if r := c.Federation.RetryBaseDelay; r <= 0 || c.Federation.RetryMaxDelay < r {
		errs = append(errs, errors.New("federation: retry_base_delay must be positive and at most retry_max_delay"))
	}
	return errs
}

func (c *Config) validateRateLimits() []error {
	var errs []error
	for _, n := range c.RateLimits.TrustedProxies {
		if _, err := netip.ParsePrefix(n); err != nil {
			errs = append(errs, fmt.Errorf("rate_limits.trusted_proxies: %q is not a CIDR", n))
		}
	}
	if f := c.RateLimits.FailedLogins; f.Enabled {
		if f.AccountFailures < 1 || f.AddressFailures < 1 {
			errs = append(errs, errors.New("rate_limits.failed_logins.account_failures and address_failures must be at least 1"))
		}
		if f.BaseDelay.Duration <= 0 || f.MaxDelay.Duration < f.BaseDelay.Duration {
			errs = append(errs, errors.New("rate_limits.failed_logins: base_delay must be positive and at most max_delay"))
		}
	}
	return errs
}

func (c *Config) validatePush() []error {
	var errs []error
	for _, n := range c.Media.URLPreview.AllowNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			errs = append(errs, fmt.Errorf("media.url_preview.allow_networks: %q is not a CIDR", n))
		}
	}
	for _, n := range c.Push.DenyNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			errs = append(errs, fmt.Errorf("push.deny_networks: %q is not a CIDR", n))
		}
	}
	if c.Push.GatewayTimeout.Duration <= 0 {
		errs = append(errs, errors.New("push.gateway_timeout must be positive"))
	}
	return errs
}

// supportUserID and supportRole are loose shapes of a user id and of a
// namespaced identifier (m.* roles are the spec's own).
var (
	supportUserID = regexp.MustCompile(`^@[^:\s]+:[^\s]+$`)
	supportRole   = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*\.[a-z0-9_.-]+$`)
)

func (c *Config) validateSupport() []error {
	var errs []error
	for i, ct := range c.Support.Contacts {
		if ct.MatrixID == "" && ct.EmailAddress == "" {
			errs = append(errs, fmt.Errorf("support.contacts[%d]: set matrix_id, email_address or both", i))
		}
		if ct.MatrixID != "" && (!supportUserID.MatchString(ct.MatrixID) || len(ct.MatrixID) > 255) {
			errs = append(errs, fmt.Errorf("support.contacts[%d].matrix_id: %q is not a user id", i, ct.MatrixID))
		}
		if e := ct.EmailAddress; e != "" && (strings.Count(e, "@") != 1 || strings.HasPrefix(e, "@") || strings.HasSuffix(e, "@") || strings.ContainsAny(e, " \t<>")) {
			errs = append(errs, fmt.Errorf("support.contacts[%d].email_address: %q is not an email address", i, e))
		}
		switch {
		case ct.Role == "m.role.admin" || ct.Role == "m.role.security":
		case ct.Role == "" || strings.HasPrefix(ct.Role, "m.") || !supportRole.MatchString(ct.Role):
			errs = append(errs, fmt.Errorf("support.contacts[%d].role must be m.role.admin, m.role.security or a namespaced role such as org.example.role, not %q", i, ct.Role))
		}
	}
	if p := c.Support.SupportPage; p != "" {
		u, err := url.Parse(p)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("support.support_page must be an http(s) URL, not %q", p))
		}
	}
	return errs
}

func (c *Config) validateTURN() []error {
	var errs []error
	t := c.TURN
	if t.SharedSecret != "" && t.SharedSecretFile != "" {
		errs = append(errs, errors.New("turn: set either shared_secret or shared_secret_file, not both"))
	}
	secret, err := t.Secret()
	if err != nil {
		errs = append(errs, err)
	}
	if (t.Enabled || len(t.URIs) > 0) && secret == "" && err == nil {
		errs = append(errs, errors.New("turn.shared_secret (or turn.shared_secret_file) must be set when turn.enabled is true or turn.uris is set"))
	}
	for _, u := range t.URIs {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") && !strings.HasPrefix(u, "stun:") {
			errs = append(errs, fmt.Errorf("turn.uris: %q must be a turn, turns or stun URI (turn:host:port?transport=udp)", u))
		}
	}
	if t.TTL.Duration < time.Minute {
		errs = append(errs, errors.New("turn.ttl must be at least 1m"))
	}
	if _, _, err := t.RelayPortRange(); err != nil {
		errs = append(errs, err)
	}
	for _, n := range t.AllowedPeerNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			errs = append(errs, fmt.Errorf("turn.allowed_peer_networks: %q is not a CIDR", n))
		}
	}
	if t.MaxAllocationsPerUser < 1 || t.MaxAllocations < 1 || t.MaxBitrate < 0 {
		errs = append(errs, errors.New("turn.max_allocations_per_user and turn.max_allocations must be at least 1, turn.max_bitrate at least 0 (0: no bound)"))
	}
	var external netip.Addr
	if t.ExternalIP != "" {
		if external, err = netip.ParseAddr(t.ExternalIP); err != nil || external.IsUnspecified() || !external.Unmap().Is4() {
			errs = append(errs, fmt.Errorf("turn.external_ip must be an IPv4 address (the relay address clients reach; relays are IPv4), not %q", t.ExternalIP))
		}
	}
	if t.ExternalIPv6 != "" {
		if a, err := netip.ParseAddr(t.ExternalIPv6); err != nil || a.IsUnspecified() || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			errs = append(errs, fmt.Errorf("turn.external_ipv6 must be an IPv6 address (the IPv6 relay address clients reach), not %q", t.ExternalIPv6))
		}
	}
	if !t.Enabled {
		return errs
	}
	if c.Listen.TURNS != "" {
		if _, err := netip.ParseAddrPort(c.Listen.TURNS); err != nil {
			errs = append(errs, fmt.Errorf("listen.turns must be ip:port such as 0.0.0.0:5349, not %q", c.Listen.TURNS))
		}
		if t.TLSCertFile == "" || t.TLSKeyFile == "" {
			errs = append(errs, errors.New("turn.tls_cert_file and turn.tls_key_file must be set when listen.turns is"))
		} else if _, err := tls.LoadX509KeyPair(t.TLSCertFile, t.TLSKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("turn.tls_cert_file, turn.tls_key_file: %w", err))
		}
	}
	ap, err := netip.ParseAddrPort(c.Listen.TURN)
	if err != nil {
		errs = append(errs, fmt.Errorf("listen.turn must be ip:port such as 0.0.0.0:3478, not %q", c.Listen.TURN))
	} else if t.ExternalIP == "" && (ap.Addr().IsUnspecified() || !ap.Addr().Unmap().Is4()) {
		errs = append(errs, fmt.Errorf("turn.external_ip must be set when listen.turn (%s) listens on every address or on IPv6: it is the (IPv4) relay address clients are told", c.Listen.TURN))
	}
	return errs
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
  # Server-Server API (HTTPS with tls.cert_file); empty: no federation
  # listener. server_name may carry this port, e.g. example.org:8448.
  federation: ""
  # The embedded TURN/STUN server, UDP and TCP (when turn.enabled).
  turn: 0.0.0.0:3478
  # Incoming webhooks (POST /_luxchat/hooks/{id}, plain HTTP) on their own
  # address, e.g. one only the monitoring network reaches; empty: they are
  # served on the client listener.
  hooks: ""
  # The server administration API (/_synapse/admin/..., /_luxchat/admin/...)
  # on its own plain-HTTP address, e.g. 127.0.0.1:8009; the client listener
  # then refuses those paths. Empty: served on the client listener.
  admin: ""
  # TURN over TLS (turns:, with turn.tls_cert_file); empty: none.
  turns: ""

tls:
  # PEM certificate (chain) and key of the federation listener, valid for
  # the server name's host.
  cert_file: ""
  key_file: ""
  # Instead of cert_file/key_file: a CA certificate and key (PEM) with which
  # the server issues itself a certificate for its server name at each start.
  ca_cert_file: ""
  ca_key_file: ""

federation:
  # Federate with other servers (needs listen.federation to be reachable).
  enabled: true
  # PEM bundle trusted besides the system roots for other servers' certificates.
  trusted_ca_file: ""
  # Server names we federate with, '*' matching any characters, e.g.
  # ["*.gouv.test", "police.test:8448"]; empty: every server.
  allowed_servers: []
  # Networks outbound federation never connects to.
  deny_networks: [127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 100.64.0.0/10, 0.0.0.0/8, "::1/128", "fc00::/7", "fe80::/10", "::/128"]
  # Served as m.server in /.well-known/matrix/server when set (delegation,
  # e.g. "matrix.example.org:8448"); empty: 404.
  well_known_server: ""
  # After a failed transaction a destination is retried after
  # retry_base_delay, doubling up to retry_max_delay (at once when it
  # contacts us).
  retry_base_delay: 10s
  retry_max_delay: 1h

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
  # Reverse proxies (CIDRs) trusted to name the client in X-Forwarded-For,
  # e.g. ["127.0.0.1/32", "10.0.0.0/8"]. Rate limits and failed-login
  # throttling use that address; from any other peer the header is ignored.
  trusted_proxies: []
  # Password guessing: after account_failures wrong passwords for one
  # account (or address_failures from one client address) each further
  # failure doubles the wait before the next attempt, from base_delay up to
  # max_delay (429 M_LIMIT_EXCEEDED with retry_after_ms). A successful login
  # clears the account's count. Applies even when rate_limits.enabled is false.
  failed_logins:
    enabled: true
    account_failures: 5
    address_failures: 20
    base_delay: 2s
    max_delay: 15m0s

limits:
  # Largest request body accepted by the client API.
  max_request_bytes: 1048576
  # A request body must start arriving within body_read_timeout and then
  # keep up an average of body_min_rate bytes per second (uploads at any
  # usable speed pass); a stalled body fails with 408 and the connection
  # is closed. Both listeners.
  body_read_timeout: 30s
  body_min_rate: 1024
  # /sync long polls that find nothing wait outside net/http, without a
  # goroutine or buffers per connected client; false: they wait inside.
  park_long_polls: true

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
  # Where the encrypted blobs live. fs: data_dir/media. s3: the bucket
  # below on an S3-compatible server (it must exist).
  store: fs
  s3:
    endpoint: ""     # host:port, e.g. s3.example.org or 127.0.0.1:9000
    bucket: ""
    access_key: ""
    secret_key: ""   # e.g. ${LUXCHAT_S3_SECRET}
    region: ""
    use_tls: true
  url_preview:
    # GET /_matrix/client/v1/media/preview_url: the server fetches public
    # http(s) pages (never private or loopback addresses) for its users.
    enabled: false
    # Non-public networks previews may still reach (CIDRs of an intranet's
    # web servers), e.g. [10.20.0.0/16]; empty: public addresses only.
    allow_networks: []

directory:
  # Who may publish rooms in the room directory (PUT
  # /directory/list/room/{roomId}, createRoom with visibility public).
  # everyone: a joined member whose power level allows sending
  # m.room.canonical_alias (server admins always may). admins: server
  # admins only.
  room_publication: everyone
  # The user directory lists users who share a joined room with the
  # searcher, and users who opted in with the account data
  # lu.luxchat.directory {"visible": true}. true also lists users who made
  # no choice ({"visible": false} always opts out).
  default_visible: false

push:
  # Evaluate push rules for every event (notification counts in /sync,
  # GET /notifications) and send pushes to the gateways of HTTP pushers.
  enabled: true
  # Bound of one request to a push gateway (retried with back-off).
  gateway_timeout: 10s
  # Pushes never connect to these networks (pusher URLs are chosen by
  # users); remove an entry to allow a gateway inside it.
  deny_networks: [127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 100.64.0.0/10, 0.0.0.0/8, "::1/128", "fc00::/7", "fe80::/10", "::/128"]

profile:
  # Answer 403 to profile look-ups (GET /profile/...) of users who share
  # no room with the requester and are not listed in the user directory.
  require_shared_room: false

server_notices:
  # The system user that sends server notices ("luxchat notice send"),
  # @<localpart>:<server_name>; its account is created without a password
  # on the first notice. Each recipient gets one invite-only room tagged
  # m.server_notice in which only this user may post.
  localpart: notices
  display_name: Server Notices

rooms:
  # Version of rooms created without one. "12" suits a closed federation
  # whose clients all understand version 12's creators (clients released
  # before it show creators without power).
  default_version: "11"

account_validity:
  # Accounts lock (M_USER_LOCKED) this long after their creation or
  # renewal until an administrator renews them (POST
  # /_synapse/admin/v1/account_validity/validity), e.g. 8760h for a year;
  # 0s: never. Accounts that exist when it is set get no end.
  period: 0s

appservices:
  # Application services (bridges, bots): their registration files (YAML,
  # see docs/operations.md), read and checked at start. A pattern such as
  # /etc/luxchat/appservices/*.yaml takes every file it matches.
  config_files: []

webhooks:
  # Incoming webhooks for alerts ("luxchat webhook create --room ROOM"):
  # Prometheus Alertmanager, Grafana alerting or {"text", "html"} bodies
  # become messages of this bot, @<bot_localpart>:<server_name>, created
  # without a password and joined to each hook's room (invite it first to
  # an invite-only room).
  bot_localpart: alerts
  bot_display_name: Alerts
  # m.notice (what bots send; default push rules do not notify for it) or
  # m.text (notifies like a person's message).
  msgtype: m.notice
  # Base of the printed hook URLs; empty: http://<listen.hooks> when set,
  # else public_base_url, else http://<listen.client>.
  public_url: ""
  # Largest notification body (413 M_TOO_LARGE past it).
  max_body_bytes: 524288
  # Each hook's token bucket: sustained notifications per second and burst
  # (429 M_LIMIT_EXCEEDED past it).
  rate_per_second: 1
  rate_burst: 20
  # Encrypt (Olm/Megolm, with the bot's own device) what the hooks post
  # into encrypted rooms. The bot's keys are kept in the database, sealed
  # under the media master key (data_dir/media.key): whoever holds both
  # can read the rooms the bot is in. false: hooks into encrypted rooms
  # are refused.
  encryption: true

rtc:
  # Group calls (MatrixRTC, Element Call and Element X): a LiveKit SFU that
  # you run beside luxchat (see docs/operations.md). With url, key and
  # secret set, clients find it at
  # /_matrix/client/unstable/org.matrix.msc4143/rtc/transports and in
  # /.well-known/matrix/client, and the built-in token service at
  # /_luxchat/livekit/jwt lets room members into it.
  livekit:
    url: ""            # the SFU's WebSocket URL as clients reach it, e.g. wss://sfu.example.org
    key: ""            # one of the SFU's API keys (keys: in its config)
    key_file: ""       # or: a file holding it
    secret: ""         # its secret, 32 characters or more, e.g. ${LUXCHAT_LIVEKIT_SECRET}
    secret_file: ""    # or: a file holding it
    # The token service advertised to clients; empty:
    # {public_base_url}/_luxchat/livekit/jwt (built in). May point at an
    # external lk-jwt-service instead.
    service_url: ""

support:
  # Served at /.well-known/matrix/support (404 while both are empty): ways
  # to reach this server's administrators, each with a matrix_id, an
  # email_address or both, and a role (m.role.admin for anything,
  # m.role.security for sensitive reports), e.g.
  #   contacts:
  #     - {matrix_id: "@admin:example.org", email_address: admin@example.org, role: m.role.admin}
  contacts: []
  # A page with help for this server's users, e.g. https://example.org/help.
  support_page: ""

turn:
  # GET /_matrix/client/v3/voip/turnServer hands out TURN credentials of the
  # TURN REST API (username "<expiry>:<user id>", password
  # base64(HMAC-SHA1(shared_secret, username))), as coturn's
  # use-auth-secret/static-auth-secret checks them. With neither enabled
  # nor uris set it answers {} (no TURN server).
  # Run the embedded TURN/STUN server on listen.turn (UDP and TCP).
  enabled: false
  shared_secret: ""       # e.g. ${LUXCHAT_TURN_SECRET}
  shared_secret_file: ""  # or a file holding it
  # URIs handed to clients, e.g. an external coturn:
  # ["turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp"]
  # Empty with enabled: turn:<external_ip>:<listen.turn port>?transport=udp|tcp.
  uris: []
  # Lifetime of issued credentials; a call cannot outlast them.
  ttl: 24h0m0s
  # UDP ports of relayed addresses (open them in the firewall).
  relay_ports: 49152-65535
  # The relay address told to clients: this machine's public IP (behind
  # NAT, the public address forwarded to it). Required when listen.turn
  # listens on 0.0.0.0.
  external_ip: ""
  # IPv6: this machine's public IPv6 address turns it on. The server then
  # also listens on IPv6 (listen.turn's port on [::]) and clients that
  # come over IPv6 get IPv6 relays at this address.
  external_ipv6: ""
  # The certificate (PEM) of the TURN-over-TLS listener, listen.turns;
  # clients are then offered turns:<host>:<port>?transport=tcp too.
  tls_cert_file: ""
  tls_key_file: ""
  # The embedded server never relays to loopback, private, link-local,
  # multicast or unspecified addresses, except inside these CIDRs, e.g.
  # [10.20.0.0/16] when callers sit on that intranet.
  allowed_peer_networks: []
  # Allocations one user may hold at once, and all users together.
  max_allocations_per_user: 10
  max_allocations: 1000
  # Traffic of one allocation (both directions together) in bits per
  # second; packets over it are dropped. 0: no bound.
  max_bitrate: 20000000

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
  # Hashes computed at once (logins, registrations), each holding
  # password_hash_memory_kib; 0 means one per core.
  password_hash_concurrency: 0
  # false: no password login (GET /login stops listing m.login.password)
  # and user-interactive auth goes through single sign-on (m.login.sso),
  # for sectors whose users log in only through oidc.providers.
  password_login: true
  # Lifetime of the single-use login tokens (m.login.token) that single
  # sign-on and POST /_matrix/client/v1/login/get_token hand out.
  login_token_lifetime: 2m0s
  # Let a logged-in client get a login token for another device (POST
  # /_matrix/client/v1/login/get_token, behind user-interactive auth).
  get_login_token: false

oidc:
  # Upstream OpenID Connect providers (LuxID or any other) offered as
  # single sign-on (m.login.sso). Register
  # {public_base_url}/_luxchat/oidc/callback as the redirect URI at each.
  # See docs/operations.md ("Single sign-on") for every key, e.g.
  #   providers:
  #     - id: luxid
  #       name: LuxID
  #       issuer: https://login.example.lu/
  #       client_id: luxchat
  #       client_secret_file: /etc/luxchat/luxid-secret
  #       userinfo: true
  #       localpart_template: "{{ preferred_username }}"
  #       conditions:
  #         - {claim: email, suffix: "@police.etat.lu"}
  providers: []

web:
  # The web client embedded in the binary, served on listen.client at
  # path ("/" or e.g. "/chat/"; never under /_matrix/, /_synapse/,
  # /_luxchat/ or /.well-known/). It uses this server as its homeserver.
  enabled: true
  path: /

retention:
  # Message retention policies (MSC1763): when enabled, a job deletes the
  # non-state events of rooms older than their policy's max_lifetime (a
  # room's m.room.retention state event, in milliseconds, else
  # default_policy), with their media, search entries, relations and
  # notifications. State events and each room's newest events are kept.
  enabled: false
  # How often the purge job runs (it also runs at start).
  purge_interval: 1h
  # Lifetimes are durations (12h, 30d, 4w, 1y) or milliseconds.
  # default_policy: {min_lifetime: 1d, max_lifetime: 1y}
  # Bounds on every policy's max_lifetime (a room asking for less than
  # allowed_lifetime_min keeps its messages that long; one asking for more
  # than allowed_lifetime_max has them purged after it). Rooms without a
  # max_lifetime (theirs or the default's) keep their messages.
  # allowed_lifetime_min: 1d
  # allowed_lifetime_max: 1y

sso:
  # redirectUrl prefixes of clients that get their login token without a
  # confirmation page, e.g. [https://app.example.org/] (http(s) prefixes
  # end their host with a path); any other client is shown "continue to
  # <host>?" first.
  client_whitelist: []

oauth:
  # The Matrix OAuth 2.0 API (GET /_matrix/client/v1/auth_metadata):
  # clients register themselves and users log in on this server's own
  # pages (password where auth.password_login is on, a button per
  # oidc.providers entry), by the authorization code or device grant.
  # Access tokens expire after auth.access_token_lifetime when it is set.
  # Clients that find it (Element X, new Element Web) use it instead of
  # the password and SSO logins, and send users to this server's account
  # page (sessions, cross-signing resets; not yet profile, password or
  # deactivation), hence off unless chosen. See docs/operations.md
  # ("OAuth 2.0 API").
  enabled: false
`
