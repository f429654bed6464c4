package directory

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"luxchat/internal/federation"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// Bounds on hierarchy walks.
const (
	defaultHierarchyLimit = 50
	maxHierarchyLimit     = 100
	maxHierarchyDepth     = 10
	maxHierarchyRooms     = 1000 // rooms looked at by one walk
	maxRemoteFetches      = 10   // other servers asked by one walk
	remoteHierarchyTTL    = 5 * time.Minute
)

// spaceType is the room type of spaces.
const spaceType = "m.space"

// HierarchyRoom is a room of a hierarchy: its summary and, for spaces, its
// m.space.child events in stripped form.
type HierarchyRoom struct {
	PublicRoom
	AllowedRoomIDs []string          `json:"allowed_room_ids,omitempty"`
	Encryption     string            `json:"encryption,omitempty"`
	RoomVersion    string            `json:"room_version,omitempty"`
	ChildrenState  []json.RawMessage `json:"children_state"`
}

// HierarchyResponse is the answer of the client /hierarchy.
type HierarchyResponse struct {
	Rooms     []HierarchyRoom `json:"rooms"`
	NextBatch string          `json:"next_batch,omitempty"`
}

// HierarchyRequest holds the client's parameters.
type HierarchyRequest struct {
	RoomID        string
	SuggestedOnly bool
	MaxDepth      *int
	Limit         int // 0: the default
	From          string
}

// node is what a walk knows of one room.
type node struct {
	room     HierarchyRoom
	children []childLink // sorted in the spec's order
}

// childLink is a parsed m.space.child event.
type childLink struct {
	roomID    string
	via       []string
	suggested bool
	order     string // "" when absent or invalid
	ts        int64
	stripped  json.RawMessage
}

func summaryRoom(r *store.RoomSummary) HierarchyRoom {
	h := HierarchyRoom{PublicRoom: publicRoom(r), Encryption: r.Encryption, RoomVersion: r.RoomVersion, ChildrenState: []json.RawMessage{}}
	_ = json.Unmarshal([]byte(r.AllowedRoomIDs), &h.AllowedRoomIDs)
	return h
}

// parseChild reads a stripped m.space.child event (as stored or as sent by
// another server); ok is false when it does not link a room.
func parseChild(stateKey, sender string, ts int64, content json.RawMessage) (childLink, bool) {
	var c struct {
		Via       []string        `json:"via"`
		Suggested bool            `json:"suggested"`
		Order     json.RawMessage `json:"order"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.Via) == 0 || !strings.HasPrefix(stateKey, "!") {
		return childLink{}, false
	}
	var order string
	if json.Unmarshal(c.Order, &order) != nil || !validOrder(order) {
		order = ""
	}
	stripped, _ := json.Marshal(map[string]any{
		"type": "m.space.child", "state_key": stateKey, "sender": sender, "origin_server_ts": ts, "content": content,
	})
	return childLink{roomID: stateKey, via: c.Via, suggested: c.Suggested, order: order, ts: ts, stripped: stripped}, true
}

func validOrder(o string) bool {
	if o == "" || len(o) > 50 {
		return false
	}
	for i := 0; i < len(o); i++ {
		if o[i] < 0x20 || o[i] > 0x7e {
			return false
		}
	}
	return true
}

// sortChildren orders links as the spec's "Ordering of children within a
// space" says: valid order keys first, by code point, then by timestamp,
// then by room id.
func sortChildren(cs []childLink) {
	slices.SortFunc(cs, func(a, b childLink) int {
		switch {
		case a.order != "" && b.order == "":
			return -1
		case a.order == "" && b.order != "":
			return 1
		}
		return cmp.Or(strings.Compare(a.order, b.order), cmp.Compare(a.ts, b.ts), strings.Compare(a.roomID, b.roomID))
	})
}

// loadLocal reads the summaries and children of rooms known here.
func (s *Service) loadLocal(ctx context.Context, ids []string, into map[string]*node) error {
	sums, err := s.store.RoomSummaries(ctx, ids)
	if err != nil {
		return fmt.Errorf("room summaries: %w", err)
	}
	var known []string
	for _, id := range ids {
		if sum := sums[id]; sum != nil && sum.RoomVersion != "" {
			into[id] = &node{room: summaryRoom(sum)}
			known = append(known, id)
		}
	}
	kids, err := s.store.SpaceChildren(ctx, known)
	if err != nil {
		return fmt.Errorf("space children: %w", err)
	}
	for _, id := range known {
		n := into[id]
		if n.room.RoomType != spaceType {
			// m.space.child has no effect outside spaces.
			continue
		}
		for _, c := range kids[id] {
			if l, ok := parseChild(c.ChildID, c.Sender, c.OriginTS, c.Content); ok {
				n.children = append(n.children, l)
			}
		}
		sortChildren(n.children)
		for _, l := range n.children {
			n.room.ChildrenState = append(n.room.ChildrenState, l.stripped)
		}
	}
	return nil
}

// access is what decides whether a user may see a room in a hierarchy.
type access struct {
	membership map[string]string // room id → the user's membership
}

func (s *Service) userAccess(ctx context.Context, userID string) (*access, error) {
	ms, err := s.rooms.Memberships(ctx, userID)
	if err != nil {
		return nil, err
	}
	a := &access{membership: make(map[string]string, len(ms))}
	for _, m := range ms {
		if !m.Forgotten {
			a.membership[m.RoomID] = m.Membership
		}
	}
	return a, nil
}

// mayView applies the spec's list: joined or invited, public, knockable,
// world readable, or restricted with a joined allowed room.
func (a *access) mayView(r *HierarchyRoom) bool {
	switch a.membership[r.RoomID] {
	case "join", "invite":
		return true
	case "ban":
		return false
	}
	if r.WorldReadable {
		return true
	}
	switch r.JoinRule {
	case "public", "knock", "knock_restricted":
		return true
	case "restricted":
		for _, id := range r.AllowedRoomIDs {
			if a.membership[id] == "join" {
				return true
			}
		}
	}
	return false
}

// Hierarchy walks a space depth first for a local user.
func (s *Service) Hierarchy(ctx context.Context, userID string, req HierarchyRequest) (*HierarchyResponse, error) {
	if _, err := id.ParseRoomID(req.RoomID); err != nil {
		return nil, errcode.InvalidParam("invalid room id")
	}
	maxDepth := maxHierarchyDepth
	if req.MaxDepth != nil {
		if *req.MaxDepth < 0 {
			return nil, errcode.InvalidParam("max_depth must not be negative")
		}
		maxDepth = min(*req.MaxDepth, maxHierarchyDepth)
	}
	limit := defaultHierarchyLimit
	if req.Limit < 0 {
		return nil, errcode.InvalidParam("limit must be positive")
	}
	if req.Limit > 0 {
		limit = min(req.Limit, maxHierarchyLimit)
	}
	offset := 0
	if req.From != "" {
		var err error
		if offset, err = parseHierarchyToken(req.From, req.RoomID, req.SuggestedOnly, maxDepth); err != nil {
			return nil, err
		}
	}
	acc, err := s.userAccess(ctx, userID)
	if err != nil {
		return nil, err
	}
	nodes, err := s.walkLoad(ctx, req.RoomID, maxDepth, req.SuggestedOnly)
	if err != nil {
		return nil, err
	}
	root := nodes[req.RoomID]
	if root == nil || !acc.mayView(&root.room) {
		return nil, errcode.Forbidden("you are not allowed to view this room")
	}
	// Depth-first, children in order; a room is shown once, and loops end.
	var order []HierarchyRoom
	seen := map[string]bool{}
	var visit func(id string, depth int)
	visit = func(id string, depth int) {
		n := nodes[id]
		if n == nil || seen[id] || len(order) >= maxHierarchyRooms || !acc.mayView(&n.room) {
			return
		}
		seen[id] = true
		room := n.room
		if req.SuggestedOnly {
			room.ChildrenState = []json.RawMessage{}
			for _, l := range n.children {
				if l.suggested {
					room.ChildrenState = append(room.ChildrenState, l.stripped)
				}
			}
		}
		order = append(order, room)
		if depth >= maxDepth {
			return
		}
		for _, l := range n.children {
			if !req.SuggestedOnly || l.suggested {
				visit(l.roomID, depth+1)
			}
		}
	}
	visit(req.RoomID, 0)
	out := &HierarchyResponse{Rooms: []HierarchyRoom{}}
	if offset < len(order) {
		end := min(offset+limit, len(order))
		out.Rooms = order[offset:end]
		if end < len(order) {
			out.NextBatch = hierarchyToken(end, req.RoomID, req.SuggestedOnly, maxDepth)
		}
	}
	return out, nil
}

// walkLoad loads the rooms reachable from root within maxDepth, one level
// at a time (two queries per level), asking other servers for rooms not
// known here.
func (s *Service) walkLoad(ctx context.Context, root string, maxDepth int, suggestedOnly bool) (map[string]*node, error) {
	nodes := map[string]*node{}
	level := []string{root}
	via := map[string][]string{}
	inaccessible := map[string]bool{} // as other servers told
	remoteFetches := 0
	for depth := 0; len(level) > 0 && depth <= maxDepth && len(nodes) < maxHierarchyRooms; depth++ {
		if err := s.loadLocal(ctx, level, nodes); err != nil {
			return nil, err
		}
		for _, id := range level {
			if nodes[id] != nil || inaccessible[id] || remoteFetches >= maxRemoteFetches || s.remote == nil {
				continue
			}
			remoteFetches++
			s.loadRemote(ctx, id, via[id], suggestedOnly, nodes, inaccessible)
		}
		var next []string
		for _, id := range level {
			n := nodes[id]
			if n == nil || depth == maxDepth {
				continue
			}
			for _, l := range n.children {
				if _, done := nodes[l.roomID]; done || slices.Contains(next, l.roomID) || (suggestedOnly && !l.suggested) {
					continue
				}
				if _, ok := via[l.roomID]; !ok {
					via[l.roomID] = l.via
				}
				next = append(next, l.roomID)
			}
		}
		level = next
	}
	return nodes, nil
}

// remoteNode is the node of a room summary another server sent.
func remoteNode(r *federation.HierarchyRoom) *node {
	n := &node{room: HierarchyRoom{PublicRoom: PublicRoom(r.PublicRoom), AllowedRoomIDs: r.AllowedRoomIDs, Encryption: r.Encryption, RoomVersion: r.RoomVersion}}
	n.room.ChildrenState = []json.RawMessage{}
	if n.room.JoinRule == "" {
		n.room.JoinRule = "public" // the spec's meaning of an absent join_rule
	}
	for _, c := range r.ChildrenState {
		if r.RoomType != spaceType {
			break
		}
		if l, ok := parseChild(c.StateKey, c.Sender, c.OriginServerTS, c.Content); ok {
			n.children = append(n.children, l)
		}
	}
	sortChildren(n.children)
	for _, l := range n.children {
		n.room.ChildrenState = append(n.room.ChildrenState, l.stripped)
	}
	return n
}

// loadRemote asks the via servers for a room's hierarchy; the room and the
// children they describe become nodes (rooms known here keep local data).
func (s *Service) loadRemote(ctx context.Context, roomID string, via []string, suggestedOnly bool, nodes map[string]*node, inaccessible map[string]bool) {
	for _, server := range via {
		if id.ValidServerName(server) != nil || server == s.cfg.ServerName {
			continue
		}
		h, err := s.fetchRemoteHierarchy(ctx, server, roomID, suggestedOnly)
		if err != nil {
			s.log.Info("remote hierarchy failed", "server", server, "room", roomID, "err", err)
			continue
		}
		if h.Room.RoomID != roomID {
			continue
		}
		nodes[roomID] = remoteNode(&h.Room)
		for _, id := range h.InaccessibleChildren {
			inaccessible[id] = true
		}
		for i := range h.Children {
			c := &h.Children[i]
			if _, known := nodes[c.RoomID]; !known && strings.HasPrefix(c.RoomID, "!") {
				nodes[c.RoomID] = remoteNode(c)
			}
		}
		return
	}
}

func (s *Service) fetchRemoteHierarchy(ctx context.Context, server, roomID string, suggestedOnly bool) (*federation.HierarchyResponse, error) {
	key := server + "\x00" + roomID + "\x00" + strconv.FormatBool(suggestedOnly)
	if h := s.hierCache.get(key); h != nil {
		return h, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	h, err := s.remote.Hierarchy(ctx, server, roomID, suggestedOnly)
	if err != nil {
		return nil, err
	}
	s.hierCache.put(key, h)
	return h, nil
}

// remoteCache keeps other servers' hierarchy answers for a few minutes, as
// the spec suggests. Its lock is a leaf, never held across I/O.
type remoteCache struct {
	mu      sync.Mutex
	entries map[string]remoteEntry
}

type remoteEntry struct {
	h       *federation.HierarchyResponse
	expires time.Time
}

func newRemoteCache() *remoteCache { return &remoteCache{entries: map[string]remoteEntry{}} }

func (c *remoteCache) get(key string) *federation.HierarchyResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || time.Now().After(e.expires) {
		delete(c.entries, key)
		return nil
	}
	return e.h
}

func (c *remoteCache) put(key string, h *federation.HierarchyResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) > 1000 {
		clear(c.entries)
	}
	c.entries[key] = remoteEntry{h: h, expires: time.Now().Add(remoteHierarchyTTL)}
}

// hierarchyToken remembers the position in a walk and the parameters that
// must not change while paginating.
func hierarchyToken(offset int, roomID string, suggestedOnly bool, maxDepth int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d %t %d %s", offset, suggestedOnly, maxDepth, roomID)))
}

func parseHierarchyToken(tok, roomID string, suggestedOnly bool, maxDepth int) (int, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	var offset, depth int
	var sugg bool
	var room string
	if err != nil {
		return 0, errcode.InvalidParam("unknown pagination token")
	}
	if n, _ := fmt.Sscanf(string(raw), "%d %t %d %s", &offset, &sugg, &depth, &room); n != 4 || offset < 0 {
		return 0, errcode.InvalidParam("unknown pagination token")
	}
	if room != roomID || sugg != suggestedOnly || depth != maxDepth {
		return 0, errcode.InvalidParam("suggested_only and max_depth cannot change on paginated requests")
	}
	return offset, nil
}

// FederationHierarchy answers another server's /hierarchy: the room and
// its children that the server could peek or join. Rooms unknown here are
// left out; known ones it cannot reach are listed as inaccessible.
func (s *Service) FederationHierarchy(ctx context.Context, origin, roomID string, suggestedOnly bool) (any, error) {
	if _, err := id.ParseRoomID(roomID); err != nil {
		return nil, errcode.InvalidParam("invalid room id")
	}
	nodes := map[string]*node{}
	if err := s.loadLocal(ctx, []string{roomID}, nodes); err != nil {
		return nil, err
	}
	root := nodes[roomID]
	if root == nil {
		return nil, errcode.NotFound("room does not exist")
	}
	if ok, err := s.serverMayView(ctx, origin, &root.room); err != nil {
		return nil, err
	} else if !ok {
		return nil, errcode.NotFound("room does not exist")
	}
	room := root.room
	var childIDs []string
	room.ChildrenState = []json.RawMessage{}
	for _, l := range root.children {
		if !suggestedOnly || l.suggested {
			room.ChildrenState = append(room.ChildrenState, l.stripped)
			childIDs = append(childIDs, l.roomID)
		}
	}
	if err := s.loadLocal(ctx, childIDs, nodes); err != nil {
		return nil, err
	}
	children, inaccessible := []HierarchyRoom{}, []string{}
	for _, cid := range childIDs {
		n := nodes[cid]
		if n == nil || cid == roomID {
			continue
		}
		ok, err := s.serverMayView(ctx, origin, &n.room)
		if err != nil {
			return nil, err
		}
		if ok {
			children = append(children, n.room)
		} else {
			inaccessible = append(inaccessible, cid)
		}
	}
	return map[string]any{"room": room, "children": children, "inaccessible_children": inaccessible}, nil
}

// serverMayView tells whether a server could peek or join a room: world
// readable, public or knockable rooms, rooms where it has a member, and
// restricted rooms whose allowed rooms hold one of its users.
func (s *Service) serverMayView(ctx context.Context, origin string, r *HierarchyRoom) (bool, error) {
	if r.WorldReadable {
		return true, nil
	}
	switch r.JoinRule {
	case "public", "knock", "knock_restricted":
		return true, nil
	}
	if id.ValidServerName(origin) != nil || strings.ContainsAny(origin, `%_\`) {
		return false, nil
	}
	if ok, err := s.store.ServerHasMember(ctx, r.RoomID, origin); err != nil || ok {
		return ok, err
	}
	if r.JoinRule == "restricted" {
		for _, allowed := range r.AllowedRoomIDs {
			if ok, err := s.store.ServerHasMember(ctx, allowed, origin); err != nil || ok {
				return ok, err
			}
		}
	}
	return false, nil
}
