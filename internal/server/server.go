package server

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"luxchat/internal/accounts"
	"luxchat/internal/alertbot"
	"luxchat/internal/appservice"
	"luxchat/internal/config"
	"luxchat/internal/delayed"
	"luxchat/internal/directory"
	"luxchat/internal/e2ee"
	"luxchat/internal/exchange"
	"luxchat/internal/federation"
	"luxchat/internal/gdpr"
	"luxchat/internal/httpapi/adminapi"
	"luxchat/internal/httpapi/clientapi"
	"luxchat/internal/httpapi/hooksapi"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/httpapi/mediaapi"
	"luxchat/internal/matrix/signing"
	"luxchat/internal/media"
	"luxchat/internal/notices"
	"luxchat/internal/notifications"
	"luxchat/internal/oauth"
	"luxchat/internal/reports"
	"luxchat/internal/retention"
	"luxchat/internal/roomadmin"
	"luxchat/internal/roomfed"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/rtc"
	"luxchat/internal/search"
	"luxchat/internal/slidingsync"
	"luxchat/internal/sso"
	"luxchat/internal/store"
	"luxchat/internal/sync"
	"luxchat/internal/threadsubs"
	"luxchat/internal/turn"
	"luxchat/internal/webclient"
	"luxchat/internal/webhooks"
)

// Server is a running homeserver.
type Server struct {
	Config   *config.Config
	Store    *store.Store
	Accounts *accounts.Service
	Rooms    *rooms.Service
	Read     *roomread.Service // the read side of rooms
	Sync     *sync.Service
	// Delayed sends the events users scheduled (MSC4140).
	Delayed *delayed.Service
	// SlidingSync answers simplified sliding sync (MSC4186).
	SlidingSync *slidingsync.Service
	// OAuth is the OAuth 2.0 API's authorization server (nil when off).
	OAuth *oauth.Service

	E2EE  *e2ee.Service
	Media *media.Service
	Log   *slog.Logger
	Push  *notifications.Service
	Key   signing.KeyPair

	// GDPR exports and erases users' data (data-protection requests).
	GDPR *gdpr.Service

	// RoomAdmin answers the administrators' room endpoints and runs room
	// deletions in the background.
	RoomAdmin *roomadmin.Service

	// Retention purges rooms' expired history (MSC1763); its job runs
	// only with retention.enabled.
	Retention *retention.Service

	// Directory serves the room and user directories and space hierarchies.
	Directory *directory.Service
	// RoomFed is rooms over federation: served to and received from
	// other servers, joins through them, backfill, partial state.
	RoomFed *roomfed.Service
	// Federation and Keys are nil when federation.enabled is false.
	Federation *federation.Client
	Keys       *federation.Keys
	policy     *federation.Policy
	// Outbox delivers PDUs and EDUs to other servers; Exchange handles
	// EDUs and remote queries. Nil when federation is off.
	Outbox   *federation.Queue
	Exchange *exchange.Service

	search rooms.Indexer // full-text index of unencrypted messages

	// AppServices are the application services (nil when none is
	// registered).
	AppServices *appservice.Service
	// AlertBot is the server's bot account that posts incoming webhooks,
	// encrypting in encrypted rooms; an application service of its own
	// (webhooks.bot_localpart).
	AlertBot *alertbot.Bot

	// TURN is the embedded TURN server; nil unless turn.enabled.
	TURN *turn.Server

	// Webhooks are the incoming webhooks for alerts.
	Webhooks *webhooks.Service

	handler    http.Handler
	fedHandler http.Handler // nil: no federation listener
	// adminHandler serves the admin API on listen.admin; nil when it is
	// unset (the client listener serves it).
	adminHandler http.Handler
	// AdminListener, set before serving, is the listener of listen.admin
	// (tests make it to learn its port); nil: Serve listens itself.
	AdminListener net.Listener
	fedTLS        *tls.Config
	metrics       *prometheus.Registry
	// hooksHandler serves the webhooks on listen.hooks (nil: they are on
	// the client listener); hooksLn is its listener when given by
	// SetHooksListener.
	hooksHandler http.Handler
	hooksLn      net.Listener
}

// New opens the store, loads or creates the signing key and builds the
// services and routes. It does not listen.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	key, err := loadOrCreateKey(filepath.Join(cfg.DataDir, "signing.key"))
	if err != nil {
		return nil, err
	}
	dsn, _ := cfg.PostgresDSN()
	st, err := store.Open(ctx, store.Options{DataDir: cfg.DataDir, PostgresDSN: dsn})
	if err != nil {
		return nil, err
	}
	s := &Server{Config: cfg, Store: st, Log: log, Key: key, metrics: prometheus.NewRegistry()}
	regs, err := appservice.Load(cfg.AppServices.ConfigFiles, cfg.ServerName)
	if err != nil {
		st.Close()
		return nil, err
	}
	// The memory classes and the live heap say where the process's
	// memory goes (heap, stacks, runtime metadata, what was returned).
	s.metrics.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsMemory,
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$|^/cpu/classes/gc/total:cpu-seconds$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mediaKeys, err := media.LoadKeyring(cfg.DataDir)
	if err != nil {
		st.Close()
		return nil, err
	}
	// The alert bot is an application service with the files' ones.
	s.AlertBot, err = alertbot.New(alertbot.Options{ServerName: cfg.ServerName, Localpart: cfg.Webhooks.BotLocalpart,
		Encryption: cfg.Webhooks.Encryption, Store: st, Keys: mediaKeys, Log: log})
	if err == nil {
		regs = append(regs, s.AlertBot.Registration())
		err = appservice.Check(regs)
	}
	if err != nil {
		if s.AlertBot != nil {
			s.AlertBot.Close()
		}
		st.Close()
		return nil, err
	}
	blobs, err := media.OpenBlobStore(ctx, cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	// The federation client comes first: the services that reach other
	// servers get it as they are built.
	if err := s.newFederation(); err != nil {
		st.Close()
		return nil, err
	}
	var fetch media.Fetcher // remote media: through federation
	if s.Federation != nil {
		fetch = s.fetchRemoteMedia
	}
	s.Media = media.New(cfg, st, blobs, mediaKeys, fetch, log)
	// The services, each given the hooks of the wiring (wiring.go) that
	// connect it to the others.
	notifier := sync.NewNotifier(st.Streams.Sync()...)
	s.Accounts = accounts.New(cfg, st, log, s.accountHooks())
	s.Rooms = rooms.New(cfg, st, key, notifier, log, s.roomHooks(), roomsRemote{s})
	s.Read = roomread.New(st, s.Rooms)
	if len(regs) > 0 {
		s.AppServices = appservice.New(regs, st, s.Rooms, s.renderForAppService, cfg.ServerName, log)
	}
	// One request rate limiter: the client API's, which delayed events
	// also draw on when they fall due.
	var limiter *httputil.RateLimiter
	if cfg.RateLimits.Enabled {
		limiter = httputil.NewRateLimiter(cfg.RateLimits.PerSecond, cfg.RateLimits.Burst)
	}
	delayedLimits := delayed.Limits{MaxDelay: cfg.DelayedEvents.MaxDelay.Duration, MaxPerUser: cfg.DelayedEvents.MaxPerUser}
	if limiter != nil {
		delayedLimits.SendRate = limiter.Take
		delayedLimits.RateExempt = func(id string) bool {
			reg := s.AppServices.Get(id)
			return reg != nil && !reg.RateLimited
		}
	}
	s.Delayed = delayed.New(st, s.Rooms, delayedLimits, log)
	s.RoomFed = roomfed.New(cfg.ServerName, st, key, s.Rooms, s.roomsFederation(), log)
	s.E2EE = e2ee.New(st, cfg.ServerName, log, s.e2eeHooks())
	s.Sync = sync.New(st, s.Rooms, s.Read, notifier, sync.NewTyping(), log, s.syncHooks())
	s.Directory = directory.New(cfg, st, s.Rooms, s.directoryRemote(), log)
	s.Push = notifications.New(cfg, st, s.Rooms, s.Read, log, s.Sync.Wake)
	s.search = search.Indexer(s.Rooms.InspectLocked)
	s.GDPR = gdpr.New(cfg.ServerName, st, s.Rooms, s.Media, s.Push, log)
	if err := s.Rooms.LoadErased(ctx); err != nil { // erased senders' events are served redacted
		st.Close()
		return nil, err
	}
	s.Retention = retention.New(cfg.Retention, st, s.Rooms, s.Media.DeleteBlob, s.Push.HistoryPurged, s.metrics, log)
	if err := s.Push.Load(ctx); err != nil {
		st.Close()
		return nil, err
	}
	s.setupExchange()

	rt := httputil.NewRouter(clientapi.NewAuthenticator(s.Accounts, s.AppServices), cfg.Limits.MaxRequestBytes, log)
	guardRouter(rt, cfg)
	rt.Limiter = limiter
	reqs := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "luxchat_http_request_duration_seconds", Help: "Client API request latency by route.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30},
	}, []string{"route", "method", "code"})
	s.metrics.MustRegister(reqs)
	rt.Observe = func(pattern, method string, status int, d time.Duration) {
		reqs.WithLabelValues(pattern, method, strconv.Itoa(status)).Observe(d.Seconds())
	}
	api := &clientapi.API{Config: cfg, Accounts: s.Accounts, AppServices: s.AppServices, Rooms: s.Rooms, Read: s.Read, Sync: s.Sync, E2EE: s.E2EE, Log: log}
	api.Push = s.Push
	api.Delayed = s.Delayed
	api.ThreadSubs = threadsubs.New(st, s.Read, s.Sync.Wake)
	s.SlidingSync = slidingsync.New(st, s.Rooms, s.Read, s.Sync, api.ThreadSubs)
	api.SlidingSync = s.SlidingSync
	api.Search = search.New(st, s.Rooms, s.Read)
	api.Reports = reports.New(st, s.Rooms, s.Read, cfg.ServerName)
	api.Notices = notices.New(st, s.Rooms, cfg.ServerName, cfg.ServerNotices.Localpart, cfg.ServerNotices.DisplayName, s.Sync.Wake)
	api.Directory = s.Directory
	api.RoomFed = s.RoomFed
	// Hooks post in clear through the pipeline, and into encrypted rooms
	// through the alert bot's device (refused with webhooks.encryption
	// off).
	var posters webhooks.Posters
	if cfg.Webhooks.Encryption {
		posters.Encrypted = s.AlertBot
	}
	s.Webhooks = webhooks.New(cfg, st, s.Rooms, posters, webhooks.BaseURL(cfg), log)
	hooks := &hooksapi.API{Webhooks: s.Webhooks, MaxBody: cfg.Webhooks.MaxBodyBytes}
	if cfg.Listen.Hooks == "" {
		hooksapi.Register(rt, hooks)
	} else {
		// Apart: the client listener does not serve them.
		hrt := httputil.NewRouter(nil, cfg.Limits.MaxRequestBytes, log)
		guardRouter(hrt, cfg)
		hrt.Observe = rt.Observe
		hooksapi.Register(hrt, hooks)
		s.hooksHandler = hrt
	}
	if api.TURN, err = s.setupTURN(); err != nil {
		st.Close()
		return nil, err
	}
	var remoteOpenID rtc.RemoteOpenID // nil interface, not a nil *Client, when federation is off
	if s.Federation != nil {
		remoteOpenID = s.Federation
	}
	if api.RTC, err = rtc.New(cfg, s.Accounts, s.Rooms, remoteOpenID, log); err != nil {
		st.Close()
		return nil, err
	}
	if api.SSO, err = sso.New(cfg, st, s.Accounts, log); err != nil {
		st.Close()
		return nil, err
	}
	s.OAuth = oauth.New(cfg, st, s.Accounts, log)
	api.OAuth = s.OAuth
	api.Register(rt)
	admin := &adminapi.API{Config: cfg, Log: log, Accounts: s.Accounts, Rooms: s.Rooms, Read: s.Read, RoomFed: s.RoomFed,
		Directory: s.Directory, Reports: api.Reports, Media: s.Media, Notices: api.Notices, GDPR: s.GDPR}
	s.RoomAdmin = roomadmin.New(st, s.Rooms, s.Read, cfg.ServerName, log)
	admin.RoomAdmin = s.RoomAdmin
	admin.Federation = s.Outbox
	admin.Webhooks = s.Webhooks
	admin.Routes(rt, rt)
	if cfg.Listen.Admin != "" {
		s.adminHandler = rt.SplitOff(adminapi.Prefixes...)
	}
	mediaapi.Register(rt, &mediaapi.API{Config: cfg, Media: s.Media, Log: log})
	rt.Handle("GET /health", httputil.AuthNone, func(r *httputil.Request) (any, error) {
		if err := st.Ping(r.Context()); err != nil {
			return nil, err
		}
		return map[string]string{"status": "ok"}, nil
	})
	if cfg.Web.Enabled {
		// The web client answers what no route matched under web.path,
		// never the APIs' prefixes (httputil.APIPrefixes).
		web, err := webclient.New(cfg.Web)
		if err != nil {
			st.Close()
			return nil, err
		}
		rt.Fallback = web.Serve
	}
	if err := s.setupFederationListener(rt); err != nil {
		st.Close()
		return nil, err
	}
	if s.fedHandler != nil {
		// The Server-Server API answers on the client listener too, as
		// behind a reverse proxy that terminates TLS for both: requests
		// are authenticated by their signatures, not by the transport.
		rt.Mount("/_matrix/federation/", s.fedHandler)
		rt.Mount("/_matrix/key/", s.fedHandler)
	}
	if err := s.Directory.Backfill(ctx); err != nil {
		st.Close()
		return nil, err
	}
	// Each application service acts as its sender user, which must exist.
	for _, r := range regs {
		if r.Internal && cfg.Webhooks.BotDisplayName != "" {
			// The alert bot is the webhooks' bot: made with its display
			// name, as the webhooks would make it.
			err := st.InTx(ctx, func(tx *store.Tx) error {
				return tx.CreateUser(ctx, store.User{UserID: r.Sender, DisplayName: sql.NullString{String: cfg.Webhooks.BotDisplayName, Valid: true},
					UserType: sql.NullString{String: "bot", Valid: true}})
			})
			if err != nil && !errors.Is(err, store.ErrExists) {
				st.Close()
				return nil, fmt.Errorf("alert bot: create %s: %w", r.Sender, err)
			}
		}
		if err := s.Accounts.EnsureAppServiceUser(ctx, r.Sender); err != nil {
			st.Close()
			return nil, fmt.Errorf("appservice %q: create sender %s: %w", r.ID, r.Sender, err)
		}
	}
	s.handler = rt
	return s, nil
}

// setupTURN builds the embedded TURN server (when turn.enabled) and the
// issuer of the credentials /voip/turnServer hands out: for turn.uris
// when set (an external coturn, or ours under a DNS name), else for the
// embedded server's own address. Nil: no TURN server is configured.
func (s *Server) setupTURN() (*turn.Issuer, error) {
	cfg := s.Config.TURN
	if cfg.Enabled {
		t, err := turn.New(s.Config, s.metrics, s.Log)
		if err != nil {
			return nil, err
		}
		s.TURN = t
	}
	secret, err := cfg.Secret()
	if err != nil {
		return nil, err
	}
	switch {
	case len(cfg.URIs) > 0:
		uris := append([]string(nil), cfg.URIs...)
		return turn.NewIssuer(secret, cfg.TTL.Duration, func() []string { return uris }), nil
	case s.TURN != nil:
		return turn.NewIssuer(secret, cfg.TTL.Duration, s.TURN.URIs), nil
	}
	return nil, nil
}

// guardRouter applies the limits that both listeners share: how slowly a
// body may arrive and which proxies name the client.
func guardRouter(rt *httputil.Router, cfg *config.Config) {
	rt.BodyTimeout, rt.BodyMinRate = cfg.Limits.BodyReadTimeout.Duration, cfg.Limits.BodyMinRate
	for _, p := range cfg.RateLimits.TrustedProxies {
		rt.TrustedProxies = append(rt.TrustedProxies, netip.MustParsePrefix(p).Masked()) // validated
	}
}

// Parked is how many long polls wait parked now (see httputil.Park).
func (s *Server) Parked() int {
	if rt, ok := s.handler.(*httputil.Router); ok {
		return rt.Parked()
	}
	return 0
}

// Repolls is how many requests that followed parked answers were served
// outside net/http, and how many went to it (see httputil.Park).
func (s *Server) Repolls() (served, handedBack uint64) {
	if rt, ok := s.handler.(*httputil.Router); ok {
		return rt.Repolls()
	}
	return 0, 0
}

// Handler is the client API handler (for tests).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve listens on the configured addresses until ctx is cancelled, then
// shuts down gracefully: in-flight requests finish, the store closes.
func (s *Server) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.Config.Listen.Client)
	if err != nil {
		return fmt.Errorf("listen client: %w", err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on an existing client listener.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	return s.ServeListeners(ctx, ln, nil)
}

// ServeListeners is Serve on existing listeners; fed (the federation
// listener, TLS added here) may be nil to listen on listen.federation.
func (s *Server) ServeListeners(ctx context.Context, ln, fed net.Listener) error {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 5)
	fsrv, err := s.serveFederation(fed, errc)
	if err != nil {
		ln.Close()
		s.Store.Close()
		return err
	}
	if s.TURN != nil {
		if err := s.TURN.Start(); err != nil {
			ln.Close()
			if fsrv != nil {
				fsrv.Close()
			}
			s.Store.Close()
			return err
		}
	}
	rt, _ := s.handler.(*httputil.Router)
	if rt != nil && s.Config.Limits.ParkLongPolls {
		ln = rt.ParkListener(ln, srv) // long polls wait outside net/http
	} else {
		rt = nil
	}
	go func() { errc <- srv.Serve(ln) }()
	asrv, err := s.serveAdmin(errc)
	if err != nil {
		srv.Close()
		if fsrv != nil {
			fsrv.Close()
		}
		s.Store.Close()
		return err
	}
	hsrv, err := s.serveHooks(errc)
	if err != nil {
		srv.Close()
		if asrv != nil {
			asrv.Close()
		}
		if fsrv != nil {
			fsrv.Close()
		}
		s.Store.Close()
		return err
	}
	var msrv *http.Server
	if s.Config.Listen.Metrics != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}))
		// Profiles for operators, on the private metrics listener only.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		msrv = &http.Server{Addr: s.Config.Listen.Metrics, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- msrv.ListenAndServe() }()
	}
	go s.housekeeping(ctx)
	go s.keepViews(ctx)
	s.startExchange(ctx)
	if err := s.RoomFed.ResumePartialJoins(ctx); err != nil {
		s.Log.Error("partial-state joins: resume", "err", err)
	}
	go s.Push.Run(ctx)
	if err := s.RoomAdmin.Resume(ctx); err != nil {
		s.Log.Error("room deletions: resume", "err", err)
	}
	s.AppServices.Start(ctx)
	s.AlertBot.Start(ctx, alertbot.LoopbackURL(ln.Addr()))
	delayedCtx, stopDelayed := context.WithCancel(ctx)
	defer stopDelayed()
	delayedDone := make(chan struct{})
	go func() { defer close(delayedDone); s.Delayed.Run(delayedCtx) }()
	retentionDone := make(chan struct{})
	go func() {
		defer close(retentionDone)
		if s.Config.Retention.Enabled {
			s.Retention.Run(delayedCtx)
		}
	}()
	s.Log.Info("luxchat listening", "client", ln.Addr().String(), "server_name", s.Config.ServerName, "database", string(s.Store.Engine))
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			stopDelayed()
			<-delayedDone
			<-retentionDone
			s.RoomAdmin.Close()
			s.Store.Close()
			return err
		}
	}
	s.Log.Info("shutting down")
	s.Sync.Close() // long polls answer now instead of holding the shutdown
	if rt != nil {
		rt.StopParked() // and so do parked ones
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = srv.Shutdown(shutCtx)
	if rt != nil {
		err = errors.Join(err, rt.WaitParked(shutCtx))
	}
	if fsrv != nil {
		_ = fsrv.Shutdown(shutCtx)
	}
	if msrv != nil {
		_ = msrv.Shutdown(shutCtx)
	}
	if asrv != nil {
		_ = asrv.Shutdown(shutCtx)
	}
	if hsrv != nil {
		_ = hsrv.Shutdown(shutCtx)
	}
	if s.TURN != nil {
		if terr := s.TURN.Close(); terr != nil {
			s.Log.Warn("turn: close", "err", terr)
		}
	}
	s.RoomFed.StopBackground()
	s.RoomAdmin.Close()  // a deletion cut short resumes at the next start
	s.AppServices.Wait() // their context ended with ctx
	if berr := s.AlertBot.Close(); berr != nil {
		s.Log.Warn("alert bot: close", "err", berr)
	}
	s.stopExchange()
	stopDelayed()
	<-delayedDone   // a send cut short stays due, and goes at the next start
	<-retentionDone // a purge cut short resumes at the next start
	if verr := s.Rooms.PersistViews(shutCtx); verr != nil {
		s.Log.Warn("rooms: store views", "err", verr)
	}
	if ferr := s.Sync.FlushPresence(shutCtx); ferr != nil {
		s.Log.Warn("presence: store last active times", "err", ferr)
	}
	if ferr := s.Accounts.FlushSeen(shutCtx); ferr != nil {
		s.Log.Warn("devices: store last-seen times", "err", ferr)
	}
	return errors.Join(err, s.Store.Close())
}

// serveAdmin serves the admin API on listen.admin (or AdminListener),
// when it is set; nil otherwise.
func (s *Server) serveAdmin(errc chan<- error) (*http.Server, error) {
	if s.adminHandler == nil {
		return nil, nil
	}
	ln := s.AdminListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.Config.Listen.Admin); err != nil {
			return nil, fmt.Errorf("listen admin: %w", err)
		}
	}
	asrv := &http.Server{Handler: s.adminHandler, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { errc <- asrv.Serve(ln) }()
	s.Log.Info("admin API listening", "admin", ln.Addr().String())
	return asrv, nil
}

// SetHooksListener gives the listener of listen.hooks (tests listen on a
// free port first). Call before serving.
func (s *Server) SetHooksListener(ln net.Listener) { s.hooksLn = ln }

// serveHooks starts the webhooks' own listener (listen.hooks); nil when
// they are served on the client listener.
func (s *Server) serveHooks(errc chan<- error) (*http.Server, error) {
	if s.hooksHandler == nil {
		return nil, nil
	}
	ln := s.hooksLn
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.Config.Listen.Hooks); err != nil {
			return nil, fmt.Errorf("listen hooks: %w", err)
		}
	}
	srv := &http.Server{Handler: s.hooksHandler, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { errc <- srv.Serve(ln) }()
	s.Log.Info("webhooks listening", "address", ln.Addr().String())
	return srv, nil
}

// housekeeping runs periodic jobs until ctx ends.
func (s *Server) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastFlush, lastRecheck, lastTrim := time.Now(), time.Now(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sync.ExpireTyping(ctx)
			if time.Since(lastRecheck) >= tokenRecheckEvery {
				lastRecheck = time.Now()
				if err := s.Accounts.RecheckTokens(ctx); err != nil && ctx.Err() == nil {
					s.Log.Warn("access tokens: re-check", "err", err)
				}
			}
			if time.Since(lastTrim) >= trimEvery {
				lastTrim = time.Now()
				if kept, freed := s.Rooms.TrimStates(rooms.StateBudget, rooms.TrimIdle); freed > 0 {
					s.Log.Debug("rooms: parsed states unloaded", "freed_bytes", freed, "kept_bytes", kept)
				}
			}
			if time.Since(lastFlush) >= presenceFlushEvery {
				lastFlush = time.Now()
				if err := s.Sync.FlushPresence(ctx); err != nil && ctx.Err() == nil {
					s.Log.Warn("presence: store last active times", "err", err)
				}
				if err := s.Accounts.FlushSeen(ctx); err != nil && ctx.Err() == nil {
					s.Log.Warn("devices: store last-seen times", "err", err)
				}
			}
		}
	}
}

// keepViews stores the views of rooms with events since their view was
// made (rooms.PersistViews) every viewsEvery until ctx ends, on its own
// goroutine: a few thousand rooms' views take a few seconds.
func (s *Server) keepViews(ctx context.Context) {
	t := time.NewTicker(viewsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Rooms.PersistViews(ctx); err != nil && ctx.Err() == nil {
				s.Log.Warn("rooms: store views", "err", err)
			}
		}
	}
}

// viewsEvery is how often rooms' stored views are brought up to date: a
// room with many events in that time is made once. Making a view costs
// ~2 ms of CPU, so a busy room is made at most once per interval; a
// graceful stop makes the rest, and after a crash a stale view costs only
// the read it replaces.
const viewsEvery = 5 * time.Minute

// tokenRecheckEvery is how often the cached access tokens in use are
// re-checked (see accounts.Service.RecheckTokens).
const tokenRecheckEvery = 5 * time.Second

// trimEvery is how often the rooms' cached states are brought back
// within their budget (rooms.TrimStates).
const trimEvery = 30 * time.Second

// presenceFlushEvery is how often the online users' last-active times
// and the devices' last-seen times are stored (see
// sync.Service.FlushPresence, accounts.Service.FlushSeen).
const presenceFlushEvery = 30 * time.Second

// loadOrCreateKey reads the server's signing key, generating it on first
// start.
func loadOrCreateKey(path string) (signing.KeyPair, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		keys, err := signing.DecodeKeyFile(data)
		if err != nil {
			return signing.KeyPair{}, fmt.Errorf("read signing key %s: %w", path, err)
		}
		if len(keys) == 0 {
			return signing.KeyPair{}, fmt.Errorf("signing key file %s is empty", path)
		}
		return keys[0], nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return signing.KeyPair{}, err
	}
	k, err := signing.GenerateKeyPair()
	if err != nil {
		return signing.KeyPair{}, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, signing.EncodeKeyFile(k), 0o600); err != nil {
		return signing.KeyPair{}, err
	}
	return k, os.Rename(tmp, path)
}
