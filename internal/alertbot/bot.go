package alertbot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/crypto/goolm/account"
	"maunium.net/go/mautrix/crypto/olm"

	"luxchat/internal/appservice"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/media"
	"luxchat/internal/store"
)

// AppServiceID is the id of the bot's application service registration.
const AppServiceID = "luxchat-alertbot"

// Options configure a bot.
type Options struct {
	ServerName string
	// Localpart is the bot's localpart (webhooks.bot_localpart).
	Localpart string
	// Encryption: encrypt in encrypted rooms (webhooks.encryption); off,
	// Post refuses encrypted rooms.
	Encryption bool
	Store      *store.Store
	// Keys is the media keyring whose master key wraps the bot's data key.
	Keys *media.Keyring
	Log  *slog.Logger
}

// Bot is the server's alert bot.
//
// Concurrency: Post may be called from any goroutine. Posts to one room
// are serialised by the room's lock (its Megolm session changes with each
// message); mu guards the Olm account, the Olm sessions and the device
// cache and is never held across a request to the server, except by the
// key upload (upload), which holds keysMu instead.
type Bot struct {
	opts     Options
	userID   string
	asToken  string
	hsToken  string
	reg      *appservice.Registration
	ln       net.Listener // the server's transactions to the bot
	srv      *http.Server
	client   *http.Client
	log      *slog.Logger
	txnBase  string
	txnCount atomic.Int64

	hs       string        // the server's client listener, set by Start
	ready    chan struct{} // closed by Start (or Close: readyErr)
	readyErr error
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	started  atomic.Bool

	// The device is set up at the first post (setup), not at start: a
	// server whose bot posts nothing changes nothing for it. setupMu
	// serialises attempts; deviceID and vault are written before setUp
	// is true, and not after.
	setupMu  sync.Mutex
	setUp    atomic.Bool
	deviceID string
	// callDevice is the device the requests act as ("": none, as the
	// device is being made); Join may read it during the setup.
	callDevice atomic.Value
	vault      *vault

	mu       sync.Mutex
	acct     *account.Account
	ed25519  string
	curve    string
	sessions map[string]olm.Session // Olm sessions by the other device's curve25519 key
	devices  map[string]*userDevices

	keysMu sync.Mutex // one key upload at a time

	roomsMu sync.Mutex
	rooms   map[string]*roomState
}

// New builds the bot and its application service registration (which the
// server adds to the files' before it builds the appservice service) and
// opens its loopback listener for transactions. Nothing is sent before
// Start.
func New(opts Options) (*Bot, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	b := &Bot{opts: opts, userID: "@" + opts.Localpart + ":" + opts.ServerName, log: opts.Log.With("component", "alertbot"),
		ready: make(chan struct{}), sessions: map[string]olm.Session{}, devices: map[string]*userDevices{}, rooms: map[string]*roomState{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second}}}
	b.asToken, b.hsToken, b.txnBase = randomToken(), randomToken(), randomToken()[:12]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("alert bot: listen for transactions: %w", err)
	}
	b.ln = ln
	// The bot's user id alone, exclusively: nobody else registers it.
	yaml := fmt.Sprintf("id: %s\nurl: http://%s\nas_token: %s\nhs_token: %s\nsender_localpart: %s\nrate_limited: false\n"+
		"receive_ephemeral: true\norg.matrix.msc3202: true\nio.element.msc4190: true\n"+
		"namespaces:\n  users:\n    - {exclusive: true, regex: '%s'}\n",
		AppServiceID, ln.Addr().String(), b.asToken, b.hsToken, opts.Localpart, regexp.QuoteMeta(b.userID)+"$")
	b.reg, err = appservice.Parse([]byte(yaml), opts.ServerName)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("alert bot: registration: %w", err)
	}
	b.reg.File = "(the server's alert bot)"
	b.reg.Internal = true
	return b, nil
}

// Registration is the bot's application service registration.
func (b *Bot) Registration() *appservice.Registration { return b.reg }

// UserID is the bot's user id.
func (b *Bot) UserID() string { return b.userID }

// DeviceID is the bot's device id ("" before its first post set it up).
func (b *Bot) DeviceID() string {
	if !b.setUp.Load() {
		return ""
	}
	return b.deviceID
}

// Start serves the bot's transactions and points the bot at the server
// whose client API answers at hsURL (see LoopbackURL). It returns at
// once; the device is set up at the first post.
func (b *Bot) Start(ctx context.Context, hsURL string) {
	if !b.started.CompareAndSwap(false, true) {
		return
	}
	b.hs = strings.TrimSuffix(hsURL, "/")
	ctx, b.cancel = context.WithCancel(ctx)
	b.srv = &http.Server{Handler: b.transactionsHandler(ctx), ReadHeaderTimeout: 10 * time.Second}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := b.srv.Serve(b.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("transactions listener", "err", err)
		}
	}()
	close(b.ready)
}

// device sets the device up unless it is: one attempt per call, the
// next post tries again after a failure.
func (b *Bot) device(ctx context.Context) error {
	if b.setUp.Load() {
		return nil
	}
	b.setupMu.Lock()
	defer b.setupMu.Unlock()
	if b.setUp.Load() {
		return nil
	}
	if err := b.setup(ctx); err != nil {
		b.deviceID = ""
		b.callDevice.Store("")
		return err
	}
	b.setUp.Store(true)
	return nil
}

// Close stops the bot: its listener, its background work. Posts under way
// end with their context.
func (b *Bot) Close() error {
	if b.started.CompareAndSwap(false, true) {
		b.readyErr = errcode.Unknown("the alert bot is stopped")
		close(b.ready)
		return b.ln.Close()
	}
	b.cancel()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.srv.Shutdown(sctx)
	b.wg.Wait()
	b.client.CloseIdleConnections()
	return err
}

// wait waits for Start (a post made before it waits).
func (b *Bot) wait(ctx context.Context) error {
	select {
	case <-b.ready:
		return b.readyErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Join makes the bot join a room (by id or alias), as an invite it accepts
// does.
func (b *Bot) Join(ctx context.Context, roomIDOrAlias string) (string, error) {
	if err := b.wait(ctx); err != nil {
		return "", err
	}
	var out struct {
		RoomID string `json:"room_id"`
	}
	err := b.call(ctx, http.MethodPost, "/_matrix/client/v3/join/"+url.PathEscape(roomIDOrAlias), struct{}{}, &out)
	return out.RoomID, err
}

// Post sends an event of eventType with content into a room as the bot
// and returns its event id: in clear into an unencrypted room, encrypted
// with Megolm into an encrypted one (see encrypt.go). The bot must be
// joined to the room.
func (b *Bot) Post(ctx context.Context, roomID, eventType string, content map[string]any) (string, error) {
	if roomID == "" || eventType == "" {
		return "", errcode.InvalidParam("a room id and an event type are needed")
	}
	if err := b.wait(ctx); err != nil {
		return "", err
	}
	if err := b.device(ctx); err != nil {
		return "", err
	}
	enc, err := b.encryption(ctx, roomID)
	if err != nil {
		return "", err
	}
	if enc == nil {
		return b.send(ctx, roomID, eventType, content)
	}
	if !b.opts.Encryption {
		return "", errcode.Forbidden("the room is encrypted and webhooks.encryption is off")
	}
	if enc.Algorithm != algMegolm {
		return "", errcode.Forbidden("the room's encryption algorithm %q is not supported", enc.Algorithm)
	}
	return b.postEncrypted(ctx, roomID, eventType, content, enc)
}

// send sends an event as it is.
func (b *Bot) send(ctx context.Context, roomID, eventType string, content any) (string, error) {
	var out struct {
		EventID string `json:"event_id"`
	}
	err := b.call(ctx, http.MethodPut, pathRoom(roomID)+"/send/"+url.PathEscape(eventType)+"/"+b.txnID(), content, &out)
	return out.EventID, err
}

// txnID is a new transaction id: unique per start (a random prefix) and
// per call.
func (b *Bot) txnID() string {
	return fmt.Sprintf("%s.%d", b.txnBase, b.txnCount.Add(1))
}

func randomToken() string {
	var buf [32]byte
	if _, err := rand.Read(buf[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(buf[:])
}
