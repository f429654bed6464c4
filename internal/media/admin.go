package media

import (
	"context"
	"errors"
	"fmt"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// What the administrators' media endpoints (Synapse's admin API) do.

// UserMediaStat is one user's uploads (GET /v1/statistics/users/media).
type UserMediaStat = store.UserMediaStat

// UserMediaStatsQuery is a page of the statistics.
type UserMediaStatsQuery = store.UserMediaStatsQuery

// storeID is the media table's id of serverName's mediaID: the id itself
// for ours, the cache key for other servers' copies.
func (s *Service) storeID(serverName, mediaID string) (string, error) {
	if !mediaIDRe.MatchString(mediaID) || id.ValidServerName(serverName) != nil {
		return "", errcode.InvalidParam("invalid server name or media id")
	}
	if serverName == s.serverName {
		return mediaID, nil
	}
	return remoteKey(serverName, mediaID), nil
}

// SetQuarantined quarantines (by: the administrator) or releases (by "")
// local media or the cached copy of remote media. Quarantined media is
// not found by anyone; its blobs are kept. Media not stored here changes
// nothing, as in Synapse.
func (s *Service) SetQuarantined(ctx context.Context, serverName, mediaID, by string) error {
	key, err := s.storeID(serverName, mediaID)
	if err != nil {
		return err
	}
	_, err = s.st.SetMediaQuarantined(ctx, key, by)
	return err
}

// QuarantineRoom quarantines the local media that the room's unencrypted
// events name, and returns how many it quarantined.
func (s *Service) QuarantineRoom(ctx context.Context, roomID, by string) (int64, error) {
	return s.st.QuarantineRoomMedia(ctx, roomID, by)
}

// QuarantineUser quarantines the media a local user uploaded.
func (s *Service) QuarantineUser(ctx context.Context, userID, by string) (int64, error) {
	return s.st.QuarantineUserMedia(ctx, userID, by)
}

// DeleteLocal deletes media uploaded here: its row, thumbnails and blobs.
// M_NOT_FOUND when there is none; other servers' media is refused.
func (s *Service) DeleteLocal(ctx context.Context, serverName, mediaID string) error {
	if _, err := s.storeID(serverName, mediaID); err != nil {
		return err
	}
	if serverName != s.serverName {
		return errcode.InvalidParam("only local media can be deleted")
	}
	var blobs []string
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		blobs, err = tx.DeleteLocalMedia(ctx, mediaID)
		return err
	})
	if err != nil {
		return err
	}
	if blobs == nil {
		return errcode.NotFound("media not found")
	}
	for _, b := range blobs {
		if b == "" {
			continue
		}
		if err := s.blobs.Delete(ctx, b); err != nil && !errors.Is(err, ErrBlobNotFound) {
			s.log.Warn("delete media: cannot delete blob", "blob", b, "err", err)
		}
	}
	return nil
}

// PurgeRemoteBefore deletes the cached copies of remote media fetched
// before beforeTS (POST /v1/purge_media_cache).
func (s *Service) PurgeRemoteBefore(ctx context.Context, beforeTS int64) (int64, error) {
	return s.PurgeRemote(ctx, time.UnixMilli(beforeTS), nil)
}

// UserMediaStats returns a page of users' upload statistics and the
// number of users that match.
func (s *Service) UserMediaStats(ctx context.Context, q UserMediaStatsQuery) ([]UserMediaStat, int64, error) {
	return s.st.UserMediaStats(ctx, q)
}

// DeleteBlob deletes a stored file by its name (one a media row named
// before its row was deleted); a file already gone is no error.
func (s *Service) DeleteBlob(ctx context.Context, name string) error {
	if err := s.blobs.Delete(ctx, name); err != nil && !errors.Is(err, ErrBlobNotFound) {
		return fmt.Errorf("delete blob: %w", err)
	}
	return nil
}
