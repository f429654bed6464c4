package alertbot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"luxchat/internal/matrix/errcode"
)

// requestTimeout bounds one request to the server (a key query or claim
// may wait on other servers: the request asks them for 10 s).
const requestTimeout = 30 * time.Second

// LoopbackURL is the base URL of a client listener bound at addr, reached
// on loopback: an unspecified address (0.0.0.0, ::) is asked at 127.0.0.1
// or ::1, a specific one at itself (an address of this host).
func LoopbackURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	ip := tcp.IP
	switch {
	case ip == nil || ip.Equal(net.IPv4zero):
		ip = net.IPv4(127, 0, 0, 1)
	case ip.Equal(net.IPv6unspecified):
		ip = net.IPv6loopback
	}
	return "http://" + net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}

// call makes one client API request as the bot (its as_token, and its
// device once it has one) and decodes a 2xx answer into out. A Matrix
// error answer is returned as an *errcode.Error with the server's code,
// status and message.
func (b *Bot) call(ctx context.Context, method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	u := b.hs + path
	if dev, _ := b.callDevice.Load().(string); dev != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		u += sep + "device_id=" + url.QueryEscape(dev)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.asToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return fmt.Errorf("alert bot: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("alert bot: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Code    string `json:"errcode"`
			Message string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Code == "" {
			e.Code, e.Message = "M_UNKNOWN", fmt.Sprintf("the server answered %d", resp.StatusCode)
		}
		return &errcode.Error{Code: e.Code, Status: resp.StatusCode, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("alert bot: %s %s: answer: %w", method, path, err)
	}
	return nil
}

// isNotFound reports a 404 M_NOT_FOUND answer (a missing state event).
func isNotFound(err error) bool {
	e, ok := errcode.As(err)
	return ok && e.Code == "M_NOT_FOUND"
}

func pathRoom(roomID string) string { return "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) }
