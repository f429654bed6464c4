package media

import (
	"context"
)

// UserMediaItem is one upload of a user, as the admin API lists it.
type UserMediaItem struct {
	MediaID     string
	CreatedTS   int64
	Size        int64
	ContentType string
	UploadName  string // "" when none was given
	// QuarantinedBy is the administrator who quarantined it ("" if no one).
	QuarantinedBy string
}

// UserMediaOrders are the orders UserMedia knows.
var UserMediaOrders = map[string]bool{"media_id": true, "upload_name": true, "created_ts": true, "media_length": true,
	"media_type": true, "last_access_ts": true, "quarantined_by": true, "safe_from_quarantine": true}

// UserMedia returns a page of what a local user uploaded, ordered by
// orderBy (one of UserMediaOrders; ties by media id), and how many
// uploads they have.
func (s *Service) UserMedia(ctx context.Context, userID, orderBy string, desc bool, from, limit int) ([]UserMediaItem, int, error) {
	rows, total, err := s.st.UserMedia(ctx, userID, orderBy, desc, from, limit)
	if err != nil {
		return nil, 0, err
	}
	out := make([]UserMediaItem, 0, len(rows))
	for _, m := range rows {
		out = append(out, UserMediaItem{MediaID: m.MediaID, CreatedTS: m.CreatedTS, Size: m.Size, ContentType: m.ContentType, UploadName: m.UploadName,
			QuarantinedBy: m.QuarantinedBy})
	}
	return out, total, nil
}
