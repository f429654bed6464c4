package notifications

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"luxchat/internal/config"
	"luxchat/internal/push"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Service is the notifications domain. It is safe for concurrent use.
//
// Compiled rule sets are cached per user; an edit invalidates its user's
// entry after the commit and bumps gen, so that a reader that loaded the
// old rules concurrently does not put them back (it keeps what it loaded
// only when gen did not move meanwhile).
type Service struct {
	cfg        *config.Config
	store      *store.Store
	rooms      *rooms.Service
	read       *roomread.Service // renders the events of /notifications
	log        *slog.Logger
	serverName string

	wakeSyncs func(users ...string) // wakes a user's syncs (after a rule change)

	rulesMu sync.Mutex
	rules   map[string]*push.Compiled // user → their shared rule set
	shared  map[string]*push.Compiled // push.Shared key → rule set
	gen     atomic.Int64
	editMu  sync.Mutex // serialises rule edits (read, change, write)
	// owners are the users with stored rules (Load, then EditRules);
	// nil until loaded. The others keep the defaults, known without a
	// read: a join's transaction needs the joiner's rules, and most
	// joiners never changed theirs.
	owners map[string]struct{}

	pushersMu sync.RWMutex
	pushers   map[string][]store.PusherKey // HTTP pushers by user

	counts     *countCache
	members    memberCache // big rooms' local members by rule set
	levels     sync.Map    // power levels (or create) event id → *levels
	levelCount atomic.Int64

	carrying sync.WaitGroup // rules being carried to upgraded rooms

	wake   chan struct{} // pushes queued
	staged chan struct{} // notifications staged
	client *http.Client
}

// New returns the service. Call Load before events flow, and Run to
// deliver pushes.
// wake, when not nil, wakes a user's syncs.
func New(cfg *config.Config, st *store.Store, rs *rooms.Service, read *roomread.Service, log *slog.Logger, wake func(users ...string)) *Service {
	return &Service{
		cfg: cfg, store: st, rooms: rs, read: read, log: log, serverName: cfg.ServerName, wakeSyncs: wake,
		rules:   map[string]*push.Compiled{},
		shared:  map[string]*push.Compiled{},
		pushers: map[string][]store.PusherKey{},
		wake:    make(chan struct{}, 1),
		staged:  make(chan struct{}, 1),
		counts:  newCountCache(st.Streams.Events.Current()),
		client:  newGatewayClient(cfg),
	}
}

func (s *Service) isLocal(userID string) bool {
	n := len(userID) - len(s.serverName)
	return n > 0 && userID[n-1] == ':' && userID[n:] == s.serverName
}

// storedRules is the content of the m.push_rules event.
type storedRules struct {
	Global *push.Ruleset `json:"global"`
}

func decodeRules(userID string, data []byte) *push.Ruleset {
	return push.Merge(userID, storedRuleset(data))
}

// storedRuleset decodes a stored m.push_rules event; nil when there is
// none or it is unreadable.
func storedRuleset(data []byte) *push.Ruleset {
	var sr storedRules
	if data != nil {
		if err := json.Unmarshal(data, &sr); err != nil {
			sr.Global = nil
		}
	}
	if sr.Global != nil {
		for _, kind := range push.Kinds {
			if *sr.Global.Kind(kind) == nil {
				*sr.Global.Kind(kind) = []push.Rule{}
			}
		}
	}
	return sr.Global
}

// Rules returns a user's rule set in force.
func (s *Service) Rules(ctx context.Context, userID string) (*push.Ruleset, error) {
	data, err := s.store.GetAccountData(ctx, userID, "", "m.push_rules")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return decodeRules(userID, data), nil
}

// RulesEvent returns the content of a user's m.push_rules event.
func (s *Service) RulesEvent(ctx context.Context, userID string) (json.RawMessage, error) {
	rs, err := s.Rules(ctx, userID)
	if err != nil {
		return nil, err
	}
	return json.Marshal(storedRules{Global: rs})
}

// EditRules changes a user's rules with f and stores the result as the
// m.push_rules account data, which syncs then deliver.
func (s *Service) EditRules(ctx context.Context, userID string, f func(rs *push.Ruleset) error) error {
	s.editMu.Lock()
	defer s.editMu.Unlock()
	rs, err := s.Rules(ctx, userID)
	if err != nil {
		return err
	}
	if err := f(rs); err != nil {
		return err
	}
	data, err := json.Marshal(storedRules{Global: rs})
	if err != nil {
		return err
	}
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		tx.OnCommitted(func() { s.invalidate(userID) })
		_, err := tx.PutAccountData(ctx, userID, "", "m.push_rules", data)
		return err
	})
	if err != nil {
		return err
	}
	if s.wakeSyncs != nil {
		s.wakeSyncs(userID)
	}
	return nil
}

// loadRuleOwners reads who has stored rules (see owners).
func (s *Service) loadRuleOwners(ctx context.Context) error {
	users, err := s.store.GlobalAccountDataUsers(ctx, "m.push_rules")
	if err != nil {
		return fmt.Errorf("load push rule owners: %w", err)
	}
	s.rulesMu.Lock()
	defer s.rulesMu.Unlock()
	owners := make(map[string]struct{}, len(users)+len(s.owners))
	for _, u := range users {
		owners[u] = struct{}{}
	}
	for u := range s.owners { // edits while the read ran
		owners[u] = struct{}{}
	}
	s.owners = owners
	return nil
}

func (s *Service) invalidate(userID string) {
	s.rulesMu.Lock()
	if s.owners != nil {
		s.owners[userID] = struct{}{}
	}
	delete(s.rules, userID)
	s.gen.Add(1)
	s.rulesMu.Unlock()
}

// maxCachedRules bounds the cache; past it, the cache starts over.
const maxCachedRules = 50000

// compiledFor returns the compiled rules of users, loading the missing
// ones in one query through tx. Users who made the same choices (most
// keep the defaults) get the same shared rule set, evaluated with each
// user as the recipient.
func (s *Service) compiledFor(ctx context.Context, tx *store.Tx, users []string) (map[string]*push.Compiled, error) {
	out := make(map[string]*push.Compiled, len(users))
	var missing, stored []string
	s.rulesMu.Lock()
	gen := s.gen.Load()
	for _, u := range users {
		if c := s.rules[u]; c != nil {
			out[u] = c
		} else {
			missing = append(missing, u)
			if _, ok := s.owners[u]; ok || s.owners == nil {
				stored = append(stored, u)
			}
		}
	}
	s.rulesMu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	data := map[string][]byte{}
	if len(stored) > 0 {
		var err error
		if data, err = tx.GlobalAccountDataOf(ctx, "m.push_rules", stored); err != nil {
			return nil, err
		}
	}
	keys := make(map[string]string, len(missing))
	sets := map[string]*push.Ruleset{}
	for _, u := range missing {
		if stored := storedRuleset(data[u]); stored != nil {
			rs, key := push.Shared(stored)
			keys[u], sets[key] = key, rs
		} else {
			keys[u] = "" // the defaults
		}
	}
	s.rulesMu.Lock()
	defer s.rulesMu.Unlock()
	keep := s.gen.Load() == gen
	if keep && len(s.rules)+len(missing) > maxCachedRules {
		s.rules = map[string]*push.Compiled{}
	}
	for _, u := range missing {
		c := s.shared[keys[u]]
		if c == nil {
			rs := sets[keys[u]]
			if rs == nil {
				rs, _ = push.Shared(nil)
			}
			if len(s.shared) >= maxCachedRules {
				s.shared = map[string]*push.Compiled{}
			}
			c = push.Compile(rs)
			s.shared[keys[u]] = c
		}
		out[u] = c
		if keep {
			s.rules[u] = c
		}
	}
	return out, nil
}
