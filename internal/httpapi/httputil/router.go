package httputil

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	pathpkg "path"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"luxchat/internal/matrix/errcode"
)

// AuthKind declares what a route requires of the caller.
type AuthKind int

const (
	// AuthNone: anyone.
	AuthNone AuthKind = iota
	// AuthUser: a valid access token.
	AuthUser
	// AuthOptional: an access token is used when present.
	AuthOptional
	// AuthServer: a request signed by another server (X-Matrix in the
	// Server-Server API), verified by the router's Servers.
	AuthServer
	// AuthTolerant: a token is resolved when present, but one that does
	// not resolve leaves the session empty instead of refusing: /register
	// and /login, which only an application service's as_token changes
	// (m.login.application_service) and which clients reach with stale
	// tokens (a soft-logged-out client logging in again). The token
	// alone names the caller: an application service's user_id is the
	// user to create or log in, not one it acts as.
	AuthTolerant
)

// Session is the authenticated caller of a request.
type Session struct {
	UserID    string
	DeviceID  string
	IsAdmin   bool
	TokenHash string
	// AppService is the id of the application service whose as_token
	// made the request ("" for a user's token); UserID and DeviceID are
	// then who it masquerades as.
	AppService string
	// NoRateLimit: the caller is exempt from rate limits (an application
	// service registered with rate_limited: false).
	NoRateLimit bool
	// Locked: the account is locked; the router answers 401 M_USER_LOCKED
	// on every route but those marked AllowLocked (logout).
	Locked bool
	// Suspended: the account may read but not act on others; the router
	// answers 403 M_USER_SUSPENDED on routes marked RefusedWhileSuspended.
	Suspended bool
	// ShadowBanned: the account's sends succeed for it and reach no one
	// (the handlers of those routes look at it).
	ShadowBanned bool
}

// Authenticator resolves access tokens.
type Authenticator interface {
	// Authenticate returns the session of a token, or an *errcode.Error
	// (M_UNKNOWN_TOKEN, possibly with soft_logout). query is the
	// request's query, where an application service names the user_id
	// and device_id it acts as.
	Authenticate(ctx context.Context, token string, query url.Values) (*Session, error)
}

// ServerVerifier authenticates server-signed requests (AuthServer
// routes). The router calls it in two steps and reads the body only in
// between: a caller that the headers alone refuse (no signature, another
// destination, an origin we do not federate with) cannot make us wait
// for, or buffer, what it sends.
type ServerVerifier interface {
	// Precheck refuses r for what its headers say, or returns nil. It
	// must not read the body.
	Precheck(r *http.Request) error
	// Verify checks the signature of r over its body and returns the
	// origin server name, or an *errcode.Error.
	Verify(r *http.Request, body []byte) (origin string, err error)
}

// Request is what a handler receives.
type Request struct {
	*http.Request
	Session *Session
	// Origin is the server that signed the request (AuthServer routes).
	Origin string
	router *Router
	query  url.Values // parsed once, on first use
	// pattern and start are the route and the request's start, for a
	// parked request's metrics (see Park).
	pattern string
	start   time.Time
}

// queryValues returns the request's query parameters, parsed once: a
// sync asks for several.
func (r *Request) queryValues() url.Values {
	if r.query == nil {
		r.query = r.URL.Query()
	}
	return r.query
}

// Handler serves one route. It returns a value encoded as the JSON body
// with status 200, a *Response for another status or raw bytes, or an error
// (an *errcode.Error is sent as is; anything else becomes a logged 500).
type Handler func(r *Request) (any, error)

// Response lets a handler choose status and headers.
type Response struct {
	Status  int
	Body    any    // encoded as JSON unless Raw is set
	Raw     []byte // sent verbatim as application/json
	Headers http.Header
}

// Router maps "METHOD /path" patterns to handlers. It answers unknown paths
// with 404 M_UNRECOGNIZED and known paths with a wrong method with 405
// M_UNRECOGNIZED, always as JSON.
type Router struct {
	mux    *http.ServeMux
	routes map[string]map[string]route // path pattern → method → route
	Auth   Authenticator
	// Servers verifies AuthServer routes; set it before registering one.
	Servers ServerVerifier
	Limiter *RateLimiter // nil: no rate limits
	MaxBody int64
	// BodyTimeout and BodyMinRate bound how slowly a request body may
	// arrive (see paceBody); zero: no bound.
	BodyTimeout time.Duration
	BodyMinRate int64
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// Log is the base of every request's logger (see Logger).
	Log     *slog.Logger
	Observe func(pattern, method string, status int, d time.Duration) // metrics hook; may be nil
	// parking is where parked requests hand their connections back
	// (ParkListener); nil: requests wait in place.
	parking *parkListener
	parked  parkedSet // parked requests not answered yet
	// reserved are the path prefixes served only by the handler SplitOff
	// returned (another listener); the router answers them 404.
	reserved []string
}

type route struct {
	auth    AuthKind
	limited bool
	// allowLocked: a locked account may call it (logout); notSuspended:
	// a suspended account may not.
	allowLocked, notSuspended bool
	maxBody                   int64 // 0: the router's MaxBody
	h                         Handler
}

// NewRouter returns an empty router.
func NewRouter(auth Authenticator, maxBody int64, log *slog.Logger) *Router {
	rt := &Router{mux: http.NewServeMux(), routes: map[string]map[string]route{}, Auth: auth, MaxBody: maxBody, Log: log}
	rt.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		rt.writeError(w, r, errcode.Unrecognized("unrecognized request"))
	})
	return rt
}

// Option changes a route.
type Option func(*route)

// RateLimited applies the router's rate limiter to the route.
func RateLimited() Option { return func(r *route) { r.limited = true } }

// AllowLocked lets a locked account call the route (the spec's
// POST /logout and /logout/all); every other route answers it 401
// M_USER_LOCKED.
func AllowLocked() Option { return func(r *route) { r.allowLocked = true } }

// RefusedWhileSuspended answers a suspended account 403 M_USER_SUSPENDED
// on the route: the actions the spec says suspension forbids (joining,
// inviting, sending, changing the profile...).
func RefusedWhileSuspended() Option { return func(r *route) { r.notSuspended = true } }

// BodyLimit replaces the router's MaxBody for the route (media uploads).
func BodyLimit(n int64) Option { return func(r *route) { r.maxBody = n } }

// Stream is a handler result that writes the whole response itself
// (headers, status, body): media downloads. It runs after authentication,
// so errors it meets once the headers are out can only end the response.
type Stream func(w http.ResponseWriter)

// Handle registers "METHOD /path/{var}" with an auth kind.
func (rt *Router) Handle(pattern string, auth AuthKind, h Handler, opts ...Option) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		panic("httputil: pattern needs a method: " + pattern)
	}
	if auth == AuthServer && rt.Servers == nil {
		panic("httputil: server-signed route without a ServerVerifier: " + pattern)
	}
	rr := route{auth: auth, h: h}
	for _, o := range opts {
		o(&rr)
	}
	methods, seen := rt.routes[path]
	if !seen {
		methods = map[string]route{}
		rt.routes[path] = methods
		rt.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { rt.dispatch(w, r, path, methods) })
	}
	methods[method] = rr
}

// Mount serves every path under prefix (ending in '/') with h, another
// API's router sharing this listener.
func (rt *Router) Mount(prefix string, h http.Handler) {
	rt.mux.Handle(prefix, h)
}

// ServeHTTP implements http.Handler. The legacy r0 prefixes of the client
// and media APIs, still used by older clients, are served by the v3 routes.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = rt.begin(w, r)
	if rt.isReserved(r.URL.Path) {
		rt.writeError(w, r, errcode.Unrecognized("unrecognized request"))
		return
	}
	rt.mux.ServeHTTP(w, r)
}

// SplitOff reserves the paths under prefixes (each ending in '/') for
// another listener: the router answers them 404 M_UNRECOGNIZED from now
// on, and the handler returned serves them (and answers every other path
// 404), with the router's routes, authentication, limits and metrics.
// Call it before serving.
func (rt *Router) SplitOff(prefixes ...string) http.Handler {
	rt.reserved = append(rt.reserved, prefixes...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = rt.begin(w, r)
		if !rt.isReserved(r.URL.Path) {
			rt.writeError(w, r, errcode.Unrecognized("unrecognized request"))
			return
		}
		rt.mux.ServeHTTP(w, r)
	})
}

// isReserved reports whether path is under a prefix given to SplitOff.
// The path is cleaned as the mux would before it routes it, so that
// "/x/../_synapse/admin/" is not a way around the split.
func (rt *Router) isReserved(path string) bool {
	if len(rt.reserved) == 0 {
		return false
	}
	clean := cleanPath(path)
	for _, p := range rt.reserved {
		if strings.HasPrefix(clean, p) || clean+"/" == p {
			return true
		}
	}
	return false
}

// cleanPath is path.Clean keeping a trailing slash, as net/http's mux
// cleans a path before matching it.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := pathpkg.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// begin is what every request gets before its route is found: the CORS
// headers, a request id, the r0 prefixes mapped to v3.
func (rt *Router) begin(w http.ResponseWriter, r *http.Request) *http.Request {
	// Browsers need the CORS headers on every answer, errors included,
	// to let a web client read the errcode.
	writeCORS(w)
	r = rt.withRequestID(w, r)
	for _, api := range [...]string{"/_matrix/client/", "/_matrix/media/"} {
		if rest, ok := strings.CutPrefix(r.URL.Path, api+"r0/"); ok {
			r.URL.Path = api + "v3/" + rest
			if r.URL.RawPath != "" {
				r.URL.RawPath = api + "v3/" + strings.TrimPrefix(r.URL.RawPath, api+"r0/")
			}
		}
	}
	return r
}

// serveLiteral is ServeHTTP for a request whose path is a route's
// literal pattern (no wildcards; a re-poll's /sync): the route is found
// by a map look-up instead of the mux's walk, which unescapes every
// segment of the path.
func (rt *Router) serveLiteral(w http.ResponseWriter, r *http.Request) {
	r = rt.begin(w, r)
	path := r.URL.Path
	if methods, ok := rt.routes[path]; ok && !strings.Contains(path, "{") && !rt.isReserved(path) {
		r.Pattern = path // as the mux sets it
		rt.dispatch(w, r, path, methods)
		return
	}
	rt.mux.ServeHTTP(w, r)
}

func (rt *Router) dispatch(w http.ResponseWriter, r *http.Request, path string, methods map[string]route) {
	start := time.Now()
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK)
		return
	}
	rr, ok := methods[r.Method]
	if !ok && r.Method == http.MethodHead {
		rr, ok = methods[http.MethodGet]
	}
	if !ok {
		rt.writeError(w, r, errcode.MethodNotAllowed())
		return
	}
	query := r.URL.Query() // parsed once: checked here, read by the handler
	if !cleanText(r.URL.Path) || !cleanText(r.URL.RawQuery) || !cleanQuery(query) {
		rt.writeError(w, r, errcode.InvalidParam("path and query must be UTF-8 without NUL characters"))
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			Logger(r.Context()).Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			if sw.status == 0 {
				rt.writeError(sw, r, errcode.Internal())
			}
		}
		if rt.Observe != nil && !sw.parked {
			rt.Observe(path, r.Method, sw.status, time.Since(start))
		}
	}()
	if r.Body != nil && r.Body != http.NoBody {
		// On a shallow copy: net/http must keep seeing its own body
		// reader to close the connection, rather than read a refused
		// body (Expect: 100-continue), when the handler did not read it.
		r = r.WithContext(r.Context())
		if rt.BodyTimeout > 0 && rt.BodyMinRate > 0 {
			r.Body = newPaceBody(w, r.Body, rt.BodyTimeout, rt.BodyMinRate)
		}
		if limit := cmp.Or(rr.maxBody, rt.MaxBody); limit > 0 {
			r.Body = http.MaxBytesReader(sw, r.Body, limit)
		}
	}
	req := &Request{Request: r, router: rt, query: query, pattern: path, start: start}
	if rr.auth == AuthServer {
		origin, err := rt.verifyServer(req)
		if err != nil {
			rt.writeError(sw, r, err)
			return
		}
		req.Origin = origin
	} else if rr.auth != AuthNone {
		token := accessToken(r)
		switch {
		case token == "" && rr.auth == AuthUser:
			rt.writeError(sw, r, errcode.MissingToken("missing access token"))
			return
		case token != "":
			masquerade := query
			if rr.auth == AuthTolerant {
				masquerade = nil
			}
			s, err := rt.Auth.Authenticate(r.Context(), token, masquerade)
			if err != nil && rr.auth != AuthTolerant {
				rt.writeError(sw, r, err)
				return
			}
			req.Session = s
		}
		if s := req.Session; s != nil && rr.auth != AuthTolerant {
			switch {
			case s.Locked && !rr.allowLocked:
				rt.writeError(sw, r, errcode.UserLocked("this account has been locked"))
				return
			case s.Suspended && rr.notSuspended:
				rt.writeError(sw, r, errcode.UserSuspended("you cannot perform this action while suspended"))
				return
			}
		}
	}
	if rr.limited && rt.Limiter != nil && (req.Session == nil || !req.Session.NoRateLimit) {
		key := rt.clientIP(r)
		if req.Session != nil {
			key = req.Session.UserID
		}
		if wait := rt.Limiter.Take(key); wait > 0 {
			rt.writeError(sw, r, errcode.LimitExceeded(wait.Milliseconds()+1))
			return
		}
	}
	out, err := rr.h(req)
	if err != nil {
		rt.writeError(sw, r, err)
		return
	}
	writeResult(sw, out)
}

// verifyServer authenticates a server-signed request: its headers first,
// then its signature over the body, which stays readable by the handler.
func (rt *Router) verifyServer(req *Request) (string, error) {
	if err := rt.Servers.Precheck(req.Request); err != nil {
		return "", err
	}
	body, err := req.Body()
	if err != nil {
		return "", err
	}
	req.Request.Body = io.NopCloser(bytes.NewReader(body))
	return rt.Servers.Verify(req.Request, body)
}

// jsonContentType is every JSON answer's Content-Type value, shared (net/http
// only reads it).
var jsonContentType = []string{"application/json"}

func writeResult(w http.ResponseWriter, out any) {
	if stream, ok := out.(Stream); ok {
		stream(w)
		return
	}
	status, body, headers := http.StatusOK, out, http.Header(nil)
	if resp, ok := out.(*Response); ok {
		status, body, headers = resp.Status, resp.Body, resp.Headers
		if status == 0 {
			status = http.StatusOK
		}
		if resp.Raw != nil {
			body = json.RawMessage(resp.Raw)
		}
	}
	for k, v := range headers {
		w.Header()[k] = v
	}
	var data []byte
	switch b := body.(type) {
	case json.RawMessage:
		data = b
	case []byte:
		data = b
	case nil:
		data = []byte("{}")
	default:
		var err error
		data, err = json.Marshal(b)
		if err != nil {
			status, data = http.StatusInternalServerError, []byte(`{"errcode":"M_UNKNOWN","error":"internal server error"}`)
		}
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(data))}
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// WriteError sends err as a Matrix error. Anything that is not an
// *errcode.Error becomes a 500 with no detail; see logError for what the
// logs get.
func (rt *Router) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := errcode.As(err)
	if !ok {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			e = errcode.TooLarge("request body too large")
		} else if errors.Is(err, context.Canceled) {
			return
		} else {
			e = errcode.Internal().Wrap(err)
		}
	}
	logError(r, e)
	data, _ := json.Marshal(e)
	if e.Status == http.StatusRequestTimeout {
		// The rest of the body may still come: this connection is done.
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_, _ = w.Write(data)
}

// logError logs an error answer once, at the edge, with the request's
// logger: every 500 as an error, other 5xx (a remote server failing us)
// as information, and a refusal that carries a cause at debug level.
// The cause goes to the log only, never to the client.
func logError(r *http.Request, e *errcode.Error) {
	level := slog.LevelDebug
	cause := e.Unwrap()
	switch {
	case e.Status == http.StatusInternalServerError:
		level = slog.LevelError
	case e.Status > http.StatusInternalServerError:
		level = slog.LevelInfo
	case cause == nil:
		return
	}
	args := []any{"method", r.Method, "path", r.URL.Path, "status", e.Status, "errcode", e.Code}
	if cause != nil {
		args = append(args, "err", cause)
	}
	Logger(r.Context()).Log(r.Context(), level, "request failed", args...)
}

func accessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// clientIP is the caller's address: the direct peer's, unless the peer is
// a trusted proxy; then X-Forwarded-For is read from its end (the proxy
// nearest to us appends last), skipping further trusted proxies, and the
// first other address is the client. Addresses the client wrote itself, at
// the start of the header, are so never believed.
func (rt *Router) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(rt.TrustedProxies) == 0 || !rt.trusted(host) {
		return host
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		addr, err := netip.ParseAddr(hops[i])
		if err != nil {
			break // garbage: keep the last address we could trust
		}
		host = addr.Unmap().String()
		if !rt.trusted(host) {
			break
		}
	}
	return host
}

func (rt *Router) trusted(host string) bool {
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range rt.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// HasToken reports whether the request carries an access token.
func (r *Request) HasToken() bool { return accessToken(r.Request) != "" }

// ClientIP returns the caller's address (see Router.clientIP).
func (r *Request) ClientIP() string { return r.router.clientIP(r.Request) }

// The CORS headers' values, shared by every answer (net/http only reads
// them; Header.Set replaces a value rather than writing into it): three
// allocations fewer per request, which a thousand woken long polls make
// at once.
var (
	corsOrigin  = []string{"*"}
	corsMethods = []string{"GET, HEAD, POST, PUT, DELETE, OPTIONS"}
	corsHeaders = []string{"X-Requested-With, Content-Type, Authorization"}
)

func writeCORS(w http.ResponseWriter) {
	h := w.Header()
	h["Access-Control-Allow-Origin"] = corsOrigin
	h["Access-Control-Allow-Methods"] = corsMethods
	h["Access-Control-Allow-Headers"] = corsHeaders
}

type statusWriter struct {
	http.ResponseWriter
	status int
	parked bool // the request's connection was taken over (see Park)
}

// Unwrap lets http.ResponseController reach the connection (Park).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streaming responses through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// cleanText rejects NUL and invalid UTF-8, which no identifier may hold
// and PostgreSQL cannot store in text columns.
func cleanText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

func cleanQuery(query url.Values) bool {
	for _, vs := range query {
		for _, v := range vs {
			if !cleanText(v) {
				return false
			}
		}
	}
	return true
}
