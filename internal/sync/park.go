package sync

import (
	"context"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/streamtoken"
)

// WakeAfter is the wait of a long poll parked outside Sync (the client
// API's parked /sync): w is woken once, at the user's next news after
// req.Since (a next_batch token), at once when something moved since
// then already; presence changes count only when req's filter shows
// presence. A woken poll looks again with Sync and a zero timeout, and
// calls WakeAfter again when that finds nothing it wants. StopWake
// cancels it.
func (s *Service) WakeAfter(req Request, w Waker) error {
	t, err := streamtoken.Parse(req.Since)
	if err != nil {
		return errcode.InvalidParam("invalid since token")
	}
	// Registered before the look at the positions, as Sync takes its
	// channel first: news committed in between wakes w.
	s.notifier.AfterWake(req.UserID, w, wantsPresence(req))
	cur := s.current()
	if cur.Typing < t.Typing {
		cur.Typing = t.Typing // as in Sync: typing restarts at 0
	}
	if cur != t {
		s.notifier.StopWake(req.UserID, w)
		w.Wake()
	}
	return nil
}

// wantsPresence reports whether a request's answer may show presence:
// only then is a presence change news to its wait.
func wantsPresence(req Request) bool {
	return req.FullState || req.Filter == nil || !req.Filter.Presence.Excludes("m.presence")
}

// News reports whether something a request may want moved since its
// since token, without a look at the database; when not, since is the
// token to wait from (presence that the filter leaves out moved it). A
// parked poll asks this before it looks: a user coming online wakes
// every roommate, and most filter presence out.
func (s *Service) News(req Request) (news bool, since string, err error) {
	t, err := streamtoken.Parse(req.Since)
	if err != nil {
		return false, "", errcode.InvalidParam("invalid since token")
	}
	cur := s.current()
	if cur.Typing < t.Typing {
		cur.Typing = t.Typing
	}
	if cur == t {
		return false, req.Since, nil
	}
	if !req.FullState && req.Filter != nil && onlyUnwanted(req.Filter, t, cur) {
		return false, cur.String(), nil
	}
	return true, req.Since, nil
}

// PollStart is what a long poll that may park does first: it sets the
// user's presence as Sync would, then reports News. A poll with nothing
// new parks from since without a look: the look would read the device's
// key counts, once per delivery per poller.
func (s *Service) PollStart(ctx context.Context, req Request) (news bool, since string, err error) {
	if err := s.setPresence(ctx, req.UserID, req.SetPresence); err != nil {
		return false, "", err
	}
	return s.News(req)
}

// StopWake cancels a WakeAfter that did not wake yet.
func (s *Service) StopWake(userID string, w Waker) { s.notifier.StopWake(userID, w) }
