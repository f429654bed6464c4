package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	gosync "sync"
	"sync/atomic"
	"time"

	"luxchat/internal/store"
)

// Transaction limits of the Server-Server API ("Transactions").
const (
	MaxTxnPDUs = 50
	MaxTxnEDUs = 100
)

// EDU is an ephemeral data unit as sent in a transaction.
type EDU struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// Transaction is the body of PUT /_matrix/federation/v1/send/{txnId}.
type Transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []EDU             `json:"edus,omitempty"`
}

// SendFunc delivers one transaction; a nil error means the destination
// acknowledged it.
type SendFunc func(ctx context.Context, destination, txnID string, txn *Transaction) error

// QueueOptions tune a Queue.
type QueueOptions struct {
	// RetryMin is the wait after the first failure; it doubles with each
	// further failure up to RetryMax.
	RetryMin, RetryMax time.Duration
	// Send replaces the delivery (nil: Client.SendTransaction).
	Send SendFunc
}

// Queue delivers PDUs and EDUs to other servers in transactions, one
// sender goroutine per destination that has work. Items are persisted in
// the federation_outbox table before they are sent and deleted when the
// destination acknowledged them, so they survive restarts; typing
// notifications are kept in memory only (they are stale after a restart
// anyway).
//
// Concurrency: Add and Fanout only append to memory and return; one
// persister goroutine writes the rows in batches (clearing the fan-out
// rows of the events, see store.AddToOutboxDone) and then wakes the
// senders. PersistEDUs writes on the caller's goroutine instead. Each
// destination's sender runs alone, so a slow or dead destination delays
// only itself. Queue.mu guards the destination map and is a leaf lock,
// never held across I/O.
//
// A transaction is retried under the same id until acknowledged (the
// receiver deduplicates on it); after a restart unacknowledged items go
// out under a new id, which the receiver handles as it handles any PDU it
// already has.
type Queue struct {
	self   string
	store  *store.Store
	policy *Policy
	send   SendFunc
	log    *slog.Logger
	opts   QueueOptions

	txnPrefix string
	txnSeq    atomic.Int64

	mu       gosync.Mutex
	dests    map[string]*destQueue
	pending  []store.OutboxItem // waiting for the persister
	done     []string           // events whose fan-out rows the persister clears
	flushing bool               // the persister holds items taken from pending
	closed   bool

	persistWake chan struct{}
	ctx         context.Context
	cancel      context.CancelFunc
	wg          gosync.WaitGroup
	started     bool
	resumed     bool // Start has woken the destinations left from before
}

type destQueue struct {
	name      string
	running   bool
	dirty     bool  // rows were added since the sender last looked
	ephemeral []EDU // typing: never persisted
	failures  int
	retryAt   time.Time
	// failedAt and lastFailed are the first and the latest failure of
	// the current back-off (zero when none), for the admin API.
	failedAt, lastFailed time.Time
	wake                 chan struct{}
	sent                 atomic.Int64 // transactions acknowledged

	// The id of the transaction being retried and the items it holds,
	// so that a retry of the same items reuses the id (touched by the
	// destination's sender only).
	txnID, txnKey string
}

// NewQueue returns a queue for server self. Call Start to send.
func NewQueue(self string, st *store.Store, policy *Policy, client *Client, log *slog.Logger, opts QueueOptions) *Queue {
	if opts.RetryMin <= 0 {
		opts.RetryMin = 10 * time.Second
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(opts.RetryMin, time.Hour)
	}
	if log == nil {
		log = slog.Default()
	}
	q := &Queue{self: self, store: st, policy: policy, log: log, opts: opts,
		// Unique per start, so that ids never repeat across restarts.
		txnPrefix: strconv.FormatInt(time.Now().UnixMilli(), 36) + strconv.FormatUint(uint64(rand.Uint32()), 36),
		dests:     map[string]*destQueue{}, persistWake: make(chan struct{}, 1)}
	q.send = opts.Send
	if q.send == nil && client != nil {
		q.send = client.SendTransaction
	}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	return q
}

// Start launches the persister and a sender for every destination with
// items left from before a restart.
func (q *Queue) Start(ctx context.Context) error {
	q.mu.Lock()
	if q.started {
		q.mu.Unlock()
		return nil
	}
	q.started = true
	q.mu.Unlock()
	q.wg.Add(1)
	go q.persister()
	dests, err := q.store.OutboxDestinations(ctx)
	if err != nil {
		return fmt.Errorf("federation queue: %w", err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range dests {
		q.kickLocked(q.destLocked(d))
	}
	q.resumed = true
	return nil
}

// Close stops the senders after the items added so far are persisted.
// In-flight transactions are abandoned; their items stay queued.
func (q *Queue) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	started := q.started
	q.mu.Unlock()
	if !started {
		q.flush() // nothing else would write what was added
	}
	q.signalPersister()
	q.cancel()
	q.wg.Wait()
}

// Backoff is the wait before the next attempt after n consecutive
// failures: RetryMin doubled n-1 times, at most RetryMax.
func (q *Queue) Backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := q.opts.RetryMin
	for i := 1; i < n && d < q.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, q.opts.RetryMax)
}

// AddPDUs queues events for destinations (persisted). Destinations the
// policy refuses, and ourselves, are skipped.
func (q *Queue) AddPDUs(destinations []string, eventIDs []string) {
	var items []store.OutboxItem
	for _, d := range q.allowed(destinations) {
		for _, e := range eventIDs {
			items = append(items, store.OutboxItem{Destination: d, EventID: e})
		}
	}
	q.add(items)
}

// PDUSend is a set of events for a set of destinations.
type PDUSend struct {
	Destinations []string
	EventIDs     []string
}

// Fanout queues events like AddPDUs and clears the fan-out rows of the
// events done in the transaction that writes the outbox rows.
func (q *Queue) Fanout(sends []PDUSend, done []string) {
	items := q.pduItems(sends)
	if len(items) == 0 && len(done) == 0 {
		return
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		// The fan-out rows stay: the next start queues the events.
		return
	}
	q.pending = append(q.pending, items...)
	q.done = append(q.done, done...)
	q.mu.Unlock()
	q.signalPersister()
}

// PersistFanout writes the outbox rows of sends and clears the fan-out
// rows of done at once; for recovery before Start, which then sends them.
func (q *Queue) PersistFanout(ctx context.Context, sends []PDUSend, done []string) error {
	return q.store.AddToOutboxDone(ctx, q.pduItems(sends), done, time.Now().UnixMilli())
}

func (q *Queue) pduItems(sends []PDUSend) []store.OutboxItem {
	var items []store.OutboxItem
	for _, sd := range sends {
		for _, d := range q.allowed(sd.Destinations) {
			for _, e := range sd.EventIDs {
				items = append(items, store.OutboxItem{Destination: d, EventID: e})
			}
		}
	}
	return items
}

// AddEDU queues an EDU for destinations (persisted).
func (q *Queue) AddEDU(destinations []string, edu EDU) {
	data, err := json.Marshal(edu)
	if err != nil {
		q.log.Error("federation queue: encode edu", "type", edu.Type, "err", err)
		return
	}
	var items []store.OutboxItem
	for _, d := range q.allowed(destinations) {
		items = append(items, store.OutboxItem{Destination: d, EDU: data})
	}
	q.add(items)
}

// PersistEDUs stores EDUs for destinations before it returns, in one
// transaction with also's writes (when not nil), then wakes the
// destinations' senders. It is AddEDU for callers that answer only once
// the EDUs are safe, or whose own rows must commit with them.
func (q *Queue) PersistEDUs(ctx context.Context, destinations []string, edus []EDU, also func(tx *store.Tx) error) error {
	ds := q.allowed(destinations)
	items := make([]store.OutboxItem, 0, len(ds)*len(edus))
	for _, e := range edus {
		data, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode edu %s: %w", e.Type, err)
		}
		for _, d := range ds {
			items = append(items, store.OutboxItem{Destination: d, EDU: data})
		}
	}
	if len(items) == 0 && also == nil {
		return nil
	}
	if err := q.store.AddToOutboxWith(ctx, items, time.Now().UnixMilli(), also); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, name := range ds {
		d := q.destLocked(name)
		d.dirty = true
		if !q.closed && q.started {
			q.kickLocked(d)
		}
	}
	return nil
}

// AddEphemeralEDU queues an EDU for destinations in memory only: it is
// lost on restart, dropped when its transaction fails, and not queued
// for a destination in back-off.
func (q *Queue) AddEphemeralEDU(destinations []string, edu EDU) {
	ds := q.allowed(destinations)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	for _, name := range ds {
		d := q.destLocked(name)
		if d.failures > 0 {
			continue // it would be stale by the time the destination is back
		}
		if len(d.ephemeral) >= MaxTxnEDUs*10 {
			d.ephemeral = d.ephemeral[1:] // a slow destination keeps only recent ones
		}
		d.ephemeral = append(d.ephemeral, edu)
		if q.started {
			q.kickLocked(d)
		}
	}
}

// Contacted is called when a server sent us an authenticated request: if
// it is in back-off, it is evidently up again, so retry at once.
func (q *Queue) Contacted(origin string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dests[origin]
	if d == nil || d.failures == 0 {
		return
	}
	d.failures, d.retryAt, d.failedAt, d.lastFailed = 0, time.Time{}, time.Time{}, time.Time{}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Sent returns how many transactions a destination acknowledged since
// start (for tests and metrics).
func (q *Queue) Sent(destination string) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d := q.dests[destination]; d != nil {
		return d.sent.Load()
	}
	return 0
}

// Failures returns how many transactions to a destination failed in a
// row (0 when it is not in back-off), for tests and metrics.
func (q *Queue) Failures(destination string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d := q.dests[destination]; d != nil {
		return d.failures
	}
	return 0
}

// Idle reports whether the queue has started, every item added so far is
// persisted and no destination's sender runs: nothing is on its way to
// any server (but what a PersistEDUs call is still writing). Tests wait
// for it before they check that something was not sent.
func (q *Queue) Idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.resumed || len(q.pending) > 0 || len(q.done) > 0 || q.flushing {
		return false
	}
	for _, d := range q.dests {
		if d.running {
			return false
		}
	}
	return true
}

// Depths returns the number of pending persisted items per destination
// known to this process (for metrics).
func (q *Queue) Depths(ctx context.Context) map[string]int64 {
	q.mu.Lock()
	names := make([]string, 0, len(q.dests))
	for n := range q.dests {
		names = append(names, n)
	}
	q.mu.Unlock()
	out := map[string]int64{}
	for _, n := range names {
		if c, err := q.store.OutboxDepth(ctx, n); err == nil {
			out[n] = c
		}
	}
	return out
}

func (q *Queue) allowed(destinations []string) []string {
	out := make([]string, 0, len(destinations))
	for _, d := range destinations {
		if d == q.self || q.policy == nil || q.policy.Allowed(d) != nil {
			continue
		}
		out = append(out, d)
	}
	return out
}

func (q *Queue) add(items []store.OutboxItem) {
	if len(items) == 0 {
		return
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.log.Warn("federation queue: closed, items dropped", "items", len(items))
		return
	}
	q.pending = append(q.pending, items...)
	q.mu.Unlock()
	q.signalPersister()
}

func (q *Queue) signalPersister() {
	select {
	case q.persistWake <- struct{}{}:
	default:
	}
}

// persister writes added items in batches until Close, then a last time.
func (q *Queue) persister() {
	defer q.wg.Done()
	for {
		select {
		case <-q.persistWake:
			q.flush()
		case <-q.ctx.Done():
			q.flush()
			return
		}
	}
}

// flush persists the pending items and wakes their destinations. A
// failed write is retried (the items stay in memory) until Close.
func (q *Queue) flush() {
	q.mu.Lock()
	items, done := q.pending, q.done
	q.pending, q.done = nil, nil
	if len(items) == 0 && len(done) == 0 {
		q.mu.Unlock()
		return
	}
	q.flushing = true
	q.mu.Unlock()
	for attempt := 0; ; attempt++ {
		// Persisting must finish even during Close: use a context of its own.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := q.store.AddToOutboxDone(ctx, items, done, time.Now().UnixMilli())
		cancel()
		if err == nil {
			break
		}
		q.log.Error("federation queue: persist", "items", len(items), "err", err)
		if attempt >= 5 {
			q.mu.Lock()
			q.flushing = false
			q.mu.Unlock()
			return
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.flushing = false // the senders started below hold the items now
	for _, it := range items {
		d := q.destLocked(it.Destination)
		d.dirty = true
		if !q.closed && q.started {
			q.kickLocked(d)
		}
	}
}

func (q *Queue) destLocked(name string) *destQueue {
	d := q.dests[name]
	if d == nil {
		d = &destQueue{name: name, wake: make(chan struct{}, 1)}
		q.dests[name] = d
	}
	return d
}

// kickLocked starts the destination's sender, or wakes it.
func (q *Queue) kickLocked(d *destQueue) {
	d.dirty = true
	if d.running {
		select {
		case d.wake <- struct{}{}:
		default:
		}
		return
	}
	if q.closed {
		return
	}
	d.running = true
	q.wg.Add(1)
	go q.sender(d)
}

// sender sends d's items until none are left, then exits.
func (q *Queue) sender(d *destQueue) {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		wait := time.Until(d.retryAt)
		q.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-q.ctx.Done():
				t.Stop()
				q.stopped(d)
				return
			case <-d.wake: // new items do not shorten a back-off, Contacted does
				t.Stop()
				continue
			case <-t.C:
			}
		}
		if q.ctx.Err() != nil {
			q.stopped(d)
			return
		}
		q.mu.Lock()
		d.dirty = false
		eph := d.ephemeral
		d.ephemeral = nil
		q.mu.Unlock()
		more, err := q.sendOnce(d, eph)
		q.mu.Lock()
		if err != nil {
			d.failures++
			d.retryAt = time.Now().Add(q.Backoff(d.failures))
			d.lastFailed = time.Now()
			if d.failedAt.IsZero() {
				d.failedAt = d.lastFailed
			}
			q.mu.Unlock()
			if q.ctx.Err() == nil {
				q.log.Info("federation: transaction failed", "destination", d.name, "failures", d.failures, "retry_in", q.Backoff(d.failures).String(), "err", err)
			}
			continue
		}
		d.failures, d.retryAt, d.failedAt, d.lastFailed = 0, time.Time{}, time.Time{}, time.Time{}
		if !more && !d.dirty && len(d.ephemeral) == 0 {
			d.running = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
	}
}

func (q *Queue) stopped(d *destQueue) {
	q.mu.Lock()
	d.running = false
	q.mu.Unlock()
}

// sendOnce sends one transaction of d's oldest items plus eph. It reports
// whether a full batch was sent (more may wait).
func (q *Queue) sendOnce(d *destQueue, eph []EDU) (more bool, err error) {
	ctx, cancel := context.WithTimeout(q.ctx, 2*time.Minute)
	defer cancel()
	pdus, edus, err := q.store.PendingOutbox(ctx, d.name, MaxTxnPDUs, MaxTxnEDUs)
	if err != nil {
		return false, err
	}
	txn := &Transaction{Origin: q.self, PDUs: []json.RawMessage{}}
	ids := make([]int64, 0, len(pdus)+len(edus))
	for _, p := range pdus {
		ids = append(ids, p.ID)
		if p.PDU != nil { // an event that is gone is just forgotten
			txn.PDUs = append(txn.PDUs, p.PDU)
		}
	}
	for _, e := range edus {
		ids = append(ids, e.ID)
		var edu EDU
		if json.Unmarshal(e.EDU, &edu) == nil {
			txn.EDUs = append(txn.EDUs, edu)
		}
	}
	if room := MaxTxnEDUs - len(txn.EDUs); len(eph) > room {
		// Keep the rest for the next transaction.
		q.mu.Lock()
		d.ephemeral = append(eph[room:], d.ephemeral...)
		q.mu.Unlock()
		eph = eph[:room]
	}
	txn.EDUs = append(txn.EDUs, eph...)
	more = len(pdus) == MaxTxnPDUs || len(edus) == MaxTxnEDUs
	if len(txn.PDUs) == 0 && len(txn.EDUs) == 0 {
		return more, q.store.DeleteFromOutbox(ctx, ids)
	}
	key := fmt.Sprint(len(ids), ids[:min(len(ids), 1)], ids[max(len(ids)-1, 0):])
	if key != d.txnKey || d.txnID == "" {
		d.txnID, d.txnKey = q.txnPrefix+"."+strconv.FormatInt(q.txnSeq.Add(1), 10), key
	}
	txnID := d.txnID
	txn.OriginServerTS = time.Now().UnixMilli()
	if err = q.send(ctx, d.name, txnID, txn); err != nil {
		if !permanent(err) {
			return false, err
		}
		// The destination refuses this transaction for good (malformed in
		// its eyes, or we may not talk to it): retrying would block the
		// queue forever, so its items are dropped.
		q.log.Warn("federation: transaction refused, dropped", "destination", d.name, "pdus", len(txn.PDUs), "edus", len(txn.EDUs), "err", err)
	} else {
		d.sent.Add(1)
	}
	d.txnID, d.txnKey = "", ""
	// Deleting must happen even if Close interrupts: the remote has them.
	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer dcancel()
	return more, q.store.DeleteFromOutbox(dctx, ids)
}

// permanent reports whether a failed transaction will never succeed.
func permanent(err error) bool {
	if errors.Is(err, ErrNotAllowed) {
		return true
	}
	var re *RemoteError
	if errors.As(err, &re) {
		switch re.Status {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			return true
		}
	}
	return false
}

// SendTransaction sends one transaction (PUT
// /_matrix/federation/v1/send/{txnId}); the answer's per-PDU errors are
// the destination's business and not retried.
func (c *Client) SendTransaction(ctx context.Context, destination, txnID string, txn *Transaction) error {
	return c.Do(ctx, destination, http.MethodPut, fedPath("/_matrix/federation/v1/send/", txnID), txn, nil)
}
