package webhooks

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"luxchat/internal/config"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/ratelimit"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Service makes, checks and serves incoming webhooks. It is safe for
// concurrent use: the notifications of one hook are handled one at a
// time (locks), so that two of the same alert cannot both post it.
type Service struct {
	store     *store.Store
	rooms     *rooms.Service
	cfg       config.Webhooks
	bot       string
	baseURL   string
	plain     Poster
	encrypted Poster             // nil: encrypted rooms are refused
	limiter   *ratelimit.Limiter // per hook
	log       *slog.Logger

	botMu sync.Mutex // serialises the bot account's creation
	// pruned is when each hook's old resolved alerts were last
	// forgotten.
	pruned sync.Map       // hook id → time.Time
	locks  [64]sync.Mutex // by hook id's hash: one notification of a hook at a time
}

// Posters are the ways the hooks post.
type Posters struct {
	// Plain posts into rooms that are not encrypted; nil: as the bot
	// through the event pipeline (RoomPoster).
	Plain Poster
	// Encrypted posts into encrypted rooms; nil: hooks cannot be made
	// for encrypted rooms, and a room that became encrypted is refused.
	Encrypted Poster
}

// New returns the webhooks service of a server; baseURL is the base of
// the hook URLs it hands out.
func New(cfg *config.Config, st *store.Store, rs *rooms.Service, posters Posters, baseURL string, log *slog.Logger) *Service {
	bot := "@" + cfg.Webhooks.BotLocalpart + ":" + cfg.ServerName
	if posters.Plain == nil {
		posters.Plain = RoomPoster{Rooms: rs, Sender: bot}
	}
	return &Service{store: st, rooms: rs, cfg: cfg.Webhooks, bot: bot, baseURL: strings.TrimRight(baseURL, "/"),
		plain: posters.Plain, encrypted: posters.Encrypted, limiter: ratelimit.New(cfg.Webhooks.RatePerSecond, cfg.Webhooks.RateBurst), log: log}
}

// BaseURL is where the hooks are served, as the configuration says
// (webhooks.public_url, listen.hooks, public_base_url, listen.client).
func BaseURL(cfg *config.Config) string {
	switch {
	case cfg.Webhooks.PublicURL != "":
		return cfg.Webhooks.PublicURL
	case cfg.Listen.Hooks != "":
		return "http://" + cfg.Listen.Hooks
	case cfg.PublicBaseURL != "":
		return cfg.PublicBaseURL
	}
	return "http://" + cfg.Listen.Client
}

// PathPrefix is where a hook's URL path starts; the rest is its token.
const PathPrefix = "/_luxchat/hooks/"

// BotUserID is the account the hooks post as.
func (s *Service) BotUserID() string { return s.bot }

// Hook is a hook as the admin API shows it.
type Hook struct {
	ID        string `json:"id"`
	RoomID    string `json:"room_id"`
	Name      string `json:"name"`
	CreatedBy string `json:"created_by"`
	CreatedTS int64  `json:"created_ts"`
	RotatedTS int64  `json:"rotated_ts"`
	Revoked   bool   `json:"revoked"`
	RevokedTS int64  `json:"revoked_ts,omitempty"`
	// URL is the secret URL; only create and rotate return it.
	URL string `json:"url,omitempty"`
}

func hookOf(w *store.Webhook) Hook {
	return Hook{ID: w.ID, RoomID: w.RoomID, Name: w.Name, CreatedBy: w.CreatedBy, CreatedTS: w.CreatedTS, RotatedTS: w.RotatedTS,
		Revoked: w.RevokedTS.Valid, RevokedTS: w.RevokedTS.Int64}
}

// Create makes a hook that posts into roomID. The bot joins the room
// first: an invite-only room must have invited it, and it must be allowed
// to post messages there; otherwise Create fails and saying why.
func (s *Service) Create(ctx context.Context, roomID, name, createdBy string) (Hook, error) {
	name = strings.TrimSpace(name)
	if utf8.RuneCountInString(name) > 100 || !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\n\r") {
		return Hook{}, errcode.InvalidParam("name must be one line of at most 100 characters")
	}
	if !strings.HasPrefix(roomID, "!") || len(roomID) > 255 || !utf8.ValidString(roomID) {
		return Hook{}, errcode.InvalidParam("not a room id: %q", roomID)
	}
	if _, err := s.rooms.CurrentStateEvent(ctx, roomID, "m.room.create", ""); err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, rooms.ErrUnknownRoom) {
			return Hook{}, errcode.NotFound("room %s is not known to this server", roomID)
		}
		return Hook{}, err
	}
	encrypted, err := s.isEncrypted(ctx, roomID)
	if err != nil {
		return Hook{}, err
	}
	if encrypted && s.encrypted == nil {
		return Hook{}, errcode.Forbidden("room %s is encrypted, and this server's webhooks cannot post into encrypted rooms yet", roomID)
	}
	if err := s.ensureBot(ctx); err != nil {
		return Hook{}, err
	}
	if err := s.joinBot(ctx, roomID); err != nil {
		return Hook{}, err
	}
	if err := s.checkCanPost(ctx, roomID); err != nil {
		return Hook{}, err
	}
	id, secret, err := newCredentials()
	if err != nil {
		return Hook{}, err
	}
	now := time.Now().UnixMilli()
	w := store.Webhook{ID: id, RoomID: roomID, Name: name, SecretHash: hashSecret(secret), CreatedBy: createdBy, CreatedTS: now, RotatedTS: now}
	if err := s.store.CreateWebhook(ctx, w); err != nil {
		return Hook{}, err
	}
	h := hookOf(&w)
	h.URL = s.url(id, secret)
	s.log.Info("webhook created", "hook", id, "room", roomID, "by", createdBy)
	return h, nil
}

// List returns every hook, the revoked ones too.
func (s *Service) List(ctx context.Context) ([]Hook, error) {
	ws, err := s.store.Webhooks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Hook, 0, len(ws))
	for i := range ws {
		out = append(out, hookOf(&ws[i]))
	}
	return out, nil
}

// Rotate gives a hook a new secret URL; the old one stops working at once.
func (s *Service) Rotate(ctx context.Context, id string) (Hook, error) {
	_, secret, err := newCredentials()
	if err != nil {
		return Hook{}, err
	}
	if err := s.store.RotateWebhook(ctx, id, hashSecret(secret)); errors.Is(err, store.ErrNotFound) {
		return Hook{}, errcode.NotFound("no such webhook (or it is revoked)")
	} else if err != nil {
		return Hook{}, err
	}
	w, err := s.store.Webhook(ctx, id)
	if err != nil {
		return Hook{}, err
	}
	h := hookOf(w)
	h.URL = s.url(id, secret)
	s.log.Info("webhook secret rotated", "hook", id)
	return h, nil
}

// Revoke ends a hook for good.
func (s *Service) Revoke(ctx context.Context, id string) error {
	if err := s.store.RevokeWebhook(ctx, id); errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("no such webhook (or it is revoked already)")
	} else if err != nil {
		return err
	}
	s.log.Info("webhook revoked", "hook", id)
	return nil
}

func (s *Service) url(id, secret string) string { return s.baseURL + PathPrefix + id + "_" + secret }

// Credentials: a hook id (13 characters of base32) and a secret of 256
// bits (43 of base64url), "<id>_<secret>" in the URL.
var (
	idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	idPattern  = regexp.MustCompile(`^[a-z2-7]{13}$`)
)

const secretLen = 43

func newCredentials() (id, secret string, err error) {
	var b [8 + 32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("webhook credentials: %w", err)
	}
	return idEncoding.EncodeToString(b[:8]), base64.RawURLEncoding.EncodeToString(b[8:]), nil
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// errNoHook is every refusal of a hook URL: unknown, revoked or a wrong
// secret look the same.
func errNoHook() error { return errcode.NotFound("no such hook") }

// dummyHash is compared with when there is no hook, so that an unknown
// id costs what a wrong secret does.
var dummyHash = hashSecret("")

// Authenticate returns the hook a URL token names, if its secret is
// right; M_NOT_FOUND otherwise, whatever the reason.
func (s *Service) Authenticate(ctx context.Context, token string) (*store.Webhook, error) {
	id, secret, ok := strings.Cut(token, "_")
	if !ok || !idPattern.MatchString(id) || len(secret) != secretLen {
		return nil, errNoHook()
	}
	w, err := s.store.Webhook(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	want := dummyHash
	if w != nil && !w.RevokedTS.Valid {
		want = w.SecretHash
	}
	got := hashSecret(secret)
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 || w == nil || w.RevokedTS.Valid {
		return nil, errNoHook()
	}
	return w, nil
}

// Take takes a token of the hook's bucket: 0, or how long until one is
// there.
func (s *Service) Take(hookID string) time.Duration { return s.limiter.Take(hookID) }

// Result is what a notification became.
type Result struct {
	Format    string   `json:"format"`
	EventIDs  []string `json:"event_ids"` // messages posted and edits made
	Collapsed int      `json:"collapsed"` // alerts left out: nothing changed
}

// maxMessages bounds the messages one notification posts or edits; the
// rest of its alerts are counted in one more message.
const maxMessages = 50

// resolvedKept is how long a resolved alert's message is remembered: a
// repeat of its resolution within that time is left out.
const resolvedKept = 7 * 24 * time.Hour

// pruneEvery is how often a hook's notifications forget its resolved
// alerts older than resolvedKept: not at every one, which is a write.
const pruneEvery = 10 * time.Minute

// Deliver posts what a notification body says into the hook's room.
func (s *Service) Deliver(ctx context.Context, w *store.Webhook, body []byte) (*Result, error) {
	n, err := Parse(body)
	if err != nil {
		return nil, err
	}
	poster, err := s.posterFor(ctx, w.RoomID)
	if err != nil {
		return nil, err
	}
	res := &Result{Format: n.Format, EventIDs: []string{}}
	if n.Format == FormatGeneric {
		id, err := poster.Post(ctx, w.RoomID, "m.room.message", renderGeneric(n).content(s.cfg.MsgType))
		if err != nil {
			return nil, postError(err)
		}
		res.EventIDs = append(res.EventIDs, id)
		return res, nil
	}
	lock := &s.locks[lockIndex(w.ID)]
	lock.Lock()
	defer lock.Unlock()
	if last, ok := s.pruned.Load(w.ID); !ok || time.Since(last.(time.Time)) > pruneEvery {
		if err := s.store.PruneWebhookAlerts(ctx, w.ID, time.Now().Add(-resolvedKept).UnixMilli()); err != nil {
			return nil, err
		}
		s.pruned.Store(w.ID, time.Now())
	}
	// One message per alert; the same alert twice in a notification is
	// one.
	seen := map[string]bool{}
	alerts := make([]*Alert, 0, len(n.Alerts))
	keys := make([]string, 0, len(n.Alerts))
	for i := range n.Alerts {
		k := n.Alerts[i].Key()
		if !seen[k] {
			seen[k] = true
			alerts = append(alerts, &n.Alerts[i])
			keys = append(keys, k)
		}
	}
	known, err := s.store.WebhookAlerts(ctx, w.ID, keys)
	if err != nil {
		return nil, err
	}
	sent, left := 0, 0
	for i, a := range alerts {
		if sent >= maxMessages {
			left++
			continue
		}
		ids, posted, err := s.deliverAlert(ctx, poster, w, n, a, keys[i], known)
		if err != nil {
			return nil, err
		}
		if !posted {
			res.Collapsed++
			continue
		}
		sent++
		res.EventIDs = append(res.EventIDs, ids...)
	}
	if left += n.Truncated; left > 0 {
		m := renderOverflow(n, sent, left)
		key := "overflow:" + n.GroupKey
		if k, ok := known[key]; ok && k.Digest == m.digest() {
			res.Collapsed++
		} else {
			id, err := poster.Post(ctx, w.RoomID, "m.room.message", m.content(s.cfg.MsgType))
			if err != nil {
				return nil, postError(err)
			}
			res.EventIDs = append(res.EventIDs, id)
			if err := s.store.PutWebhookAlert(ctx, store.WebhookAlert{HookID: w.ID, AlertKey: clipKey(key), GroupKey: clipKey(n.GroupKey), EventID: id,
				Status: "firing", Digest: m.digest(), UpdatedTS: time.Now().UnixMilli()}); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// deliverAlert posts, edits or leaves out one alert:
//   - new (or firing again after it resolved): a new message;
//   - the same status and what it shows unchanged: nothing (collapsed);
//   - still firing, something changed (annotations, values): its message
//     is edited in place;
//   - resolved after firing: its message is edited to the resolved form
//     and answered, since an edit does not notify.
func (s *Service) deliverAlert(ctx context.Context, poster Poster, w *store.Webhook, n *Notification, a *Alert, key string, known map[string]store.WebhookAlert) ([]string, bool, error) {
	m := renderAlert(a, n)
	digest := m.digest()
	prev, ok := known[key]
	rec := store.WebhookAlert{HookID: w.ID, AlertKey: clipKey(key), GroupKey: clipKey(n.GroupKey), Status: a.Status, Digest: digest, UpdatedTS: time.Now().UnixMilli()}
	var ids []string
	switch {
	case ok && prev.Status == a.Status && prev.Digest == digest:
		return nil, false, nil
	case ok && prev.Status == "firing" && a.Status == "firing",
		ok && prev.Status == "resolved" && a.Status == "resolved":
		id, err := poster.Post(ctx, w.RoomID, "m.room.message", m.editContent(s.cfg.MsgType, prev.EventID))
		if err != nil {
			return nil, false, postError(err)
		}
		rec.EventID, ids = prev.EventID, []string{id}
	case ok && prev.Status == "firing" && a.Status == "resolved":
		edit, err := poster.Post(ctx, w.RoomID, "m.room.message", m.editContent(s.cfg.MsgType, prev.EventID))
		if err != nil {
			return nil, false, postError(err)
		}
		reply, err := poster.Post(ctx, w.RoomID, "m.room.message", renderResolvedReply(a).replyContent(s.cfg.MsgType, prev.EventID))
		if err != nil {
			return nil, false, postError(err)
		}
		rec.EventID, ids = prev.EventID, []string{edit, reply}
	default: // new, or firing again
		id, err := poster.Post(ctx, w.RoomID, "m.room.message", m.content(s.cfg.MsgType))
		if err != nil {
			return nil, false, postError(err)
		}
		rec.EventID, ids = id, []string{id}
	}
	if err := s.store.PutWebhookAlert(ctx, rec); err != nil {
		return nil, false, err
	}
	return ids, true, nil
}

// clipKey bounds a stored key (a group key may be long).
func clipKey(k string) string {
	if len(k) <= 512 {
		return k
	}
	h := sha256.Sum256([]byte(k))
	return k[:64] + "…" + hex.EncodeToString(h[:])
}

func lockIndex(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % 64)
}

// posterFor picks the Poster for a room: an encrypted room needs the
// encrypting one.
func (s *Service) posterFor(ctx context.Context, roomID string) (Poster, error) {
	enc, err := s.isEncrypted(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if !enc {
		return s.plain, nil
	}
	if s.encrypted == nil {
		return nil, errcode.Forbidden("the hook's room is encrypted, and this server's webhooks cannot post into encrypted rooms yet")
	}
	return s.encrypted, nil
}

func (s *Service) isEncrypted(ctx context.Context, roomID string) (bool, error) {
	_, err := s.rooms.CurrentStateEvent(ctx, roomID, "m.room.encryption", "")
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// postError keeps a refusal of the room (the bot was kicked, its power
// lowered) as it is and turns other failures into a 503, which senders
// such as Alertmanager retry.
func postError(err error) error {
	if _, ok := errcode.As(err); ok {
		return err
	}
	return (&errcode.Error{Code: "M_UNKNOWN", Status: 503, Message: "the alert could not be posted; try again"}).Wrap(err)
}

// ensureBot creates the bot's account on first use, without a password.
func (s *Service) ensureBot(ctx context.Context) error {
	s.botMu.Lock()
	defer s.botMu.Unlock()
	if u, err := s.store.GetUser(ctx, s.bot); err == nil {
		if u.PasswordHash != "" {
			return errcode.Unknown("the webhooks bot %s is an ordinary account: set another webhooks.bot_localpart", s.bot)
		}
		if u.Deactivated {
			return errcode.Forbidden("the webhooks bot %s is deactivated", s.bot)
		}
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		return tx.CreateUser(ctx, store.User{UserID: s.bot, DisplayName: sql.NullString{String: s.cfg.BotDisplayName, Valid: s.cfg.BotDisplayName != ""},
			UserType: sql.NullString{String: "bot", Valid: true}})
	})
	if errors.Is(err, store.ErrExists) {
		return nil
	}
	return err
}

// joinBot makes the bot a member of the room, unless it is one.
func (s *Service) joinBot(ctx context.Context, roomID string) error {
	m, err := s.store.GetMembership(ctx, roomID, s.bot)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if m != nil && m.Membership == "join" {
		return nil
	}
	if m != nil && m.Membership == "ban" {
		return errcode.Forbidden("the webhooks bot %s is banned from room %s: unban and invite it first", s.bot, roomID)
	}
	_, err = s.rooms.ChangeMembership(ctx, rooms.MemberChange{RoomID: roomID, Sender: s.bot, Target: s.bot, Membership: "join"})
	if err != nil {
		if e, ok := errcode.As(err); ok {
			return errcode.Forbidden("the webhooks bot %s cannot join room %s (%s: %s): invite it to the room first", s.bot, roomID, e.Code, e.Message)
		}
		return fmt.Errorf("join webhooks bot: %w", err)
	}
	return nil
}

// checkCanPost refuses a room where the bot's power level is below what
// messages need.
func (s *Service) checkCanPost(ctx context.Context, roomID string) error {
	ev, err := s.rooms.CurrentStateEvent(ctx, roomID, "m.room.power_levels", "")
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var pl struct {
		Users         map[string]json.Number `json:"users"`
		UsersDefault  json.Number            `json:"users_default"`
		Events        map[string]json.Number `json:"events"`
		EventsDefault json.Number            `json:"events_default"`
	}
	_ = json.Unmarshal(ev.Content, &pl)
	level := func(n json.Number, ok bool) int64 {
		if !ok {
			return 0
		}
		v, _ := n.Int64()
		return v
	}
	need := level(pl.EventsDefault, pl.EventsDefault != "")
	if n, ok := pl.Events["m.room.message"]; ok {
		need = level(n, true)
	}
	have := level(pl.UsersDefault, pl.UsersDefault != "")
	if n, ok := pl.Users[s.bot]; ok {
		have = level(n, true)
	}
	if have < need {
		return errcode.Forbidden("the webhooks bot %s has power level %d in room %s, and messages need %d: raise its level first", s.bot, have, roomID, need)
	}
	return nil
}
