package fedapi

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"time"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/httpapi/mediaapi"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/media"
)

// Content repository over federation: other servers download media
// uploaded here (never media we cached from a third server) as
// multipart/mixed, a JSON metadata part then the content.

func (a *API) localContent(r *httputil.Request) (*media.Content, error) {
	if a.Media == nil {
		return nil, errcode.NotFound("media not found")
	}
	wait, err := r.QueryInt("timeout_ms", 20000)
	if err != nil {
		return nil, err
	}
	return a.Media.GetLocal(r.Context(), r.Var("mediaId"), time.Duration(wait)*time.Millisecond)
}

// GET /_matrix/federation/v1/media/download/{mediaId}
func (a *API) mediaDownload(r *httputil.Request) (any, error) {
	c, err := a.localContent(r)
	if err != nil {
		return nil, err
	}
	return a.multipartMedia(r, c)
}

// GET /_matrix/federation/v1/media/thumbnail/{mediaId}
func (a *API) mediaThumbnail(r *httputil.Request) (any, error) {
	w, h, method, animated, err := mediaapi.ThumbnailQuery(r)
	if err != nil {
		return nil, err
	}
	c, err := a.localContent(r)
	if err != nil {
		return nil, err
	}
	t, err := a.Media.Thumbnail(r.Context(), c, w, h, method, animated)
	if err != nil {
		return nil, err
	}
	return a.multipartMedia(r, t)
}

// multipartMedia streams c from the blob store as the spec's
// multipart/mixed answer. The first chunk is authenticated before the
// status line goes out; damage found later cuts the answer short (the
// closing boundary is then missing, so the other server rejects it).
func (a *API) multipartMedia(r *httputil.Request, c *media.Content) (any, error) {
	rc, err := a.Media.Open(r.Context(), c, 0, c.Size)
	if err != nil {
		return nil, err
	}
	return httputil.Stream(func(w http.ResponseWriter) {
		defer rc.Close()
		mw := multipart.NewWriter(w)
		w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
		w.WriteHeader(http.StatusOK)
		meta, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
		if err != nil {
			return
		}
		if _, err := io.WriteString(meta, "{}"); err != nil {
			return
		}
		disp := "attachment"
		if c.FileName != "" {
			if d := mime.FormatMediaType("attachment", map[string]string{"filename": c.FileName}); d != "" {
				disp = d
			}
		}
		part, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {c.ContentType}, "Content-Disposition": {disp}})
		if err != nil {
			return
		}
		if _, err := io.CopyBuffer(part, rc, make([]byte, 64<<10)); err != nil {
			if errors.Is(err, media.ErrTampered) {
				httputil.Logger(r.Context()).Error("media blob failed authentication while streaming over federation: answer cut short", "media_id", c.MediaID)
			}
			return
		}
		_ = mw.Close()
	}), nil
}
