package httputil

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"luxchat/internal/matrix/errcode"
)

// errBodyTimeout answers a request whose body stopped arriving.
func errBodyTimeout() *errcode.Error {
	return &errcode.Error{Code: "M_UNKNOWN", Status: http.StatusRequestTimeout, Message: "the request body did not arrive in time"}
}

// paceBody makes a stalled request body fail instead of holding its
// connection: the connection's read deadline starts grace after the request
// and moves on by 1/minRate seconds for each byte received, so a body must
// keep an average rate of minRate after the grace period. Uploads at any
// usable speed stay far ahead of that; a body that stops, or trickles, times
// out. The deadline is lifted once the body has been read to its end,
// because net/http then watches the connection for the client going away
// and must not take our deadline for that.
type paceBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	start   time.Time
	grace   time.Duration
	minRate int64
	read    int64
	done    bool
}

func newPaceBody(w http.ResponseWriter, body io.ReadCloser, grace time.Duration, minRate int64) io.ReadCloser {
	b := &paceBody{ReadCloser: body, rc: http.NewResponseController(w), start: time.Now(), grace: grace, minRate: minRate}
	// Set now, not at the first Read: a handler that never reads the body
	// leaves net/http to discard it after the handler, under this deadline.
	b.setDeadline()
	return b
}

func (b *paceBody) setDeadline() {
	_ = b.rc.SetReadDeadline(b.start.Add(b.grace + time.Duration(b.read*int64(time.Second)/b.minRate)))
}

func (b *paceBody) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	switch {
	case err == io.EOF:
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return n, errBodyTimeout()
	case n > 0:
		b.setDeadline()
	}
	return n, err
}
