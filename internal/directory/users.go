package directory

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// AccountDataType is the global account data type with which a local user
// chooses to be listed in the user directory ({"visible": true}) or not
// ({"visible": false}); without it directory.default_visible applies.
const AccountDataType = "lu.luxchat.directory"

// Bounds on user directory searches.
const (
	defaultSearchLimit = 10
	maxSearchLimit     = 50
	maxSearchWords     = 8
)

// directoryEntry builds a user's directory row and search terms: the words
// of the display name and of the localpart.
func directoryEntry(userID, displayName, avatarURL string, local bool) (store.DirectoryUser, []string) {
	u, _ := id.ParseUserID(userID)
	localpart := u.Localpart()
	terms := Words(displayName + " " + localpart)
	sortKey := strings.Join(Words(displayName), " ")
	if sortKey == "" {
		sortKey = Fold(localpart)
	}
	return store.DirectoryUser{UserID: userID, DisplayName: displayName, AvatarURL: avatarURL, IsLocal: local, SortKey: sortKey}, terms
}

// ProfileChanged indexes a local user's new profile; it is the accounts
// hook for registrations and profile changes.
func (s *Service) ProfileChanged(ctx context.Context, userID, displayName, avatarURL string) error {
	row, terms := directoryEntry(userID, displayName, avatarURL, true)
	return s.store.InTx(ctx, func(tx *store.Tx) error { return tx.PutDirectoryUser(ctx, row, terms) })
}

// Deactivated takes a deactivated user out of the directory for good.
func (s *Service) Deactivated(ctx context.Context, userID string) error {
	return s.store.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteDirectoryUser(ctx, userID) })
}

// AccountDataChanged records a user's directory choice inside the
// transaction that stores the account data. Other types are ignored.
func (s *Service) AccountDataChanged(ctx context.Context, tx *store.Tx, userID, roomID, typ string, content []byte) error {
	if typ != AccountDataType || roomID != "" {
		return nil
	}
	return tx.SetDirectoryOptIn(ctx, userID, parseOptIn(content))
}

// parseOptIn reads {"visible": bool}; anything else is no choice.
func parseOptIn(content []byte) *bool {
	var c struct {
		Visible *bool `json:"visible"`
	}
	if content == nil || json.Unmarshal(content, &c) != nil {
		return nil
	}
	return c.Visible
}

// indexRemoteMember keeps the directory row of a remote user current from
// their member events, so that users sharing a room can find them.
func (s *Service) indexRemoteMember(ctx context.Context, tx *store.Tx, userID string, content json.RawMessage) error {
	if _, err := id.ParseUserID(userID); err != nil || s.isLocal(userID) {
		return nil
	}
	var c struct {
		Membership  string `json:"membership"`
		DisplayName string `json:"displayname"`
		AvatarURL   string `json:"avatar_url"`
	}
	if json.Unmarshal(content, &c) != nil || c.Membership != "join" {
		return nil
	}
	if len(c.DisplayName) > 256 {
		c.DisplayName = truncateUTF8(c.DisplayName, 256)
	}
	if !strings.HasPrefix(c.AvatarURL, "mxc://") || len(c.AvatarURL) > 1000 {
		c.AvatarURL = ""
	}
	row, terms := directoryEntry(userID, c.DisplayName, c.AvatarURL, false)
	if err := tx.PutDirectoryUser(ctx, row, terms); err != nil {
		return fmt.Errorf("index remote member: %w", err)
	}
	return nil
}

// backfillUsers brings every local account's directory row in line with
// the account (missing rows, hooks lost to a crash, accounts imported in
// bulk, deactivations). The store hands over only the accounts whose row
// may differ; the stale ones are rewritten a few statements per thousands,
// so a start with a directory already in line costs one query.
func (s *Service) backfillUsers(ctx context.Context) error {
	accts, err := s.store.DirectoryAccounts(ctx, AccountDataType)
	if err != nil {
		return fmt.Errorf("directory accounts: %w", err)
	}
	var fill []store.DirectoryFill
	var gone []string
	for _, a := range accts {
		want := parseOptIn(a.OptInContent)
		optInStale := a.IndexedOptIn.Valid != (want != nil) || (want != nil && a.IndexedOptIn.Bool != *want)
		switch {
		case a.Deactivated && a.Indexed:
			gone = append(gone, a.UserID)
		case !a.Deactivated && (!a.Indexed || a.IndexedName != a.DisplayName || a.IndexedAvatar != a.AvatarURL || optInStale):
			row, terms := directoryEntry(a.UserID, a.DisplayName, a.AvatarURL, true)
			fill = append(fill, store.DirectoryFill{Row: row, Terms: terms, OptIn: want})
		}
	}
	for len(fill) > 0 || len(gone) > 0 {
		batch := fill[:min(len(fill), 5000)]
		fill = fill[len(batch):]
		del := gone[:min(len(gone), 5000)]
		gone = gone[len(del):]
		if err := s.store.InTx(ctx, func(tx *store.Tx) error { return tx.FillDirectoryUsers(ctx, batch, del) }); err != nil {
			return fmt.Errorf("backfill user directory: %w", err)
		}
		s.log.Info("user directory rows rebuilt", "users", len(batch), "removed", len(del))
	}
	return nil
}

// SearchResult is one user found.
type SearchResult struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"display_name,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// SearchResponse is the answer of /user_directory/search.
type SearchResponse struct {
	Results []SearchResult `json:"results"`
	Limited bool           `json:"limited"`
}

// SearchUsers finds users whose display name or user id has a word
// starting with each word of term (or the one user a whole user id
// names), among those the searcher may find: users sharing a joined room
// with them, and local users listed in the directory (opted in, or by
// default when directory.default_visible). The searcher is never a result.
// limit ≤ 0 means the default.
func (s *Service) SearchUsers(ctx context.Context, searcher, term string, limit int) (*SearchResponse, error) {
	if limit <= 0 {
		limit = defaultSearchLimit
	}
	limit = min(limit, maxSearchLimit)
	out := &SearchResponse{Results: []SearchResult{}}
	q := store.DirectorySearch{Searcher: searcher, DefaultVisible: s.cfg.Directory.DefaultVisible, Limit: limit + 1}
	if u, err := id.ParseUserID(strings.TrimSpace(term)); err == nil {
		// A whole user id names one user, not everyone whose name
		// shares its words.
		q.UserID = u.String()
	} else {
		if strings.HasPrefix(term, "@") {
			// The start of a user id: its server part is not indexed.
			if i := strings.IndexByte(term, ':'); i > 0 {
				term = term[:i]
			}
		}
		words := Words(term)
		if len(words) == 0 {
			return out, nil
		}
		if len(words) > maxSearchWords {
			return nil, errcode.InvalidParam("search_term has too many words")
		}
		// The longest word drives the search: it matches the fewest terms.
		slices.SortStableFunc(words, func(a, b string) int { return len(b) - len(a) })
		q.Prefixes = words
	}
	rows, err := s.store.SearchUserDirectory(ctx, q)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.UserID
	}
	// Deactivation deletes the row; this covers a hook lost to a crash
	// until the next start repairs the table.
	gone, err := s.store.DeactivatedAmong(ctx, ids)
	if err != nil {
		return nil, err
	}
	rows = slices.DeleteFunc(rows, func(r store.DirectoryUser) bool { return gone[r.UserID] })
	if len(rows) > limit {
		rows, out.Limited = rows[:limit], true
	}
	for _, r := range rows {
		out.Results = append(out.Results, SearchResult{UserID: r.UserID, DisplayName: r.DisplayName, AvatarURL: r.AvatarURL})
	}
	return out, nil
}

// MayViewProfile applies profile.require_shared_room: requester (""
// when anonymous) may read target's profile when it is their own, when
// the target is listed in the directory, or when they share a joined
// room. Unknown users get the same 403 as hidden ones.
func (s *Service) MayViewProfile(ctx context.Context, requester, target string) error {
	if !s.cfg.Profile.RequireSharedRoom || (requester != "" && requester == target) {
		return nil
	}
	if requester == "" {
		return errcode.MissingToken("profiles are only shown to signed-in users")
	}
	ok, err := s.store.DirectoryListed(ctx, target, s.cfg.Directory.DefaultVisible)
	if err != nil || ok {
		return err
	}
	if ok, err = s.store.ShareJoinedRoom(ctx, requester, target); err != nil || ok {
		return err
	}
	return errcode.Forbidden("you may not see this user's profile")
}

// MayServerViewProfile applies profile.require_shared_room to another
// server asking for a local user's profile: the user must be listed, or
// share a joined room with one of that server's users.
func (s *Service) MayServerViewProfile(ctx context.Context, origin, target string) error {
	if !s.cfg.Profile.RequireSharedRoom {
		return nil
	}
	if err := id.ValidServerName(origin); err != nil || strings.ContainsAny(origin, `%_\`) {
		return errcode.Forbidden("you may not see this user's profile")
	}
	ok, err := s.store.DirectoryListed(ctx, target, s.cfg.Directory.DefaultVisible)
	if err != nil || ok {
		return err
	}
	if ok, err = s.store.ShareJoinedRoomWithServer(ctx, target, origin); err != nil || ok {
		return err
	}
	return errcode.Forbidden("you may not see this user's profile")
}
