package adminapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// reserved reports whether a route's pattern is under one of Prefixes.
func reserved(pattern string) bool {
	_, path, _ := strings.Cut(pattern, " ")
	for _, p := range Prefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// auditKey keys a request's *auditRecord in its context.
type auditKey struct{}

// auditRecord is what the audit line of one call says beyond the route:
// the target a handler names when the path does not (SetTarget).
type auditRecord struct {
	target string
}

// targetVars are the path variables that name an admin call's target, in
// the order they are looked for.
var targetVars = []string{"userId", "roomId", "mediaId", "reportId", "destination", "token", "deviceId", "serverName", "eventId"}

// SetTarget names the target of an admin call when its path does not
// (a user id in the body), for the audit line.
func SetTarget(r *httputil.Request, target string) {
	if rec, ok := r.Context().Value(auditKey{}).(*auditRecord); ok {
		rec.target = target
	}
}

// requireAdmin wraps a route's handler: a caller who is not a server
// administrator is refused with 403 M_FORBIDDEN before anything is looked
// up (so that the answer tells nothing about the target), and every call,
// refused or not, leaves one audit line with the caller, the route, the
// target and the outcome.
func (a *API) requireAdmin(rt route) httputil.Handler {
	self := selfAllowed[rt.pattern]
	return func(r *httputil.Request) (out any, err error) {
		start := time.Now()
		rec := &auditRecord{}
		r.Request = r.Request.WithContext(context.WithValue(r.Context(), auditKey{}, rec))
		defer func() { a.audit(r, rt.pattern, rec, out, err, time.Since(start)) }()
		if r.Session == nil {
			return nil, errcode.MissingToken("missing access token")
		}
		if r.Session.AppService != "" {
			// An application service acts as its users, never as an
			// administrator.
			return nil, errcode.Forbidden("you are not a server administrator")
		}
		if !r.Session.IsAdmin && !(self && r.Var("userId") == r.Session.UserID) {
			return nil, errcode.Forbidden("you are not a server administrator")
		}
		return rt.h(r)
	}
}

// audit writes the audit line of one admin call.
func (a *API) audit(r *httputil.Request, pattern string, rec *auditRecord, out any, err error, d time.Duration) {
	log := a.Audit
	if log == nil {
		log = a.Log
	}
	if log == nil {
		log = slog.Default()
	}
	target := rec.target
	for _, v := range targetVars {
		if target != "" {
			break
		}
		target = r.Var(v)
	}
	status := http.StatusOK
	if resp, ok := out.(*httputil.Response); ok && resp.Status != 0 {
		status = resp.Status
	}
	args := []any{"request_id", httputil.RequestID(r.Context()), "route", pattern, "target", target}
	if r.Session != nil {
		args = append(args, "admin", r.Session.UserID, "device", r.Session.DeviceID)
	}
	if err != nil {
		status = http.StatusInternalServerError
		if e, ok := errcode.As(err); ok {
			status = e.Status
			args = append(args, "errcode", e.Code)
		}
	}
	args = append(args, "status", status, "ip", r.ClientIP(), "duration_ms", d.Milliseconds())
	log.Info("admin call", args...)
}
