// Package threadsubs holds thread subscriptions (MSC4306): a user's
// choice of the threads they want to hear of, set manually or by a client
// on the user's behalf (automatic, with the event that caused it), and
// the window of their changes that sliding sync's extension (MSC4308)
// and its companion endpoint send.
//
// A user only ever names threads they may see: every call checks the
// thread root (and an automatic subscription's cause event) against the
// room's history visibility, answering M_NOT_FOUND for what the user may
// not see, as for what does not exist.
package threadsubs

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Service answers thread subscriptions. It is safe for concurrent use.
type Service struct {
	store *store.Store
	read  *roomread.Service
	wake  func(users ...string) // the user's syncs hear of a change
}

// New returns the service; wake tells a user's syncs of a change.
func New(st *store.Store, read *roomread.Service, wake func(users ...string)) *Service {
	return &Service{store: st, read: read, wake: wake}
}

// root returns the thread root the user names, M_NOT_FOUND when the user
// may not see it or it cannot be a thread root (an event with a relation
// of its own: threads are not nested).
func (s *Service) root(ctx context.Context, userID, roomID, rootID string) (visible func(*store.EventRow) (bool, error), err error) {
	v, row, err := s.read.VisibleEvent(ctx, roomID, rootID, userID)
	if err != nil {
		return nil, err
	}
	if rel, _ := rooms.RelationOfPDU(row.JSON()); rel != "" {
		return nil, errcode.NotFound("event is not a thread root")
	}
	return func(r *store.EventRow) (bool, error) { return v.CanSee(ctx, r) }, nil
}

// Subscribe subscribes a user to a thread: manually when cause is "",
// else automatically because of the event cause, which must be a reply
// in the thread that the user may see (M_NOT_IN_THREAD). An automatic
// subscription never downgrades a manual one, and is refused
// (M_CONFLICTING_UNSUBSCRIPTION) when the user unsubscribed after the
// cause event had arrived: a device catching up must not undo the
// user's choice.
func (s *Service) Subscribe(ctx context.Context, userID, roomID, rootID, cause string) error {
	visible, err := s.root(ctx, userID, roomID, rootID)
	if err != nil {
		return err
	}
	automatic := cause != ""
	var causePos int64
	if automatic {
		notInThread := errcode.NotInThread("%s is not an event of this thread", cause)
		row, err := s.store.GetEvent(ctx, cause)
		if errors.Is(err, store.ErrNotFound) || err == nil && row.RoomID != roomID {
			return notInThread
		}
		if err != nil {
			return err
		}
		if ok, err := visible(row); err != nil {
			return err
		} else if !ok {
			return notInThread
		}
		if rel, parent := rooms.RelationOfPDU(row.JSON()); rel != "m.thread" || parent != rootID {
			return notInThread
		}
		causePos = row.Pos
	}
	applied := false
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		ok, err := tx.SubscribeThread(ctx, userID, roomID, rootID, automatic, causePos)
		if err != nil || ok {
			applied = ok
			return err
		}
		// Nothing changed: already subscribed (fine), or an automatic
		// subscription the user's unsubscription came after.
		cur, err := tx.ThreadSubscription(ctx, userID, roomID, rootID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if automatic && (cur == nil || !cur.Subscribed) {
			return errcode.ConflictingUnsubscription("the thread was unsubscribed after %s", cause)
		}
		return nil
	})
	if err == nil && applied {
		s.wake(userID)
	}
	return err
}

// Unsubscribe removes a user's subscription to a thread; without one it
// changes nothing (and succeeds).
func (s *Service) Unsubscribe(ctx context.Context, userID, roomID, rootID string) error {
	if _, err := s.root(ctx, userID, roomID, rootID); err != nil {
		return err
	}
	// The events the user's clients could have seen by now: automatic
	// subscriptions caused by them come too late.
	seen := s.store.Streams.Events.Current()
	removed := false
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		var err error
		removed, err = tx.UnsubscribeThread(ctx, userID, roomID, rootID, seen)
		return err
	})
	if err == nil && removed {
		s.wake(userID)
	}
	return err
}

// Subscription is a GET's answer.
type Subscription struct {
	Automatic bool `json:"automatic"`
}

// Get returns a user's subscription to a thread; M_NOT_FOUND when there
// is none or the user may not see the thread.
func (s *Service) Get(ctx context.Context, userID, roomID, rootID string) (*Subscription, error) {
	if _, err := s.root(ctx, userID, roomID, rootID); err != nil {
		return nil, err
	}
	sub, err := s.store.ThreadSubscription(ctx, userID, roomID, rootID)
	if errors.Is(err, store.ErrNotFound) || err == nil && !sub.Subscribed {
		return nil, errcode.NotFound("not subscribed to this thread")
	}
	if err != nil {
		return nil, err
	}
	return &Subscription{Automatic: sub.Automatic}, nil
}

// Page is a window of a user's subscription changes, newest first, each
// thread once with its latest state; bump_stamp orders two answers about
// one thread.
type Page struct {
	Subscribed   map[string]map[string]Subscribed   `json:"subscribed,omitempty"`
	Unsubscribed map[string]map[string]Unsubscribed `json:"unsubscribed,omitempty"`
}

// Subscribed is a thread the user is subscribed to.
type Subscribed struct {
	Automatic bool  `json:"automatic"`
	BumpStamp int64 `json:"bump_stamp"`
}

// Unsubscribed is a thread the user unsubscribed from.
type Unsubscribed struct {
	BumpStamp int64 `json:"bump_stamp"`
}

// Empty reports whether the page tells nothing.
func (p *Page) Empty() bool { return len(p.Subscribed)+len(p.Unsubscribed) == 0 }

// MaxLimit is the most changes one page holds, whatever is asked.
const MaxLimit = 500

// Changes returns up to limit of a user's subscription changes in
// (after, upTo] of the account data stream, the newest; when older ones
// are left, prev is the token that pages back to them (Since).
func (s *Service) Changes(ctx context.Context, userID string, after, upTo int64, limit int) (page *Page, prev string, err error) {
	limit = max(min(limit, MaxLimit), 1)
	rows, err := s.store.ThreadSubChanges(ctx, userID, after, upTo, limit+1)
	if err != nil {
		return nil, "", err
	}
	if len(rows) > limit {
		rows = rows[:limit]
		prev = Token(rows[limit-1].Pos - 1)
	}
	page = &Page{}
	for _, r := range rows {
		if r.Subscribed {
			if page.Subscribed == nil {
				page.Subscribed = map[string]map[string]Subscribed{}
			}
			if page.Subscribed[r.RoomID] == nil {
				page.Subscribed[r.RoomID] = map[string]Subscribed{}
			}
			page.Subscribed[r.RoomID][r.RootID] = Subscribed{Automatic: r.Automatic, BumpStamp: r.Pos}
			continue
		}
		if page.Unsubscribed == nil {
			page.Unsubscribed = map[string]map[string]Unsubscribed{}
		}
		if page.Unsubscribed[r.RoomID] == nil {
			page.Unsubscribed[r.RoomID] = map[string]Unsubscribed{}
		}
		page.Unsubscribed[r.RoomID][r.RootID] = Unsubscribed{BumpStamp: r.Pos}
	}
	return page, prev, nil
}

// Token renders a pagination token: the changes at or before pos.
func Token(pos int64) string { return "ts" + strconv.FormatInt(pos, 10) }

// ParseToken reads a Token; false when s is not one.
func ParseToken(s string) (int64, bool) {
	rest, ok := strings.CutPrefix(s, "ts")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(rest, 10, 64)
	return v, err == nil && v >= 0 && rest == strconv.FormatInt(v, 10)
}
