package media

import (
	"context"
	"fmt"
	"io"

	"luxchat/internal/matrix/errcode"
)

// What data-protection requests (package gdpr) do with a user's uploads.

// UserUpload is one medium a user uploaded, as an export lists it.
type UserUpload struct {
	MediaID     string
	ContentType string
	UploadName  string
	Size        int64
	CreatedTS   int64
	Quarantined bool
}

// EachUpload calls f with each medium userID uploaded (reservations never
// filled are skipped) and a reader of its plaintext, decrypted from the
// sealed blob as f reads it (memory stays bounded whatever the size).
// The content of a quarantined medium is not read (r is nil): an export
// lists it without handing back what an administrator withdrew.
func (s *Service) EachUpload(ctx context.Context, userID string, f func(u UserUpload, r io.Reader) error) error {
	rows, err := s.st.LocalMediaOf(ctx, userID)
	if err != nil {
		return err
	}
	for _, row := range rows {
		if row.UploadedTS == 0 {
			continue
		}
		u := UserUpload{MediaID: row.MediaID, ContentType: row.ContentType, UploadName: row.UploadName, Size: row.Size,
			CreatedTS: row.CreatedTS, Quarantined: row.Quarantined}
		if row.Quarantined {
			if err := f(u, nil); err != nil {
				return err
			}
			continue
		}
		c, err := s.contentOf(&row)
		if err != nil {
			return fmt.Errorf("media %s: %w", row.MediaID, err)
		}
		rc, err := s.Open(ctx, c, 0, c.Size)
		if err != nil {
			return fmt.Errorf("media %s: %w", row.MediaID, err)
		}
		err = f(u, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// DeleteUploads deletes every medium userID uploaded or reserved, with
// thumbnails and blobs, and returns how many went.
func (s *Service) DeleteUploads(ctx context.Context, userID string) (int, error) {
	rows, err := s.st.LocalMediaOf(ctx, userID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, row := range rows {
		err := s.DeleteLocal(ctx, s.serverName, row.MediaID)
		if e, ok := errcode.As(err); ok && e.Code == "M_NOT_FOUND" {
			continue // deleted meanwhile
		}
		if err != nil {
			return n, fmt.Errorf("delete media %s: %w", row.MediaID, err)
		}
		n++
	}
	return n, nil
}
