package appservice

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Rooms is what the service asks of rooms: who is joined to a room now.
type Rooms interface {
	JoinedUsers(ctx context.Context, roomID string) ([]string, error)
}

// Render gives an event's client form, as services receive it.
type Render func(row *store.EventRow) json.RawMessage

// Service holds the registrations and pushes to the services.
//
// Concurrency: the registrations never change after New. Each service
// with a URL has one pusher goroutine (pusher.go) that alone sends it
// transactions; the hooks (Committed, Typing, …) only record news and
// wake it, so they never wait on a service.
type Service struct {
	regs       []*Registration
	byToken    map[[32]byte]*Registration
	byID       map[string]*Registration
	store      *store.Store
	rooms      Rooms
	render     Render
	serverName string
	log        *slog.Logger
	// client talks to the services; every request also has its own
	// deadline (transactionTimeout, queryTimeout, pingTimeout).
	client  *http.Client
	pushers map[string]*pusher
	// interest caches which rooms each service is interested in.
	interest *interestCache
	typing   typingRooms
	// known are namespaced users seen to exist (accounts are never
	// deleted), so that masquerading costs no query per request.
	known sync.Map

	wg sync.WaitGroup
}

// New builds the service for registrations loaded by Load.
func New(regs []*Registration, st *store.Store, rooms Rooms, render Render, serverName string, log *slog.Logger) *Service {
	s := &Service{regs: regs, byToken: map[[32]byte]*Registration{}, byID: map[string]*Registration{}, store: st, rooms: rooms, render: render,
		typing:     typingRooms{rooms: map[string]map[string]struct{}{}},
		serverName: serverName, log: log.With("component", "appservice"), pushers: map[string]*pusher{},
		client:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: transactionTimeout}},
		interest: newInterestCache()}
	for _, r := range regs {
		s.byToken[sha256.Sum256([]byte(r.ASToken))] = r
		s.byID[r.ID] = r
		if r.URL != "" {
			s.pushers[r.ID] = newPusher(s, r)
		}
	}
	return s
}

// Registrations returns every registered service.
func (s *Service) Registrations() []*Registration {
	if s == nil {
		return nil
	}
	return s.regs
}

// AnyFromFiles reports whether a registration file lists a service (the
// server's internal ones aside).
func (s *Service) AnyFromFiles() bool {
	for _, r := range s.Registrations() {
		if !r.Internal {
			return true
		}
	}
	return false
}

// Get returns the service with an id, or nil.
func (s *Service) Get(id string) *Registration {
	if s == nil {
		return nil
	}
	return s.byID[id]
}

// ByToken returns the service whose as_token this is, or nil. Tokens are
// looked up by their hash, then compared in constant time.
func (s *Service) ByToken(token string) *Registration {
	if s == nil || len(s.regs) == 0 {
		return nil
	}
	r := s.byToken[sha256.Sum256([]byte(token))]
	if r == nil || subtle.ConstantTimeCompare([]byte(r.ASToken), []byte(token)) != 1 {
		return nil
	}
	return r
}

// Caller is who a request made with an as_token acts as.
type Caller struct {
	UserID   string
	DeviceID string
}

// Masquerade resolves the user_id and device_id a service asked to act
// as ("Identity assertion"): the user must be its sender or a registered
// user in one of its user namespaces; the device, when named, one of that
// user's.
func (s *Service) Masquerade(ctx context.Context, r *Registration, userID, deviceID string) (Caller, error) {
	if userID == "" || userID == r.Sender {
		userID = r.Sender
	} else {
		if !r.IsInterestedInUser(userID) || !strings.HasSuffix(userID, ":"+s.serverName) {
			return Caller{}, errcode.Forbidden("application service cannot masquerade as %s: not in its namespace", userID)
		}
		if _, ok := s.known.Load(userID); !ok {
			ok, err := s.store.UserExists(ctx, userID)
			if err != nil {
				return Caller{}, fmt.Errorf("look up masqueraded user: %w", err)
			}
			if !ok {
				return Caller{}, errcode.Forbidden("application service has not registered %s", userID)
			}
			s.known.Store(userID, struct{}{})
		}
	}
	if deviceID != "" {
		if _, err := s.store.GetDevice(ctx, userID, deviceID); errors.Is(err, store.ErrNotFound) {
			return Caller{}, &errcode.Error{Code: "M_UNKNOWN_DEVICE", Status: http.StatusBadRequest, Message: "no device " + deviceID + " of " + userID}
		} else if err != nil {
			return Caller{}, fmt.Errorf("look up masqueraded device: %w", err)
		}
	}
	return Caller{UserID: userID, DeviceID: deviceID}, nil
}

// IsInterestedInUser reports whether a user id is the service's sender or
// in one of its user namespaces.
func (r *Registration) IsInterestedInUser(userID string) bool {
	if userID == r.Sender {
		return true
	}
	for _, n := range r.Users {
		if n.Match(userID) {
			return true
		}
	}
	return false
}

func matchAny(ns []Namespace, s string) bool {
	for _, n := range ns {
		if n.Match(s) {
			return true
		}
	}
	return false
}

// exclusiveOwner returns the service that holds s exclusively in the
// namespaces pick returns, or nil.
func (s *Service) exclusiveOwner(v string, pick func(*Registration) []Namespace) *Registration {
	if s == nil {
		return nil
	}
	for _, r := range s.regs {
		for _, n := range pick(r) {
			if n.Exclusive && n.Match(v) {
				return r
			}
		}
	}
	return nil
}

// CheckUserClaim refuses (M_EXCLUSIVE) a user id that the caller may not
// register: for an ordinary caller (asID ""), one in a service's
// exclusive namespace; for a service, one outside its own user
// namespaces or held exclusively by another.
func (s *Service) CheckUserClaim(asID, userID string) error {
	if asID != "" {
		r := s.Get(asID)
		if r == nil || !matchAny(r.Users, userID) {
			return errcode.Exclusive("%s is not in the application service's user namespaces", userID)
		}
	}
	if owner := s.exclusiveOwner(userID, func(r *Registration) []Namespace { return r.Users }); owner != nil && owner.ID != asID {
		return errcode.Exclusive("%s is reserved by an application service", userID)
	}
	return nil
}

// CheckAliasClaim refuses (M_EXCLUSIVE) an alias in the exclusive alias
// namespace of a service other than the caller's (asID "": a user).
func (s *Service) CheckAliasClaim(asID, alias string) error {
	if owner := s.exclusiveOwner(alias, func(r *Registration) []Namespace { return r.Aliases }); owner != nil && owner.ID != asID {
		return errcode.Exclusive("%s is reserved by an application service", alias)
	}
	return nil
}

// Start starts the pushers; they run until ctx ends and Stop waits for them.
func (s *Service) Start(ctx context.Context) {
	if s == nil {
		return
	}
	for _, p := range s.pushers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			p.run(ctx)
		}()
	}
}

// Wait waits for the pushers after their context ended.
func (s *Service) Wait() {
	if s != nil {
		s.wg.Wait()
	}
}

// LoginType is the registration and login type of application services.
const LoginType = "m.login.application_service"
