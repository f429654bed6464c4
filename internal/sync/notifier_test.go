package sync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"luxchat/internal/store"
	"luxchat/internal/testutil/pgtest"
)

// holdPosition allocates a position of st in a transaction that stays open
// until the returned release is called (PostgreSQL: writers run
// concurrently), so that later positions finish hidden behind it.
func holdPosition(t *testing.T, st *store.Store, stream *store.Stream) (release func()) {
	started, finish, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- st.InTx(context.Background(), func(tx *store.Tx) error {
			tx.Alloc(stream)
			close(started)
			<-finish
			return nil
		})
	}()
	<-started
	return func() {
		close(finish)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// A user woken while an earlier position is still in flight is woken again
// once it lands, so a sync that looked too early does not wait forever.
// Needs concurrent writers, so PostgreSQL.
func TestNotifierRewakesHiddenNews(t *testing.T) {
	st, err := store.Open(context.Background(), store.Options{PostgresDSN: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := NewNotifier(st.Streams.Sync()...)
	ctx := context.Background()

	release := holdPosition(t, st, st.Streams.Receipts) // the lower position
	if err := st.InTx(ctx, func(tx *store.Tx) error { tx.Alloc(st.Streams.Receipts); return nil }); err != nil {
		t.Fatal(err)
	}
	first := n.Chan("@a:x")
	n.Wake("@a:x") // news at the higher position, hidden for now
	<-first
	second := n.Chan("@a:x") // the sync looked, found nothing, waits again
	release()
	select {
	case <-second:
	case <-time.After(2 * time.Second):
		t.Fatal("not woken again when the hidden position became visible")
	}
}

// A room event whose position is hidden wakes nobody until it is visible.
func TestNotifierDefersHiddenRoomEvents(t *testing.T) {
	st, err := store.Open(context.Background(), store.Options{PostgresDSN: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := NewNotifier(st.Streams.Sync()...)
	ctx := context.Background()
	release := holdPosition(t, st, st.Streams.Events)
	var pos int64
	if err := st.InTx(ctx, func(tx *store.Tx) error { pos = tx.Alloc(st.Streams.Events); return nil }); err != nil {
		t.Fatal(err)
	}
	ch := n.Chan("@a:x")
	n.RoomEvent("!r:x", map[string]struct{}{"@a:x": {}}, nil, pos)
	select {
	case <-ch:
		t.Fatal("woken before the event is visible")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("not woken once the event became visible")
	}
}

func TestNotifierWake(t *testing.T) {
	n := NewNotifier()
	ch := n.Chan("@a:x")
	n.Wake("@b:x")
	select {
	case <-ch:
		t.Fatal("woke the wrong user")
	default:
	}
	n.Wake("@a:x")
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("not woken")
	}
}

// A room event wakes the waiting members of the room and the users it
// names besides, nobody else, whichever side is smaller: the members or
// the users waiting.
func TestNotifierRoomEventWakesMembers(t *testing.T) {
	st := openStore(t)
	for _, members := range []int{2, 1000} {
		n := NewNotifier(st.Streams.Sync()...)
		joined := membersNamed(members)
		waiting := map[string]<-chan struct{}{}
		for _, u := range []string{"@m0:x", "@m1:x", "@left:x", "@stranger:x", "@other1:x", "@other2:x", "@other3:x"} {
			waiting[u] = n.Chan(u)
		}
		n.RoomEvent("!r:x", joined, []string{"@left:x"}, st.Streams.Events.Current())
		for u, ch := range waiting {
			want := u == "@m0:x" || u == "@m1:x" || u == "@left:x"
			select {
			case <-ch:
				if !want {
					t.Fatalf("%d members: %s woken", members, u)
				}
			default:
				if want {
					t.Fatalf("%d members: %s not woken", members, u)
				}
			}
		}
	}
}

// countWaker counts its wakes.
type countWaker struct{ n int }

func (w *countWaker) Wake() { w.n++ }

// A parked poll's waker is called once at its user's next wake, from a
// room event whichever side is smaller, and not after StopWake.
func TestNotifierAfterWake(t *testing.T) {
	st := openStore(t)
	for _, members := range []int{2, 1000} {
		n := NewNotifier(st.Streams.Sync()...)
		joined := membersNamed(members)
		a, b, stopped, stranger := &countWaker{}, &countWaker{}, &countWaker{}, &countWaker{}
		n.AfterWake("@m0:x", a, true)
		n.AfterWake("@m0:x", b, true) // two polls of one user
		n.AfterWake("@m1:x", stopped, true)
		n.AfterWake("@stranger:x", stranger, true)
		n.StopWake("@m1:x", stopped)
		n.RoomEvent("!r:x", joined, nil, st.Streams.Events.Current())
		n.RoomEvent("!r:x", joined, nil, st.Streams.Events.Current()) // once only
		if a.n != 1 || b.n != 1 || stopped.n != 0 || stranger.n != 0 {
			t.Fatalf("%d members: woken %d, %d, stopped %d, stranger %d; want 1, 1, 0, 0", members, a.n, b.n, stopped.n, stranger.n)
		}
		n.Wake("@stranger:x")
		if stranger.n != 1 {
			t.Fatalf("%d members: Wake did not call the waker", members)
		}
	}
}

// A presence change wakes only the waits that want presence; the others
// wait on for their user's next news, and the notifier says whether any
// wait wants presence at all.
func TestNotifierWakePresence(t *testing.T) {
	st := openStore(t)
	n := NewNotifier(st.Streams.Sync()...)
	if n.WantsPresence() {
		t.Fatal("no wait, yet presence is wanted")
	}
	wants, quiet := &countWaker{}, &countWaker{}
	n.AfterWake("@a:x", quiet, false)
	if n.WantsPresence() {
		t.Fatal("only a wait without presence, yet presence is wanted")
	}
	n.AfterWake("@a:x", wants, true)
	quietCh := n.ChanFor("@b:x", false)
	if !n.WantsPresence() {
		t.Fatal("a wait wants presence, WantsPresence says none")
	}
	n.WakePresence("@a:x", "@b:x")
	select {
	case <-quietCh:
		t.Fatal("a channel without presence closed by a presence change")
	default:
	}
	if wants.n != 1 || quiet.n != 0 {
		t.Fatalf("presence change: woken %d and %d (without presence); want 1 and 0", wants.n, quiet.n)
	}
	if n.WantsPresence() {
		t.Fatal("the wait that wanted presence was woken, yet presence is still wanted")
	}
	n.Wake("@a:x", "@b:x")
	if quiet.n != 1 {
		t.Fatalf("other news: the wait without presence woken %d times, want 1", quiet.n)
	}
	select {
	case <-quietCh:
	default:
		t.Fatal("a channel without presence not closed by other news")
	}
	// A channel shared by a wait that wants presence closes on it.
	ch := n.ChanFor("@c:x", false)
	n.ChanFor("@c:x", true)
	n.WakePresence("@c:x")
	select {
	case <-ch:
	default:
		t.Fatal("a shared channel that one wait wants presence on stayed open")
	}
	if n.WantsPresence() {
		t.Fatal("every wait was woken, yet presence is still wanted")
	}
}

// openStore opens a SQLite store in a temporary directory for the test.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// membersNamed is a joined set of n members, @m0:x to @m<n-1>:x.
func membersNamed(n int) map[string]struct{} {
	joined := make(map[string]struct{}, n)
	for i := range n {
		joined[fmt.Sprintf("@m%d:x", i)] = struct{}{}
	}
	return joined
}
