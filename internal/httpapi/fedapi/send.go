package fedapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// EDUHandler takes the EDUs of inbound transactions (typing, receipts,
// presence, device lists, to-device messages). It must not block for long:
// the sending server waits for the transaction's answer.
type EDUHandler interface {
	HandleEDU(ctx context.Context, origin, eduType string, content json.RawMessage)
}

// Transaction limits ("Transactions": at most 50 PDUs and 100 EDUs).
const (
	maxTxnPDUs = 50
	maxTxnEDUs = 100
	// roomWorkers bounds how many rooms of one transaction are processed
	// at once; PDUs of different rooms are independent.
	roomWorkers = 4
)

// transaction is the body of PUT /send/{txnId}.
type transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []edu             `json:"edus"`
}

type edu struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// parseTransaction decodes and checks a transaction body: an object with
// an origin, at most 50 PDUs that are objects and at most 100 EDUs with a
// type.
func parseTransaction(body []byte) (*transaction, error) {
	var t transaction
	if err := httputil.DecodeJSON(body, &t); err != nil {
		return nil, err
	}
	if t.Origin == "" {
		return nil, errcode.BadJSON("origin is required")
	}
	if t.PDUs == nil {
		return nil, errcode.BadJSON("pdus is required")
	}
	if len(t.PDUs) > maxTxnPDUs || len(t.EDUs) > maxTxnEDUs {
		return nil, errcode.BadJSON("a transaction holds at most %d PDUs and %d EDUs", maxTxnPDUs, maxTxnEDUs)
	}
	for _, p := range t.PDUs {
		if p = bytes.TrimSpace(p); len(p) == 0 || p[0] != '{' {
			return nil, errcode.BadJSON("every PDU must be an object")
		}
	}
	for _, e := range t.EDUs {
		if e.Type == "" {
			return nil, errcode.BadJSON("every EDU needs an edu_type")
		}
	}
	return &t, nil
}

// txnLocks serialises retries of one transaction that arrive while the
// first attempt is still running, so that a transaction runs once.
type txnLocks struct {
	mu sync.Mutex
	m  map[string]*sync.Mutex
}

func (l *txnLocks) lock(key string) func() {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*sync.Mutex{}
	}
	m, ok := l.m[key]
	if !ok {
		m = &sync.Mutex{}
		l.m[key] = m
	}
	l.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		l.mu.Lock()
		if l.m[key] == m && m.TryLock() {
			delete(l.m, key)
			m.Unlock()
		}
		l.mu.Unlock()
	}
}

type pduResult struct {
	Error string `json:"error,omitempty"`
}

// PUT /_matrix/federation/v1/send/{txnId}
func (a *API) sendTransaction(r *httputil.Request) (any, error) {
	origin := r.Origin
	if a.Rooms == nil {
		return nil, errcode.Unrecognized("rooms are not served over federation here")
	}
	txnID := r.Var("txnId")
	body, err := r.Body()
	if err != nil {
		return nil, err
	}
	t, err := parseTransaction(body)
	if err != nil {
		return nil, err
	}
	if t.Origin != origin {
		return nil, errcode.Forbidden("transaction origin %q is not the authenticated server", t.Origin)
	}
	key := origin + "\x00" + txnID
	unlock := a.txns.lock(key)
	defer unlock()
	ctx := r.Context()
	if resp, err := a.Store.FederationTxn(ctx, origin, txnID); err == nil {
		return json.RawMessage(resp), nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	// The work continues if the sender gives up waiting: a retry then
	// finds the stored answer.
	work := context.WithoutCancel(ctx)
	results := map[string]pduResult{}
	byRoom := map[string][]*pdu.Event{}
	var order []string
	parsed, errs := a.parsePDUs(work, t.PDUs)
	for i, ev := range parsed {
		if err := errs[i]; err != nil {
			httputil.Logger(ctx).Info("federation: PDU dropped", "origin", origin, "err", err)
			continue
		}
		if _, dup := results[ev.ID]; dup {
			continue
		}
		results[ev.ID] = pduResult{}
		if _, ok := byRoom[ev.RoomID]; !ok {
			order = append(order, ev.RoomID)
		}
		byRoom[ev.RoomID] = append(byRoom[ev.RoomID], ev)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, roomWorkers)
	for _, roomID := range order {
		evs := byRoom[roomID]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out := map[string]error{}
			// A room not known here has no ACL to apply (ReceivePDUs
			// takes only the end of a local user's invite from it).
			if ok, err := a.Rooms.ServerACLAllows(work, roomID, origin); (err != nil && !isNotFound(err)) || (err == nil && !ok) {
				for _, ev := range evs {
					out[ev.ID] = errors.New("server is denied by the room's server ACL")
				}
			} else {
				out = a.RoomFed.ReceivePDUs(work, origin, evs)
			}
			mu.Lock()
			for id, err := range out {
				if err != nil {
					results[id] = pduResult{Error: err.Error()}
				}
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if a.EDU != nil {
		for _, e := range t.EDUs {
			a.EDU.HandleEDU(work, origin, e.Type, e.Content)
		}
	}
	resp, err := json.Marshal(map[string]any{"pdus": results})
	if err != nil {
		return nil, err
	}
	if err := a.Store.PutFederationTxn(work, origin, txnID, resp); err != nil {
		return nil, err
	}
	return json.RawMessage(resp), nil
}

// nowMS is the origin_server_ts of our answers.
func nowMS() int64 { return time.Now().UnixMilli() }

func isNotFound(err error) bool {
	e, ok := errcode.As(err)
	return ok && e.Code == "M_NOT_FOUND"
}
