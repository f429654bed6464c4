package appservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"luxchat/internal/store"
)

const (
	// maxTxnEvents bounds the events of one transaction.
	maxTxnEvents = 100
	// scanPage is how many stream rows one read takes.
	scanPage = 500
	// maxEphemeral bounds the ephemeral data waiting for a service that
	// is down: the oldest goes first (it is ephemeral).
	maxEphemeral = 1000
	// transactionTimeout bounds one delivery attempt.
	transactionTimeout = 60 * time.Second
	// backoffMin and backoffMax bound the wait between failed attempts.
	backoffMin = 500 * time.Millisecond
	backoffMax = 5 * time.Minute
)

// pusher delivers one service's transactions, one at a time and in
// order. Its queue is the events (and to-device) stream after the
// service's acknowledged position: a transaction is built from what
// follows it, stored, then sent until the service answers 200, after
// which the position moves past it. So a restart resends the stored
// transaction under its id, and nothing acknowledged is sent again.
type pusher struct {
	s    *Service
	r    *Registration
	wake chan struct{}

	mu        sync.Mutex
	ephemeral []ephemeralItem // typing, receipts, presence not yet in a transaction

	// Sent counts the transactions acknowledged, for tests and metrics.
	sent int64
}

func newPusher(s *Service, r *Registration) *pusher {
	return &pusher{s: s, r: r, wake: make(chan struct{}, 1)}
}

// poke wakes the pusher without waiting.
func (p *pusher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// ephemeralItem is typing or a receipt in a room (roomID set), or a
// user's presence (userID set); a private receipt (private) has both and
// goes only to services of its user. Whether the service wants it is
// decided when the transaction is built, off the caller's goroutine.
type ephemeralItem struct {
	roomID, userID string
	private        bool
	data           json.RawMessage
}

func (p *pusher) addEphemeral(it ephemeralItem) {
	p.mu.Lock()
	if len(p.ephemeral) >= maxEphemeral {
		p.ephemeral = p.ephemeral[1:]
	}
	p.ephemeral = append(p.ephemeral, it)
	p.mu.Unlock()
	p.poke()
}

func (p *pusher) run(ctx context.Context) {
	log := p.s.log.With("appservice", p.r.ID)
	var pos store.AppServicePosition
	for attempt := 0; ; attempt++ {
		var err error
		streams := p.s.store.Streams
		pos, err = p.s.store.AppServiceStart(ctx, p.r.ID, streams.Events.Current(), streams.ToDevice.Current(), streams.DeviceLists.Current())
		if err == nil {
			break
		}
		log.Warn("read position", "err", err)
		if !sleep(ctx, backoff(attempt)) {
			return
		}
	}
	txn, err := p.s.store.AppServicePendingTxn(ctx, p.r.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		log.Warn("read pending transaction", "err", err)
	}
	failures := 0
	for ctx.Err() == nil {
		if txn == nil {
			txn, err = p.build(ctx, &pos)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("build transaction", "err", err)
				}
				if !sleep(ctx, backoff(failures)) {
					return
				}
				failures++
				continue
			}
			if txn == nil {
				select {
				case <-ctx.Done():
					return
				case <-p.wake:
				}
				continue
			}
		}
		if err := p.send(ctx, txn); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			log.Info("transaction not delivered; retrying", "txn", txn.TxnID, "attempt", failures, "err", err)
			if !sleep(ctx, backoff(failures-1)) {
				return
			}
			continue
		}
		failures = 0
		if err := p.s.store.AckAppServiceTxn(ctx, p.r.ID, *txn); err != nil {
			// The service has it; resending it under the same id after
			// a restart is harmless.
			log.Warn("record acknowledged transaction", "err", err)
		}
		p.forgetDelivered(ctx, txn)
		pos.AckedPos, pos.AckedToDevice = txn.UptoPos, txn.UptoToDevice
		if txn.UptoDeviceLists >= 0 {
			pos.AckedDeviceLists = txn.UptoDeviceLists
		}
		p.mu.Lock()
		p.sent++
		p.mu.Unlock()
		txn = nil
	}
}

func backoff(failures int) time.Duration {
	d := backoffMin << min(failures, 20)
	return min(d, backoffMax)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// transaction is the body of PUT /_matrix/app/v1/transactions/{txnId}.
// Ephemeral data and to-device messages go under the stable names and
// MSC2409's, which older services read.
type transaction struct {
	Events          []json.RawMessage `json:"events"`
	Ephemeral       []json.RawMessage `json:"ephemeral,omitempty"`
	MSC2409Ephem    []json.RawMessage `json:"de.sorunome.msc2409.ephemeral,omitempty"`
	ToDevice        []json.RawMessage `json:"to_device,omitempty"`
	MSC2409ToDevice []json.RawMessage `json:"de.sorunome.msc2409.to_device,omitempty"`
	// MSC3202: the changed device lists the service's users should hear
	// of, and the key counts of its users' devices.
	DeviceLists      *deviceLists                         `json:"org.matrix.msc3202.device_lists,omitempty"`
	OTKCounts        map[string]map[string]map[string]int `json:"org.matrix.msc3202.device_one_time_keys_count,omitempty"`
	FallbackKeyTypes map[string]map[string][]string       `json:"org.matrix.msc3202.device_unused_fallback_key_types,omitempty"`
}

type deviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

// build makes the next transaction from what follows pos, stores it and
// returns it; nil when there is nothing for the service (pos then moves
// past what was read).
func (p *pusher) build(ctx context.Context, pos *store.AppServicePosition) (*store.AppServiceTxn, error) {
	var body transaction
	body.Events = []json.RawMessage{}
	var memberships []*store.EventRow // for MSC3202's device lists
	uptoPos := pos.AckedPos
	current := p.s.store.Streams.Events.Current()
scan:
	for uptoPos < current {
		rows, err := p.s.store.TimelineEventsBetween(ctx, uptoPos, current, scanPage)
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			uptoPos = current
			break
		}
		for _, e := range rows {
			if e.Type == "m.room.member" || e.Type == "m.room.canonical_alias" {
				p.s.interest.drop(e.RoomID)
			}
			if e.Type == "m.room.member" && p.r.MSC3202 {
				memberships = append(memberships, e)
			}
			ok, err := p.s.eventInterests(ctx, p.r, e)
			if err != nil {
				return nil, err
			}
			uptoPos = e.Pos
			if ok {
				body.Events = append(body.Events, p.s.render(e))
				if len(body.Events) == maxTxnEvents {
					break scan
				}
			}
		}
		if len(rows) < scanPage {
			uptoPos = current
		}
	}
	// Without ephemeral data the to-device position follows the stream,
	// so that turning it on later starts from then, not from a backlog.
	uptoToDevice := p.s.store.Streams.ToDevice.Current()
	if p.r.Ephemeral {
		var err error
		if body.ToDevice, uptoToDevice, err = p.toDevice(ctx, pos.AckedToDevice); err != nil {
			return nil, err
		}
		p.mu.Lock()
		items := p.ephemeral
		p.ephemeral = nil
		p.mu.Unlock()
		for _, it := range items {
			want, err := p.wantsEphemeral(ctx, it)
			if err != nil {
				return nil, err
			}
			if want {
				body.Ephemeral = append(body.Ephemeral, it.data)
			}
		}
		body.MSC2409Ephem, body.MSC2409ToDevice = body.Ephemeral, body.ToDevice
	}
	uptoDeviceLists := p.s.store.Streams.DeviceLists.Current()
	if p.r.MSC3202 {
		if err := p.addMSC3202(ctx, &body, pos.AckedDeviceLists, uptoDeviceLists, memberships); err != nil {
			return nil, err
		}
	}
	if len(body.Events) == 0 && len(body.Ephemeral) == 0 && len(body.ToDevice) == 0 && body.DeviceLists == nil && body.OTKCounts == nil {
		moved := store.AppServicePosition{AckedPos: uptoPos, AckedToDevice: uptoToDevice, AckedDeviceLists: uptoDeviceLists, NextTxn: pos.NextTxn}
		if moved != *pos {
			if err := p.s.store.MoveAppServicePosition(ctx, p.r.ID, moved); err != nil {
				return nil, err
			}
			*pos = moved
		}
		return nil, nil
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	txn := &store.AppServiceTxn{TxnID: pos.NextTxn, UptoPos: uptoPos, UptoToDevice: uptoToDevice, UptoDeviceLists: uptoDeviceLists, Body: data}
	if err := p.s.store.SaveAppServiceTxn(ctx, p.r.ID, *txn); err != nil {
		// Ephemeral data taken for it is lost: it was ephemeral.
		return nil, err
	}
	pos.NextTxn++
	return txn, nil
}

// toDevice returns the to-device messages after pos for the service's
// users, in the client form plus to_user_id and to_device_id (MSC2409).
func (p *pusher) toDevice(ctx context.Context, pos int64) ([]json.RawMessage, int64, error) {
	current := p.s.store.Streams.ToDevice.Current()
	var out []json.RawMessage
	for pos < current && len(out) < maxTxnEvents {
		rows, err := p.s.store.ToDeviceBetween(ctx, pos, current, scanPage)
		if err != nil {
			return nil, pos, err
		}
		if len(rows) == 0 {
			return out, current, nil
		}
		for _, m := range rows {
			pos = m.Pos
			if !p.s.isLocal(m.UserID) || !p.r.IsInterestedInUser(m.UserID) {
				continue
			}
			ev, err := json.Marshal(struct {
				Type       string          `json:"type"`
				Sender     string          `json:"sender"`
				Content    json.RawMessage `json:"content"`
				ToUserID   string          `json:"to_user_id"`
				ToDeviceID string          `json:"to_device_id"`
			}{m.Type, m.Sender, json.RawMessage(m.Content), m.UserID, m.DeviceID})
			if err != nil {
				return nil, pos, err
			}
			out = append(out, ev)
			if len(out) == maxTxnEvents {
				break
			}
		}
		if len(rows) < scanPage && len(out) < maxTxnEvents {
			pos = current
		}
	}
	return out, pos, nil
}

// send delivers a transaction once: nil when the service answered 2xx.
// A service that does not know the versioned path (404 or 405 there) is
// sent it at the legacy /transactions/{txnId}, with the hs_token also in
// the query as such services expect ("Legacy routes").
func (p *pusher) send(ctx context.Context, txn *store.AppServiceTxn) error {
	ctx, cancel := context.WithTimeout(ctx, transactionTimeout)
	defer cancel()
	id := url.PathEscape(strconv.FormatInt(txn.TxnID, 10))
	status, err := p.put(ctx, p.r.URL+"/_matrix/app/v1/transactions/"+id, txn.Body)
	if err == nil && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) {
		status, err = p.put(ctx, p.r.URL+"/transactions/"+id+"?access_token="+url.QueryEscape(p.r.HSToken), txn.Body)
	}
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return fmt.Errorf("status %d", status)
	}
	return nil
}

func (p *pusher) put(ctx context.Context, u string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+p.r.HSToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// addMSC3202 adds the device lists the service's users should hear of
// since the last transaction, as /sync tells a client: changed, the users
// whose devices changed (from < pos <= to) and who share a room with the
// service's users (or are theirs), and those who came to share one
// (memberships: the transaction's membership events); left, those who no
// longer share any. It adds the key counts of the devices that the
// transaction's to-device messages are for: a claim of a device's
// one-time key is followed by the message it was claimed for (an Olm
// session starting), so the service hears the count drop with it; its own
// uploads answer with the count.
func (p *pusher) addMSC3202(ctx context.Context, body *transaction, from, to int64, memberships []*store.EventRow) error {
	var changed, left []string
	add := func(list *[]string, u string) {
		if !slices.Contains(*list, u) {
			*list = append(*list, u)
		}
	}
	for from < to {
		users, next, err := p.s.store.DeviceListChangesBetween(ctx, from, to, scanPage)
		if err != nil {
			return err
		}
		for _, u := range users {
			ok, err := p.sharesWithUsers(ctx, u)
			if err != nil {
				return err
			}
			if ok {
				add(&changed, u)
			}
		}
		if next <= from {
			break
		}
		from = next
	}
	for _, e := range memberships {
		var ev struct {
			Content struct {
				Membership string `json:"membership"`
			} `json:"content"`
		}
		if !e.StateKey.Valid || json.Unmarshal(e.JSONOnce(), &ev) != nil {
			continue
		}
		membership, member := ev.Content.Membership, e.StateKey.String
		// Whose sharing may have changed: the member, or, when the
		// member is the service's, everyone in the room.
		who := []string{member}
		if p.s.isLocal(member) && p.r.IsInterestedInUser(member) {
			ms, err := p.s.store.RoomMemberships(ctx, e.RoomID)
			if err != nil {
				return err
			}
			who = who[:0]
			for _, m := range ms {
				if m.Membership == "join" && !(p.s.isLocal(m.UserID) && p.r.IsInterestedInUser(m.UserID)) {
					who = append(who, m.UserID)
				}
			}
		}
		for _, u := range who {
			ok, err := p.sharesWithUsers(ctx, u)
			if err != nil {
				return err
			}
			switch {
			case ok && membership == "join":
				add(&changed, u)
			case !ok && (membership == "leave" || membership == "ban"):
				add(&left, u)
			}
		}
	}
	changed = slices.DeleteFunc(changed, func(u string) bool { return slices.Contains(left, u) })
	if len(changed) > 0 || len(left) > 0 {
		if changed == nil {
			changed = []string{}
		}
		if left == nil {
			left = []string{}
		}
		body.DeviceLists = &deviceLists{Changed: changed, Left: left}
	}
	users := map[string]struct{}{}
	for _, raw := range body.ToDevice {
		var m struct {
			ToUserID string `json:"to_user_id"`
		}
		if json.Unmarshal(raw, &m) == nil && m.ToUserID != "" {
			users[m.ToUserID] = struct{}{}
		}
	}
	for u := range users {
		devices, err := p.s.store.Devices(ctx, u)
		if err != nil {
			return err
		}
		for _, d := range devices {
			counts, fallback, err := p.s.store.KeyCounts(ctx, u, d.DeviceID)
			if err != nil {
				return err
			}
			if body.OTKCounts == nil {
				body.OTKCounts, body.FallbackKeyTypes = map[string]map[string]map[string]int{}, map[string]map[string][]string{}
			}
			if body.OTKCounts[u] == nil {
				body.OTKCounts[u], body.FallbackKeyTypes[u] = map[string]map[string]int{}, map[string][]string{}
			}
			if fallback == nil {
				fallback = []string{}
			}
			body.OTKCounts[u][d.DeviceID], body.FallbackKeyTypes[u][d.DeviceID] = counts, fallback
		}
	}
	return nil
}

// sharesWithUsers reports whether a user is the service's or shares a
// joined room with one of the service's local users.
func (p *pusher) sharesWithUsers(ctx context.Context, userID string) (bool, error) {
	if p.s.isLocal(userID) && p.r.IsInterestedInUser(userID) {
		return true, nil
	}
	mates, err := p.s.store.Roommates(ctx, userID)
	if err != nil {
		return false, err
	}
	for _, m := range mates {
		if p.s.isLocal(m) && p.r.IsInterestedInUser(m) {
			return true, nil
		}
	}
	return false, nil
}

// forgetDelivered deletes the to-device messages a service acknowledged
// from its devices' inboxes: the service receives them by transaction,
// and its devices do not sync them away.
func (p *pusher) forgetDelivered(ctx context.Context, txn *store.AppServiceTxn) {
	var body struct {
		ToDevice []struct {
			ToUserID   string `json:"to_user_id"`
			ToDeviceID string `json:"to_device_id"`
		} `json:"to_device"`
	}
	if json.Unmarshal(txn.Body, &body) != nil {
		return
	}
	done := map[[2]string]bool{}
	for _, m := range body.ToDevice {
		k := [2]string{m.ToUserID, m.ToDeviceID}
		if done[k] {
			continue
		}
		done[k] = true
		if err := p.s.store.AckToDevice(ctx, m.ToUserID, m.ToDeviceID, txn.UptoToDevice); err != nil {
			p.s.log.Warn("delete delivered to-device messages", "appservice", p.r.ID, "err", err)
		}
	}
}

// wantsEphemeral reports whether the service gets an ephemeral item:
// typing and receipts in the rooms it is interested in (a private
// receipt only when it is of one of its users), the presence of its users
// and of the users sharing a room with them.
func (p *pusher) wantsEphemeral(ctx context.Context, it ephemeralItem) (bool, error) {
	own := it.userID != "" && p.s.isLocal(it.userID) && p.r.IsInterestedInUser(it.userID)
	switch {
	case it.roomID == "":
		if own {
			return true, nil
		}
		return p.sharesWithUsers(ctx, it.userID)
	case it.private && !own:
		return false, nil
	}
	return p.s.roomInterested(ctx, p.r, it.roomID)
}
