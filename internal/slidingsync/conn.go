package slidingsync

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/streamtoken"
	"luxchat/internal/sync"
)

// Connections live in memory: a restart forgets them, and the pos of a
// forgotten connection answers M_UNKNOWN_POS, which has the client start
// a new one (what the MSC allows a server to do at any time). Each pos
// names its process (a random prefix), so a pos from before a restart is
// never taken for one of this process.
const (
	maxConnsPerDevice = 10               // the least recently used goes first
	connIdle          = 30 * time.Minute // a connection unused this long is dropped
	maxLazyMembers    = 256              // lazy members remembered per room; more start over (resent)
	haveAll           = 1 << 30          // sentRoom.have of a room whose whole timeline was sent
)

// connKey names a connection: the MSC scopes conn_id to a user's device.
type connKey struct{ user, device, conn string }

// conn is one sliding sync connection. Its state is kept as of the last
// two positions it answered: base (what the client confirmed by sending
// its pos) and next (the answer to that request, confirmed when the
// client sends its pos). A retried request with base's pos builds from
// base again.
type conn struct {
	key connKey

	mu       gosync.Mutex
	id       string // random: names the connection in its pos tokens
	base     *connState
	baseSeq  uint64
	next     *connState
	nextSeq  uint64
	gen      uint64 // bumped by each request: an older request's answer is not kept
	lastUsed time.Time

	// Per connection, whatever the position: the user's account data as
	// last read (m.direct, tags), which invites are shown.
	data *userData
}

// connState is what a connection has sent, as of one pos.
type connState struct {
	token streamtoken.Token     // the streams' positions when it was answered
	rooms map[string]sentRoom   // rooms sent, by id
	subs  map[string]RoomConfig // room subscriptions (kept until unsubscribed)
	ext   extConfig             // extensions' settings (kept until changed)
	lists map[string]int        // each list's count as last sent
	first bool                  // no pos: the connection's first answer
	// key is the request that made it (Request.key, 0: none); idle its
	// answer when that found nothing (see idleAnswer).
	key  uint64
	idle *idleAnswer
}

// sentRoom is what a connection last sent of a room.
type sentRoom struct {
	pos        int64  // its events up to this position were sent
	membership string // the membership it was sent with
	memberPos  int64  // position of that membership
	have       int    // how many of its newest events (as of pos) the client holds unbroken (haveAll: back to the start)
	stateKey   uint64 // RoomConfig.stateKey it was sent with
	isDM       bool
	unread     sync.Unread
	lazy       []string // members whose events were sent for lazy loading, sorted; copied on write (a slice: a map per room cost ~200 bytes for its one or two senders)
	// receipts and typing: the positions of those streams the room's
	// receipts and typing were last sent up to (0: never).
	receipts, typing int64
}

// clone copies the state for the next position; sentRoom values are
// copied by the map copy, their lazy sets shared until written. A state
// is not written once kept: states of a connection may share their maps
// (Poll.answerQuiet).
func (st *connState) clone() *connState {
	out := &connState{token: st.token, ext: st.ext, first: false}
	out.rooms = maps.Clone(st.rooms)
	out.subs = maps.Clone(st.subs)
	out.lists = maps.Clone(st.lists)
	if out.rooms == nil {
		out.rooms = map[string]sentRoom{}
	}
	if out.subs == nil {
		out.subs = map[string]RoomConfig{}
	}
	return out
}

// connections is the registry of live connections.
type connections struct {
	mu        gosync.Mutex
	prefix    string // this process's
	byKey     map[connKey]*conn
	perDevice map[[2]string][]*conn
	lastSweep time.Time
}

func newConnections() *connections {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &connections{prefix: hex.EncodeToString(b[:]), byKey: map[connKey]*conn{}, perDevice: map[[2]string][]*conn{}}
}

// open starts a connection (replacing one with the same key).
func (cs *connections) open(k connKey) *conn {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.sweepLocked()
	var b [6]byte
	_, _ = rand.Read(b[:])
	c := &conn{key: k, id: cs.prefix + hex.EncodeToString(b[:]), lastUsed: time.Now(), data: &userData{}}
	if old := cs.byKey[k]; old != nil {
		cs.dropLocked(old)
	}
	dev := [2]string{k.user, k.device}
	if list := cs.perDevice[dev]; len(list) >= maxConnsPerDevice {
		oldest := list[0]
		for _, o := range list[1:] {
			if o.used().Before(oldest.used()) {
				oldest = o
			}
		}
		cs.dropLocked(oldest)
	}
	cs.byKey[k] = c
	cs.perDevice[dev] = append(cs.perDevice[dev], c)
	return c
}

func (c *conn) used() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastUsed
}

func (cs *connections) dropLocked(c *conn) {
	delete(cs.byKey, c.key)
	dev := [2]string{c.key.user, c.key.device}
	list := cs.perDevice[dev]
	for i, o := range list {
		if o == c {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(cs.perDevice, dev)
	} else {
		cs.perDevice[dev] = list
	}
}

// sweepLocked drops idle connections, at most once a minute.
func (cs *connections) sweepLocked() {
	if time.Since(cs.lastSweep) < time.Minute {
		return
	}
	cs.lastSweep = time.Now()
	for _, c := range cs.byKey {
		if time.Since(c.used()) > connIdle {
			cs.dropLocked(c)
		}
	}
}

// count is the number of live connections.
func (cs *connections) count() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.byKey)
}

// find returns the connection and the state a pos names, or
// M_UNKNOWN_POS. Finding next's pos confirms it: base moves on.
func (cs *connections) find(k connKey, pos string) (*conn, *connState, uint64, error) {
	unknown := errcode.UnknownPos("unknown or expired pos: start a new connection")
	id, seqText, ok := strings.Cut(pos, "_")
	if !ok {
		return nil, nil, 0, unknown
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return nil, nil, 0, unknown
	}
	cs.mu.Lock()
	cs.sweepLocked()
	c := cs.byKey[k]
	cs.mu.Unlock()
	if c == nil {
		return nil, nil, 0, unknown
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id != id || time.Since(c.lastUsed) > connIdle {
		return nil, nil, 0, unknown
	}
	switch {
	case c.next != nil && seq == c.nextSeq:
		c.base, c.baseSeq, c.next, c.nextSeq = c.next, c.nextSeq, nil, 0
	case c.base != nil && seq == c.baseSeq:
		// A retry (or a request changed and sent again): from base.
	default:
		return nil, nil, 0, unknown
	}
	c.gen++
	c.lastUsed = time.Now()
	return c, c.base, c.gen, nil
}

// start registers the request of a new connection; its state is empty.
func (c *conn) start() (*connState, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	return &connState{rooms: map[string]sentRoom{}, subs: map[string]RoomConfig{}, lists: map[string]int{}, first: true}, c.gen
}

// keep records the state a request answered with and returns its pos;
// a request superseded by a newer one keeps nothing ("" then: its client
// has gone on without it).
func (c *conn) keep(gen uint64, st *connState) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return ""
	}
	seq := c.baseSeq + 1
	if c.base == nil {
		// The connection's first answer: base is the empty state, so
		// that a retry of the first request is not an unknown pos
		// either (it has no pos, and opens a new connection anyway).
		seq = 1
	}
	c.next, c.nextSeq = st, seq
	c.lastUsed = time.Now()
	return c.id + "_" + strconv.FormatUint(seq, 10)
}

// tokenOf returns the stream positions that a pos of one of a device's
// connections stands for; false when no live connection issued it.
func (cs *connections) tokenOf(user, device, pos string) (streamtoken.Token, bool) {
	id, seqText, ok := strings.Cut(pos, "_")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if !ok || err != nil {
		return streamtoken.Token{}, false
	}
	cs.mu.Lock()
	list := append([]*conn(nil), cs.perDevice[[2]string{user, device}]...)
	cs.mu.Unlock()
	for _, c := range list {
		c.mu.Lock()
		var st *connState
		switch {
		case c.id != id:
		case c.next != nil && seq == c.nextSeq:
			st = c.next
		case c.base != nil && seq == c.baseSeq:
			st = c.base
		}
		c.mu.Unlock()
		if st != nil {
			return st.token, true
		}
	}
	return streamtoken.Token{}, false
}
