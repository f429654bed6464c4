package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"luxchat/internal/rooms"
	"luxchat/internal/server"
	"luxchat/internal/store"
)

// benchPassword is every account's password. Accounts get one argon2id
// hash of it made by the server's own hashing (default costs), so that
// the login phase pays the real KDF while setup pays it once.
const benchPassword = "sector bench password"

// plan is the shape of the sector, derived from -scale. At scale 1 it is
// the sector: 40,000 accounts, 1,000 online, rooms of 1,000,
// 3,000 and 10,000 members, thousands of DMs and small groups, and a few
// people in 1,000 rooms each.
type plan struct {
	users      int
	bigSizes   [3]int // the big rooms: two departments and "all staff"
	pollers    int    // online members of the all-staff room (long-polling)
	dms        int
	groups     int
	heavy      int // users in heavyRoom rooms each
	heavyRoom  int // rooms per heavy user (half DMs, half groups)
	joiners    int // new members joining each big room over HTTP
	loginUsers int // accounts whose logins are measured
	messages   int // messages per DM or group at setup
	bigMsgs    int // messages per big room at setup

	loginCount  int // logins measured
	burst       int // messages of the burst in DMs and groups
	storageMsgs int // messages whose storage is measured
	connected   int // clients long-polling at once in the connected phase

	// sliders are the rooms of two more accounts, made only for the
	// sliding phase: sliders[1] rooms for one, the first sliders[0] of
	// them for the other (with the heavy users' 1,000 rooms, three sizes
	// of room list). Zero when the phase does not run.
	sliders [2]int
}

func newPlan(scale float64) plan {
	n := func(full, least int) int { return max(least, int(math.Round(float64(full)*scale))) }
	p := plan{
		users:      n(40000, 200),
		bigSizes:   [3]int{n(1000, 10), n(3000, 20), n(10000, 60)},
		pollers:    n(1000, 5),
		dms:        n(4000, 30),
		groups:     n(1500, 15),
		heavy:      3,
		heavyRoom:  n(1000, 10),
		joiners:    n(100, 3),
		loginUsers: 20,
		messages:   3,
		bigMsgs:    10,

		loginCount:  n(200, 20),
		burst:       n(500, 50),
		storageMsgs: n(2000, 100),
		connected:   n(10000, 50),
	}
	// Each group holds one heavy user and each heavy user is in
	// heavyRoom/2 groups: keep enough groups.
	p.groups = max(p.groups, p.heavy*p.heavyRoom/2)
	return p
}

// The user index ranges of the plan. The all-staff room holds users
// [0, big); its first pollers are the online users; the two departments
// are the last members of all staff, after the pollers; joiners and heavy
// users are at the end, in no big room.
func (p plan) allStaff() (lo, hi int) { return 0, p.bigSizes[2] }
func (p plan) department(i int) (lo, hi int) {
	hi = p.bigSizes[2]
	if i == 1 {
		hi -= p.bigSizes[0]
	}
	return hi - p.bigSizes[i], hi
}
func (p plan) joinerBase() int      { return p.users - p.heavy - 3*p.joiners }
func (p plan) heavyUser(k int) int  { return p.users - p.heavy + k }
func (p plan) sliderUser(k int) int { return p.users + k } // after the sector's accounts

// accounts is the number of accounts setup makes: the sector's and the
// sliding phase's two.
func (p plan) accounts() int {
	if p.sliders[1] > 0 {
		return p.users + 2
	}
	return p.users
}

// withSliders adds the sliding phase's room lists: 100 and 5,000 rooms
// at scale 1.
func (p plan) withSliders(scale float64) plan {
	n := func(full, least int) int { return max(least, int(math.Round(float64(full)*scale))) }
	p.sliders = [2]int{n(100, 20), n(5000, 50)} // apart from the heavy users' 10 at small scales
	return p
}
func (p plan) ordinary() int { return p.joinerBase() } // [0, ordinary) take part in DMs and groups
func (p plan) loginUser(k int) int {
	return p.bigSizes[2] + k // outside the big rooms, so their logins disturb nothing
}

// check reports a plan whose ranges overlap.
func (p plan) check() error {
	if p.bigSizes[0]+p.bigSizes[1]+p.pollers+2 > p.bigSizes[2] { // +2: a member and a sender who are not online
		return errors.New("departments and pollers do not fit in the all-staff room")
	}
	if p.bigSizes[2]+p.loginUsers+10 > p.joinerBase() {
		return errors.New("too few users for the big rooms, logins and joiners")
	}
	return nil
}

// account is one user and the access token made for it at setup.
type account struct {
	id, device, token string
}

// room is one room built at setup and who is in it.
type room struct {
	id          string
	kind        string // "big", "dm", "group"
	members     []int  // user indexes, creator first
	joinedLater int    // members who joined over HTTP in the join phase
}

func (r *room) size() int { return len(r.members) + r.joinedLater }

// sector is what setup built, for the measured phases.
type sector struct {
	plan     plan
	server   string // server name
	users    []account
	big      [3]*room // department 1, department 2, all staff
	dms      []*room
	groups   []*room
	sliders  []*room  // the sliding phase's rooms (plan.sliders)
	setup    []timing // setup phases in order
	bigNotes []string // why a big room was left smaller than planned
}

// timing is one setup step.
type timing struct {
	name string
	d    time.Duration
	note string
}

func (sec *sector) user(i int) string { return sec.users[i].id }

// build makes the sector in-process through the store and the rooms
// service: no HTTP, no KDF per account. budget bounds the big rooms'
// joins, the slow part of today's server. The steps run one after the
// other: building the big rooms beside the DMs and groups was slower in
// all (on SQLite both wait for the one writer).
func build(ctx context.Context, s *server.Server, p plan, budget time.Duration, logf func(string, ...any)) (*sector, error) {
	sec := &sector{plan: p, server: s.Config.ServerName}
	steps := []struct {
		name string
		run  func() (string, error)
	}{
		{"accounts", func() (string, error) { return sec.createAccounts(ctx, s, logf) }},
		{"big rooms (joins through the rooms service)", func() (string, error) { return sec.buildBigRooms(ctx, s, budget, logf) }},
		{"DMs", func() (string, error) { return sec.buildDMs(ctx, s, logf) }},
		{"groups", func() (string, error) { return sec.buildGroups(ctx, s, logf) }},
		{"setup messages", func() (string, error) { return sec.sendSetupMessages(ctx, s, logf) }},
		{"m.direct", func() (string, error) { return sec.putDirect(ctx, s) }},
	}
	if p.sliders[1] > 0 {
		steps = append(steps, struct {
			name string
			run  func() (string, error)
		}{"the sliding phase's room lists", func() (string, error) { return sec.buildSliderRooms(ctx, s, logf) }})
	}
	for _, st := range steps {
		t0 := time.Now()
		note, err := st.run()
		if err != nil {
			return nil, fmt.Errorf("setup %s: %w", st.name, err)
		}
		sec.setup = append(sec.setup, timing{st.name, time.Since(t0), note})
		logf("setup %s: %s, %s", st.name, time.Since(t0).Round(time.Millisecond), note)
	}
	return sec, nil
}

// createAccounts makes one account through the accounts service (one
// real password hash), then every other with the same hash straight
// through the store, each with a device and an access token, a few
// thousand per transaction.
func (sec *sector) createAccounts(ctx context.Context, s *server.Server, logf func(string, ...any)) (string, error) {
	p := sec.plan
	first, err := s.Accounts.CreateUser(ctx, localpart(0), benchPassword, false)
	if err != nil {
		return "", err
	}
	u, err := s.Store.GetUser(ctx, first)
	if err != nil {
		return "", err
	}
	sec.users = make([]account, p.accounts())
	const batch = 2000
	for lo := 0; lo < len(sec.users); lo += batch {
		hi := min(lo+batch, len(sec.users))
		err := s.Store.InTx(ctx, func(tx *store.Tx) error {
			for i := lo; i < hi; i++ {
				a := account{id: "@" + localpart(i) + ":" + sec.server, device: "SECTORBENCH", token: newToken()}
				if i > 0 {
					err := tx.CreateUser(ctx, store.User{UserID: a.id, PasswordHash: u.PasswordHash,
						DisplayName: sql.NullString{String: localpart(i), Valid: true}})
					if err != nil {
						return err
					}
				}
				// Seen before, from where the benchmark's clients come: a
				// first request does not grow the row (which the storage
				// phase would count).
				seen := store.Device{UserID: a.id, DeviceID: a.device, LastSeenTS: sql.NullInt64{Int64: time.Now().UnixMilli(), Valid: true},
					LastSeenIP: sql.NullString{String: "127.0.0.1", Valid: true}}
				if err := tx.UpsertDevice(ctx, seen); err != nil {
					return err
				}
				if err := tx.InsertAccessToken(ctx, tokenHash(a.token), a.id, a.device, 0); err != nil {
					return err
				}
				sec.users[i] = a
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		if hi%10000 == 0 {
			logf("  accounts: %d", hi)
		}
	}
	return fmt.Sprintf("%d accounts with a device and token each", len(sec.users)), nil
}

func localpart(i int) string { return fmt.Sprintf("u%05d", i) }

// newToken is an access token as the accounts package makes them.
func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "lxc_" + base64.RawURLEncoding.EncodeToString(b)
}

// tokenHash is how the accounts package stores an access token (SHA-256
// in hex). Were that to change, every request of the benchmark would get
// 401 and the smoke test would fail.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// buildBigRooms creates the three big rooms and joins their members one
// by one through the rooms service (as many clients joining would), the
// three rooms at once. Past the budget, rooms stay as large as they got.
func (sec *sector) buildBigRooms(ctx context.Context, s *server.Server, budget time.Duration, logf func(string, ...any)) (string, error) {
	p := sec.plan
	names := [3]string{"Department A", "Department B", "All staff"}
	deadline := time.Now().Add(budget)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		lo, hi := p.department(i)
		if i == 2 {
			lo, hi = p.allStaff()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sec.big[i], errs[i] = sec.bigRoom(ctx, s, names[i], lo, hi, deadline, logf)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	note := fmt.Sprintf("%d, %d and %d members", len(sec.big[0].members), len(sec.big[1].members), len(sec.big[2].members))
	for i, r := range sec.big {
		if want := p.bigSizes[i]; len(r.members) < want {
			sec.bigNotes = append(sec.bigNotes, fmt.Sprintf("%s: %d of %d members (setup budget %s reached)", names[i], len(r.members), want, budget))
		}
	}
	return note, nil
}

func (sec *sector) bigRoom(ctx context.Context, s *server.Server, name string, lo, hi int, deadline time.Time, logf func(string, ...any)) (*room, error) {
	id, err := s.Rooms.CreateRoom(ctx, sec.user(lo), rooms.CreateRequest{Preset: "public_chat", Name: &name})
	if err != nil {
		return nil, err
	}
	r := &room{id: id, kind: "big", members: []int{lo}}
	t0, last := time.Now(), time.Now()
	step := max(1, (hi-lo)/10)
	for i := lo + 1; i < hi; i++ {
		if time.Now().After(deadline) {
			break
		}
		if err := join(ctx, s, id, sec.user(i)); err != nil {
			return nil, err
		}
		r.members = append(r.members, i)
		if n := len(r.members); n%step == 0 && hi-lo >= 1000 {
			logf("  %s: %d members, last %d joins %s (%.1f ms each)", name, n, step, time.Since(last).Round(time.Millisecond),
				float64(time.Since(last).Microseconds())/1000/float64(step))
			last = time.Now()
		}
	}
	logf("  %s: %d members in %s", name, len(r.members), time.Since(t0).Round(time.Millisecond))
	return r, nil
}

func join(ctx context.Context, s *server.Server, roomID, user string) error {
	_, err := s.Rooms.ChangeMembership(ctx, rooms.MemberChange{RoomID: roomID, Sender: user, Target: user, Membership: "join"})
	return err
}

// rng is the sector's fixed random source: the same plan builds the same
// sector.
func rng() *mrand.Rand { return mrand.New(mrand.NewPCG(13, 2026)) }

// buildDMs makes the direct chats: the first ones for the heavy users,
// the others between an online user and anyone. A DM is created as
// clients do: trusted_private_chat, is_direct, encrypted, the other
// invited, who then joins.
func (sec *sector) buildDMs(ctx context.Context, s *server.Server, logf func(string, ...any)) (string, error) {
	p := sec.plan
	r := rng()
	pairs := make([][2]int, p.dms)
	perHeavy := p.heavyRoom / 2
	for i := range pairs {
		a := r.IntN(p.ordinary())
		b := i % p.pollers // an online user
		if k := i / perHeavy; k < p.heavy {
			b = p.heavyUser(k)
		}
		for a == b {
			a = r.IntN(p.ordinary())
		}
		pairs[i] = [2]int{a, b}
	}
	sec.dms = make([]*room, len(pairs))
	enc := json.RawMessage(`{"algorithm":"m.megolm.v1.aes-sha2"}`)
	err := inParallel(ctx, len(pairs), "DMs", logf, func(i int) error {
		a, b := pairs[i][0], pairs[i][1]
		id, err := s.Rooms.CreateRoom(ctx, sec.user(a), rooms.CreateRequest{
			Preset: "trusted_private_chat", IsDirect: true, Invite: []string{sec.user(b)},
			InitialState: []rooms.StateEvent{{Type: "m.room.encryption", Content: enc}},
		})
		if err != nil {
			return err
		}
		if err := join(ctx, s, id, sec.user(b)); err != nil {
			return err
		}
		sec.dms[i] = &room{id: id, kind: "dm", members: []int{a, b}}
		return nil
	})
	return fmt.Sprintf("%d DMs", len(pairs)), err
}

// buildGroups makes the small groups (3–30 members): created with their
// invites, then joined by each member. Every group holds one heavy user;
// two in three are created by an online user.
func (sec *sector) buildGroups(ctx context.Context, s *server.Server, logf func(string, ...any)) (string, error) {
	p := sec.plan
	r := rng()
	members := make([][]int, p.groups)
	perHeavy := p.heavyRoom / 2
	total := 0
	for i := range members {
		creator := r.IntN(p.ordinary())
		if i%3 != 2 {
			creator = r.IntN(p.pollers)
		}
		m := []int{creator}
		seen := map[int]bool{creator: true}
		if k := i / perHeavy; k < p.heavy {
			m, seen[p.heavyUser(k)] = append(m, p.heavyUser(k)), true
		}
		for size := 3 + r.IntN(28); len(m) < size; {
			if u := r.IntN(p.ordinary()); !seen[u] {
				m, seen[u] = append(m, u), true
			}
		}
		members[i] = m
		total += len(m)
	}
	sec.groups = make([]*room, len(members))
	err := inParallel(ctx, len(members), "groups", logf, func(i int) error {
		m := members[i]
		id, err := sec.group(ctx, s, fmt.Sprintf("Group %d", i), m)
		if err != nil {
			return err
		}
		sec.groups[i] = &room{id: id, kind: "group", members: m}
		return nil
	})
	return fmt.Sprintf("%d groups, %d members in all", len(members), total), err
}

// group creates a private room named name by m[0], who invites the
// others, and joins them.
func (sec *sector) group(ctx context.Context, s *server.Server, name string, m []int) (string, error) {
	invites := make([]string, 0, len(m)-1)
	for _, u := range m[1:] {
		invites = append(invites, sec.user(u))
	}
	id, err := s.Rooms.CreateRoom(ctx, sec.user(m[0]), rooms.CreateRequest{Preset: "private_chat", Name: &name, Invite: invites})
	if err != nil {
		return "", err
	}
	for _, u := range m[1:] {
		if err := join(ctx, s, id, sec.user(u)); err != nil {
			return "", err
		}
	}
	return id, nil
}

// buildSliderRooms makes the sliding phase's rooms: small project
// groups, each created by an ordinary user who invites the 5,000-room
// account (and, in the first 100, the 100-room one), with one message.
func (sec *sector) buildSliderRooms(ctx context.Context, s *server.Server, logf func(string, ...any)) (string, error) {
	p := sec.plan
	r := mrand.New(mrand.NewPCG(14, 2026))
	creators := make([]int, p.sliders[1])
	for i := range creators {
		creators[i] = r.IntN(p.ordinary())
	}
	sec.sliders = make([]*room, len(creators))
	err := inParallel(ctx, len(creators), "sliding-phase rooms", logf, func(i int) error {
		m := []int{creators[i], p.sliderUser(1)}
		if i < p.sliders[0] {
			m = append(m, p.sliderUser(0))
		}
		id, err := sec.group(ctx, s, fmt.Sprintf("Project %d", i), m)
		if err != nil {
			return err
		}
		typ, content := messageContent("group", "project kick-off", 100)
		if _, err := s.Rooms.Send(ctx, id, rooms.Proto{Type: typ, Sender: sec.user(m[0]), Content: content}, nil); err != nil {
			return err
		}
		sec.sliders[i] = &room{id: id, kind: "group", members: m}
		return nil
	})
	return fmt.Sprintf("%d rooms (%d shared with the %d-room account)", len(creators), p.sliders[0], p.sliders[0]), err
}

// sendSetupMessages gives every room a short history, so that timelines
// are not empty: a few messages per DM and group, more per big room.
func (sec *sector) sendSetupMessages(ctx context.Context, s *server.Server, logf func(string, ...any)) (string, error) {
	var all []*room
	all = append(all, sec.big[:]...)
	all = append(all, sec.dms...)
	all = append(all, sec.groups...)
	var sent atomic.Int64
	err := inParallel(ctx, len(all), "rooms with messages", logf, func(i int) error {
		r := all[i]
		n := sec.plan.messages
		if r.kind == "big" {
			n = sec.plan.bigMsgs
		}
		for k := range n {
			sender := r.members[k%len(r.members)]
			typ, content := messageContent(r.kind, fmt.Sprintf("setup message %d", k), 100)
			if _, err := s.Rooms.Send(ctx, r.id, rooms.Proto{Type: typ, Sender: sec.user(sender), Content: content}, nil); err != nil {
				return err
			}
			sent.Add(1)
		}
		return nil
	})
	return fmt.Sprintf("%d messages", sent.Load()), err
}

// putDirect records every DM in both users' m.direct account data, as
// clients do after creating or accepting one.
func (sec *sector) putDirect(ctx context.Context, s *server.Server) (string, error) {
	direct := map[int]map[string][]string{}
	add := func(u, other int, roomID string) {
		if direct[u] == nil {
			direct[u] = map[string][]string{}
		}
		direct[u][sec.user(other)] = append(direct[u][sec.user(other)], roomID)
	}
	for _, r := range sec.dms {
		add(r.members[0], r.members[1], r.id)
		add(r.members[1], r.members[0], r.id)
	}
	for u, m := range direct {
		content, _ := json.Marshal(m)
		if err := s.Sync.PutAccountData(ctx, sec.user(u), "", "m.direct", content); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%d users", len(direct)), nil
}

// messageContent is a message of about size bytes of body: a text
// message in groups and big rooms, an encrypted-looking event in DMs
// (which are encrypted), whose session_id carries the body so that
// pollers recognise it.
func messageContent(kind, body string, size int) (string, json.RawMessage) {
	if len(body) < size {
		body += " " + filler[:size-len(body)-1]
	}
	if kind == "dm" {
		c, _ := json.Marshal(map[string]string{
			"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "c2VuZGVyIGtleSBvZiB0aGUgc2VjdG9yIGJlbmNobWFyaw",
			"device_id": "SECTORBENCH", "session_id": body, "ciphertext": base64.RawStdEncoding.EncodeToString([]byte(filler[:min(len(filler), 2*size)])),
		})
		return "m.room.encrypted", c
	}
	c, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
	return "m.room.message", c
}

const filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. " +
	"Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat."

// inParallel runs f(0..n-1) on four workers (the rooms service
// serialises per room; the store has one writer on SQLite), stopping at
// the first error, with a progress line every 10 seconds.
func inParallel(ctx context.Context, n int, what string, logf func(string, ...any), f func(i int) error) error {
	var done atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				logf("  %s: %d/%d", what, done.Load(), n)
			}
		}
	}()
	return parallel(ctx, n, 4, func(i int) error {
		err := f(i)
		done.Add(1)
		return err
	})
}
