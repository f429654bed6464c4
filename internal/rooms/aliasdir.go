package rooms

import (
	"context"
	"errors"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// The local alias directory (/directory/room/{alias}, query/directory):
// aliases of this server mapped to rooms, each with the user who made it.

// LocalAlias returns the room a local alias points to; M_NOT_FOUND when
// there is none.
func (s *Service) LocalAlias(ctx context.Context, alias string) (string, error) {
	roomID, _, err := s.store.GetAlias(ctx, alias)
	if errors.Is(err, store.ErrNotFound) {
		return "", errcode.NotFound("room alias %s not found", alias)
	}
	return roomID, err
}

// CreateAlias points a new local alias at a room known here, made by
// userID; 409 when the alias is taken.
func (s *Service) CreateAlias(ctx context.Context, alias, roomID, userID string) error {
	if _, err := s.Version(ctx, roomID); err != nil {
		return err
	}
	err := s.store.InTx(ctx, func(tx *store.Tx) error { return tx.PutAlias(ctx, alias, roomID, userID) })
	if errors.Is(err, store.ErrExists) {
		return &errcode.Error{Code: "M_UNKNOWN", Status: 409, Message: "room alias already exists"}
	}
	return err
}

// DeleteAlias removes a local alias, for the user who made it, a server
// admin, or a user who may change the room's m.room.canonical_alias; the
// room's canonical alias event then stops naming it (DropCanonicalAlias).
func (s *Service) DeleteAlias(ctx context.Context, alias, userID string, isAdmin bool) error {
	roomID, creator, err := s.store.GetAlias(ctx, alias)
	if errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("room alias not found")
	}
	if err != nil {
		return err
	}
	if creator != userID && !isAdmin {
		if !s.CanSendState(ctx, roomID, userID, "m.room.canonical_alias") {
			return errcode.Forbidden("you may not remove this alias")
		}
	}
	if err := s.store.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteAlias(ctx, alias) }); err != nil {
		return err
	}
	s.DropCanonicalAlias(ctx, roomID, alias, userID)
	return nil
}
