package exchange

import (
	"context"
	"encoding/json"
	"errors"
	gosync "sync"

	"luxchat/internal/federation"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/parallel"
	"luxchat/internal/store"
)

// roomWorkers bounds how many rooms of one transaction are processed at
// once; PDUs of different rooms are independent.
const roomWorkers = 4

type pduResult struct {
	Error string `json:"error,omitempty"`
}

// ReceiveTransaction runs an inbound transaction (PUT /send/{txnId}) from
// origin, an authenticated server, whose body the caller checked: its
// PDUs go to the rooms, room by room and several rooms at once, unless a
// room's server ACL denies origin; then its EDUs are applied (HandleEDU).
// It returns the answer, {"pdus": {event id: {error}}}, which is stored
// so that a retry of the same transaction gets it again without running
// anything; retries that arrive while the first attempt runs wait for it.
// The work goes on if ctx ends (the sender gave up waiting: its retry
// finds the stored answer). dropped are the errors of the PDUs that did
// not parse, for the caller to log with its request.
func (s *Service) ReceiveTransaction(ctx context.Context, origin, txnID string, pdus []json.RawMessage, edus []federation.EDU) (resp json.RawMessage, dropped []error, err error) {
	unlock := s.txns.lock(origin + "\x00" + txnID)
	defer unlock()
	if resp, err := s.store.FederationTxn(ctx, origin, txnID); err == nil {
		return resp, nil, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, nil, err
	}
	work := context.WithoutCancel(ctx)
	results := map[string]pduResult{}
	byRoom := map[string][]*pdu.Event{}
	var order []string
	parsed, errs := s.parsePDUs(work, pdus)
	for i, ev := range parsed {
		if err := errs[i]; err != nil {
			dropped = append(dropped, err)
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
	var mu gosync.Mutex
	var wg gosync.WaitGroup
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
			if ok, err := s.rooms.ServerACLAllows(work, roomID, origin); (err != nil && !isNotFound(err)) || (err == nil && !ok) {
				for _, ev := range evs {
					out[ev.ID] = errors.New("server is denied by the room's server ACL")
				}
			} else {
				out = s.roomfed.ReceivePDUs(work, origin, evs)
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
	for _, e := range edus {
		s.HandleEDU(work, origin, e.Type, e.Content)
	}
	resp, err = json.Marshal(map[string]any{"pdus": results})
	if err != nil {
		return nil, dropped, err
	}
	if err := s.store.PutFederationTxn(work, origin, txnID, resp); err != nil {
		return nil, dropped, err
	}
	return resp, dropped, nil
}

// parsePDUs parses the PDUs of a transaction on every core: each parse
// computes the event id (a canonical JSON encoding and a hash), which is
// independent of the other PDUs.
func (s *Service) parsePDUs(ctx context.Context, raws []json.RawMessage) ([]*pdu.Event, []error) {
	evs := make([]*pdu.Event, len(raws))
	errs := make([]error, len(raws))
	parallel.For(len(raws), func(i int) { evs[i], errs[i] = s.roomfed.ParsePDU(ctx, raws[i]) })
	return evs, errs
}

func isNotFound(err error) bool {
	e, ok := errcode.As(err)
	return ok && e.Code == "M_NOT_FOUND"
}

// txnLocks serialises retries of one transaction that arrive while the
// first attempt is still running, so that a transaction runs once.
type txnLocks struct {
	mu gosync.Mutex
	m  map[string]*gosync.Mutex
}

func (l *txnLocks) lock(key string) func() {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*gosync.Mutex{}
	}
	m, ok := l.m[key]
	if !ok {
		m = &gosync.Mutex{}
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
