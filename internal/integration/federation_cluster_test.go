package integration

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// sectors are the four servers of the state's network in these tests.
var sectors = []string{"police.test", "gouv.test", "education.test", "communes.test"}

// cluster starts one server per sector, federating through a test CA,
// closed to every other server. The police server runs on PostgreSQL, the
// others on SQLite, so both engines federate.
type cluster struct {
	fed     *ts.Federation
	servers map[string]*ts.Server
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{fed: newFederation(t), servers: map[string]*ts.Server{}}
	for _, host := range sectors {
		opts := []ts.Option{c.fed.ServerNamed(host), closedTo(sectors...)}
		if host == "police.test" {
			opts = append(opts, ts.WithPostgres(t))
		}
		c.servers[host] = ts.New(t, opts...)
	}
	return c
}

// closedTo allows federation with the named hosts only, on any port.
func closedTo(hosts ...string) ts.Option {
	return ts.WithConfig(func(c *config.Config) {
		c.Federation.AllowedServers = append([]string(nil), hosts...)
		c.Federation.RetryBaseDelay = 50 * time.Millisecond
		c.Federation.RetryMaxDelay = 500 * time.Millisecond
	})
}

// eventually retries check until it returns "" or the deadline passes.
func eventually(t *testing.T, within time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// timelineBodies returns the message bodies of a room as c sees them,
// oldest first.
func timelineBodies(t *testing.T, c *ts.Client, roomID string) []string {
	t.Helper()
	r := c.Do("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/messages?dir=b&limit=200", esc(roomID)), nil)
	if r.Status != 200 {
		return nil
	}
	var p messagesPage
	if err := r.JSON(&p); err != nil {
		t.Fatal(err)
	}
	got := bodies(p.Chunk)
	slices.Reverse(got)
	return got
}

func waitForBodies(t *testing.T, c *ts.Client, roomID string, want ...string) {
	t.Helper()
	eventually(t, 20*time.Second, func() string {
		got := timelineBodies(t, c, roomID)
		for _, w := range want {
			if !slices.Contains(got, w) {
				return fmt.Sprintf("%s does not see %q in %s; sees %q", c.UserID, w, roomID, got)
			}
		}
		return ""
	})
}

func joinVia(t *testing.T, c *ts.Client, roomIDOrAlias, via string) {
	t.Helper()
	q := url.Values{"server_name": {via}}
	r := c.Do("POST", "/_matrix/client/v3/join/"+esc(roomIDOrAlias)+"?"+q.Encode(), map[string]any{})
	if r.Status != 200 {
		t.Fatalf("%s joins %s via %s: %d %s", c.UserID, roomIDOrAlias, via, r.Status, r.Body)
	}
}

func serverOf(userID string) string { return userID[strings.IndexByte(userID, ':')+1:] }

func TestFederationFourSectors(t *testing.T) {
	c := newCluster(t)
	top := t // servers restarted in subtests live as long as the whole test
	police, gouv, educ, communes := c.servers["police.test"], c.servers["gouv.test"], c.servers["education.test"], c.servers["communes.test"]
	alice := police.Register(t, "alice")
	bob := gouv.Register(t, "bob")
	carol := educ.Register(t, "carol")
	dave := communes.Register(t, "dave")
	policeName := police.Config.ServerName

	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "crisis", "name": "Crisis cell"})
	alias := "#crisis:" + policeName

	// Joins by alias (resolved over federation) and by room id.
	joinVia(t, bob, alias, policeName)
	joinVia(t, carol, room, policeName)
	joinVia(t, dave, alias, policeName)
	// Each server hears of the later joins from the resident server (or
	// the joiner): a message sent before that reaches only the servers its
	// own knew of, as the spec has it.
	for _, u := range []*ts.Client{alice, bob, carol, dave} {
		eventually(t, 20*time.Second, func() string {
			var m struct {
				Joined map[string]any `json:"joined"`
			}
			if r := u.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/joined_members", nil); r.Status != 200 || r.JSON(&m) != nil || len(m.Joined) != 4 {
				return fmt.Sprintf("%s does not see four members yet", u.UserID)
			}
			return ""
		})
	}

	// Everyone talks; everyone sees everything.
	var all []string
	for _, u := range []*ts.Client{alice, bob, carol, dave} {
		body := "hello from " + serverOf(u.UserID)
		u.SendText(room, body)
		all = append(all, body)
	}
	for _, u := range []*ts.Client{alice, bob, carol, dave} {
		waitForBodies(t, u, room, all...)
	}

	t.Run("server stopped mid-conversation catches up", func(t *testing.T) {
		if err := communes.Stop(); err != nil {
			t.Fatal(err)
		}
		var missed []string
		for i := range 5 {
			for _, u := range []*ts.Client{alice, bob} {
				body := fmt.Sprintf("while communes was down %d from %s", i, serverOf(u.UserID))
				u.SendText(room, body)
				missed = append(missed, body)
			}
		}
		communes = communes.Restart(top)
		c.servers["communes.test"] = communes
		waitForBodies(t, dave, room, missed...)
		// Order is preserved per sender.
		got := timelineBodies(t, dave, room)
		var fromAlice []string
		for _, b := range got {
			if strings.HasPrefix(b, "while communes was down") && strings.HasSuffix(b, serverOf(alice.UserID)) {
				fromAlice = append(fromAlice, b)
			}
		}
		if len(fromAlice) != 5 || !slices.IsSorted(fromAlice) {
			t.Fatalf("alice's messages at communes: %q", fromAlice)
		}
	})

	t.Run("partition heals and state converges", func(t *testing.T) {
		// Carol (education) may change the topic too.
		var pl map[string]any
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.power_levels", nil, &pl)
		users := pl["users"].(map[string]any)
		users[carol.UserID] = 100
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.power_levels", pl, nil)
		waitForState(t, carol, room, "m.room.power_levels", func(content map[string]any) bool {
			u, _ := content["users"].(map[string]any)
			return u[carol.UserID] != nil
		})

		west, east := []string{"police.test", "gouv.test"}, []string{"education.test", "communes.test"}
		for _, a := range west {
			for _, b := range east {
				c.fed.Cut(a, b)
			}
		}
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.topic", map[string]any{"topic": "west"}, nil)
		carol.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.topic", map[string]any{"topic": "east"}, nil)
		bob.SendText(room, "west side during the partition")
		dave.SendText(room, "east side during the partition")
		// The partition holds: each side sees its own side only.
		waitForBodies(t, alice, room, "west side during the partition")
		waitForBodies(t, carol, room, "east side during the partition")
		// Each side has tried to reach the other and failed: what it
		// sent is not delivered.
		eventually(t, 20*time.Second, func() string {
			for _, a := range west {
				for _, b := range east {
					sa, sb := c.servers[a], c.servers[b]
					if sa.Outbox.Failures(sb.Config.ServerName) == 0 {
						return a + " has not failed to reach " + b
					}
					if sb.Outbox.Failures(sa.Config.ServerName) == 0 {
						return b + " has not failed to reach " + a
					}
				}
			}
			return ""
		})
		if got := timelineBodies(t, dave, room); slices.Contains(got, "west side during the partition") {
			t.Fatalf("the east saw the west during the partition: %q", got)
		}
		if got := timelineBodies(t, bob, room); slices.Contains(got, "east side during the partition") {
			t.Fatalf("the west saw the east during the partition: %q", got)
		}
		c.fed.Heal()
		// New traffic after the partition carries both forks everywhere.
		alice.SendText(room, "after the partition (west)")
		carol.SendText(room, "after the partition (east)")
		everyone := []*ts.Client{alice, bob, carol, dave}
		for _, u := range everyone {
			waitForBodies(t, u, room, "west side during the partition", "east side during the partition",
				"after the partition (west)", "after the partition (east)")
		}
		// Every server resolves the fork to the same topic.
		eventually(t, 20*time.Second, func() string {
			var topics []string
			for _, u := range everyone {
				var content map[string]any
				r := u.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.topic", nil)
				if err := r.JSON(&content); err != nil || r.Status != 200 {
					return fmt.Sprintf("%s: topic %d %s", u.UserID, r.Status, r.Body)
				}
				topics = append(topics, fmt.Sprint(content["topic"]))
			}
			for _, tp := range topics[1:] {
				if tp != topics[0] {
					return fmt.Sprintf("topics differ: %q", topics)
				}
			}
			return ""
		})
	})
}

func waitForState(t *testing.T, c *ts.Client, roomID, typ string, ok func(map[string]any) bool) {
	t.Helper()
	eventually(t, 20*time.Second, func() string {
		var content map[string]any
		r := c.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/"+typ, nil)
		if r.Status != 200 || r.JSON(&content) != nil || !ok(content) {
			return fmt.Sprintf("%s: state %s not there yet: %d %s", c.UserID, typ, r.Status, r.Body)
		}
		return ""
	})
}

// A server outside federation.allowed_servers can neither join the
// sectors' rooms nor be reached by them.
func TestFederationClosedToOutsiders(t *testing.T) {
	fed := newFederation(t)
	police := ts.New(t, fed.ServerNamed("police.test"), closedTo("police.test", "gouv.test"))
	gouv := ts.New(t, fed.ServerNamed("gouv.test"), closedTo("police.test", "gouv.test"))
	// The outsider itself is open: only the sectors' lists keep it out.
	outsider := ts.New(t, fed.ServerNamed("outsider.test"))
	alice := police.Register(t, "alice")
	bob := gouv.Register(t, "bob")
	eve := outsider.Register(t, "eve")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "open"})
	joinVia(t, bob, room, police.Config.ServerName)
	alice.SendText(room, "for the state's network only")

	// The outsider cannot join, by id or by alias.
	q := url.Values{"server_name": {police.Config.ServerName}}.Encode()
	for _, target := range []string{room, "#open:" + police.Config.ServerName} {
		r := eve.Do("POST", "/_matrix/client/v3/join/"+esc(target)+"?"+q, map[string]any{})
		if r.Status == 200 {
			t.Fatalf("outsider joined %s", target)
		}
	}
	// Inviting the outsider is refused with M_FORBIDDEN.
	r := alice.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": eve.UserID})
	if r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
		t.Fatalf("invite of an outsider: %d %s", r.Status, r.Body)
	}
	// Nothing of the room reached the outsider.
	if _, err := outsider.Rooms.Version(t.Context(), room); err == nil {
		t.Fatal("the outsider knows the room")
	}
	// A remote profile look-up towards the outsider is refused locally.
	r = alice.Do("GET", "/_matrix/client/v3/profile/"+esc(eve.UserID), nil)
	if r.Status == 200 {
		t.Fatalf("profile of an outsider: %d %s", r.Status, r.Body)
	}
}
