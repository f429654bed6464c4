package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// client speaks the public client API with plain net/http, as any
// Matrix client would; one transport carries every user's requests (a
// thousand long polls at once).
type client struct {
	base string
	hc   *http.Client
}

func newClient(base string) *client { return newClientFor(base, 4000) }

// newClientFor is a client that keeps up to conns connections alive.
func newClientFor(base string, conns int) *client {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 2 * time.Minute}
	return &client{base: base, hc: &http.Client{Transport: tr}}
}

// do sends a request as token's user and decodes a 200 answer into out
// (when not nil). It returns the size of the answer's body.
func (c *client) do(ctx context.Context, method, path, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	if _, ok := ctx.Deadline(); !ok {
		// A stuck server fails the phase instead of hanging the run.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return len(data), err
	}
	if resp.StatusCode != http.StatusOK {
		return len(data), fmt.Errorf("%s %s: %d %s", method, strings.SplitN(path, "?", 2)[0], resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 300)]))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return len(data), fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return len(data), nil
}

// send sends one event with the given transaction id.
func (c *client) send(ctx context.Context, token, roomID, typ, txn string, content json.RawMessage) error {
	path := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/send/" + typ + "/" + txn
	return discard(c.do(ctx, http.MethodPut, path, token, content, nil))
}

func discard(_ int, err error) error { return err }

// syncAnswer is the part of a /sync answer the benchmark reads.
type syncAnswer struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events []struct {
					Content struct {
						Body      string `json:"body"`
						SessionID string `json:"session_id"` // DMs carry encrypted-looking events
					} `json:"content"`
				} `json:"events"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

// marker numbers every message the measured phases send: the body (or
// session_id) starts with "sb-<n> ", which pollers look for.
func marker(n int) string { return "sb-" + strconv.Itoa(n) }

func parseMarker(s string) (int, bool) {
	rest, ok := strings.CutPrefix(s, "sb-")
	if !ok {
		return 0, false
	}
	num, _, _ := strings.Cut(rest, " ")
	n, err := strconv.Atoi(num)
	return n, err == nil
}

// tracker records when each measured message was sent and when each
// expected poller saw it.
type tracker struct {
	mu   sync.Mutex
	next int
	msgs map[int]*tracked
}

type tracked struct {
	tag  string
	sent time.Time
	want map[int]bool          // pollers expected to see it
	got  map[int]time.Duration // poller → delay from the start of the send
}

func newTracker() *tracker { return &tracker{msgs: map[int]*tracked{}} }

// expect registers a message about to be sent (before the request: a
// poller may see it before the send is answered) and returns its number.
func (t *tracker) expect(tag string, pollers []int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	want := make(map[int]bool, len(pollers))
	for _, p := range pollers {
		want[p] = true
	}
	t.msgs[t.next] = &tracked{tag: tag, sent: time.Now(), want: want, got: map[int]time.Duration{}}
	return t.next
}

func (t *tracker) saw(n, poller int, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.msgs[n]
	if m == nil || !m.want[poller] {
		return
	}
	if _, dup := m.got[poller]; !dup {
		m.got[poller] = at.Sub(m.sent)
	}
}

// pending counts the deliveries still awaited for messages tagged tag.
func (t *tracker) pending(tag string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, m := range t.msgs {
		if m.tag == tag {
			n += len(m.want) - len(m.got)
		}
	}
	return n
}

// lostAfter: a delivery later than this counts as lost.
const lostAfter = 10 * time.Second

// delivery is what pollers saw of the messages tagged tag: the delays
// (sorted) and the deliveries missing or later than lostAfter.
func (t *tracker) delivery(tag string) (delays []time.Duration, lost int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.msgs {
		if m.tag != tag {
			continue
		}
		for _, d := range m.got {
			if d > lostAfter {
				lost++
				continue
			}
			delays = append(delays, d)
		}
		lost += len(m.want) - len(m.got)
	}
	slices.Sort(delays)
	return delays, lost
}

// waitDelivered waits until every delivery of tag arrived or max passed.
func (t *tracker) waitDelivered(ctx context.Context, tag string, max time.Duration) {
	deadline := time.Now().Add(max)
	for t.pending(tag) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
}

// pollers long-poll /sync as the online users do and report the
// measured messages they see.
type pollers struct {
	c       *client
	tr      *tracker
	timeout time.Duration
	filter  map[int]string // poller → its uploaded filter id
	since   map[int]string
	errs    atomic.Int64
	lastErr atomic.Value
	answers atomic.Int64 // /sync answers so far
	lastAns atomic.Int64 // unix ns of the latest answer
	waiting atomic.Int64 // polls sent and not answered yet
	online  atomic.Int64 // clients answered at least once
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// start runs one long-poll loop per poller until stop.
func (ps *pollers) start(sec *sector, users []int) {
	tokens := make([]string, len(users))
	for i, u := range users {
		tokens[i] = sec.users[u].token
	}
	ps.startKeys(users, tokens)
}

// startKeys runs one long-poll loop per key (the index of its since
// token and filter; the tracker's poller) with the token beside it.
func (ps *pollers) startKeys(keys []int, tokens []string) {
	ctx, cancel := context.WithCancel(context.Background())
	ps.cancel = cancel
	for i, k := range keys {
		ps.wg.Add(1)
		go func() {
			defer ps.wg.Done()
			ps.loop(ctx, k, tokens[i])
		}()
	}
}

func (ps *pollers) loop(ctx context.Context, u int, token string) {
	since, online := ps.since[u], false
	q := "/_matrix/client/v3/sync?timeout=" + strconv.Itoa(int(ps.timeout.Milliseconds())) + "&filter=" + url.QueryEscape(ps.filter[u])
	for ctx.Err() == nil {
		var ans syncAnswer
		rctx, cancel := context.WithTimeout(ctx, ps.timeout+30*time.Second)
		ps.waiting.Add(1)
		_, err := ps.c.do(rctx, http.MethodGet, q+"&since="+url.QueryEscape(since), token, nil, &ans)
		ps.waiting.Add(-1)
		cancel()
		now := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				ps.errs.Add(1)
				ps.lastErr.Store(err.Error())
				time.Sleep(time.Second)
			}
			continue
		}
		if ps.answers.Add(1); !online {
			online = true // its first answer
			ps.online.Add(1)
		}
		ps.lastAns.Store(now.UnixNano())
		since = ans.NextBatch
		for _, r := range ans.Rooms.Join {
			for _, ev := range r.Timeline.Events {
				if n, ok := parseMarker(ev.Content.Body); ok {
					ps.tr.saw(n, u, now)
				} else if n, ok := parseMarker(ev.Content.SessionID); ok {
					ps.tr.saw(n, u, now)
				}
			}
		}
	}
}

// quiet waits until no poller was answered for 2 s (their first polls
// may return at once with news from before), at most max.
func (ps *pollers) quiet(max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		if time.Since(time.Unix(0, ps.lastAns.Load())) > 2*time.Second {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (ps *pollers) stop() {
	if ps.cancel != nil {
		ps.cancel()
		ps.wg.Wait()
		ps.cancel = nil
	}
}
