package roomadmin

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// DeleteRequest is the body of DELETE /_synapse/admin/v2/rooms/{roomId}.
type DeleteRequest struct {
	NewRoomUserID string `json:"new_room_user_id,omitempty"`
	RoomName      string `json:"room_name,omitempty"`
	Message       string `json:"message,omitempty"`
	Block         bool   `json:"block"`
	Purge         bool   `json:"purge"`
	ForcePurge    bool   `json:"force_purge"`
}

// Defaults of the room shutdown's replacement room, as Synapse's.
const (
	DefaultRoomName = "Content Violation Notification"
	DefaultMessage  = "Sharing illegal content on this server is not permitted and rooms in violation will be blocked."
)

// ShutdownResult is what a deletion did to the room's members.
type ShutdownResult struct {
	KickedUsers       []string `json:"kicked_users"`
	FailedToKickUsers []string `json:"failed_to_kick_users"`
	LocalAliases      []string `json:"local_aliases"`
	NewRoomID         *string  `json:"new_room_id"`
}

// DeleteStatus is one deletion's status (Synapse's field names).
type DeleteStatus struct {
	DeleteID     string         `json:"delete_id"`
	RoomID       string         `json:"room_id"`
	Status       string         `json:"status"` // scheduled | active | complete | failed
	Error        string         `json:"error,omitempty"`
	ShutdownRoom ShutdownResult `json:"shutdown_room"`
}

// statusWindow is how long a finished deletion is listed by room.
const statusWindow = 24 * time.Hour

// sendsWait bounds how long a purge waits for the members' leave events
// to go out to other servers before their rows go.
var sendsWait = 30 * time.Second

// taskRunner runs deletions, one goroutine each; the store keeps their
// status, so that a restart resumes what was scheduled or active.
type taskRunner struct {
	s      *Service
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	rooms  map[string]bool // rooms with a running deletion
}

func newTaskRunner(s *Service) *taskRunner {
	ctx, cancel := context.WithCancel(context.Background())
	return &taskRunner{s: s, ctx: ctx, cancel: cancel, rooms: map[string]bool{}}
}

func (t *taskRunner) close() {
	t.cancel()
	t.wg.Wait()
}

// start runs a task unless its room has one running; false when it has.
func (t *taskRunner) start(task store.RoomDeleteTask) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rooms[task.RoomID] || t.ctx.Err() != nil {
		return false
	}
	t.rooms[task.RoomID] = true
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() {
			t.mu.Lock()
			delete(t.rooms, task.RoomID)
			t.mu.Unlock()
		}()
		t.s.run(t.ctx, task)
	}()
	return true
}

// StartDelete schedules a room's deletion and returns its id.
func (s *Service) StartDelete(ctx context.Context, roomID, requester string, req DeleteRequest) (string, error) {
	if err := CheckRoomID(roomID); err != nil {
		return "", err
	}
	if req.NewRoomUserID != "" {
		if _, err := id.ParseUserID(req.NewRoomUserID); err != nil || !s.rooms.IsLocal(req.NewRoomUserID) {
			return "", errcode.InvalidParam("new_room_user_id must be a local user id")
		}
	}
	if _, err := s.rooms.VersionOf(ctx, roomID); errors.Is(err, rooms.ErrUnknownRoom) && !req.Block {
		return "", errcode.InvalidParam("unknown room %s", roomID)
	} else if err != nil && !errors.Is(err, rooms.ErrUnknownRoom) {
		return "", err
	}
	pending, err := s.st.RoomDeleteTasks(ctx, roomID, time.Now().UnixMilli())
	if err != nil {
		return "", err
	}
	for _, t := range pending {
		if t.Status == "scheduled" || t.Status == "active" {
			return "", errcode.InvalidParam("a deletion of this room is already in progress (%s)", t.DeleteID)
		}
	}
	params, _ := json.Marshal(req)
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	task := store.RoomDeleteTask{DeleteID: base64.RawURLEncoding.EncodeToString(b), RoomID: roomID, Requester: requester,
		Params: string(params), Status: "scheduled", Result: "{}"}
	if err := s.st.AddRoomDeleteTask(ctx, task); err != nil {
		return "", err
	}
	s.tasks.start(task)
	return task.DeleteID, nil
}

// Resume starts the deletions a restart interrupted.
func (s *Service) Resume(ctx context.Context) error {
	tasks, err := s.st.UnfinishedRoomDeleteTasks(ctx)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		s.tasks.start(t)
	}
	return nil
}

// run carries a deletion out and records its outcome. Each step may run
// again after a restart: members who left are not members any more, a
// purge deletes what is left.
func (s *Service) run(ctx context.Context, task store.RoomDeleteTask) {
	var req DeleteRequest
	_ = json.Unmarshal([]byte(task.Params), &req)
	var res ShutdownResult
	_ = json.Unmarshal([]byte(task.Result), &res)
	save := func(status, errText string) {
		b, _ := json.Marshal(res)
		// The status is written even when the server is stopping.
		if err := s.st.UpdateRoomDeleteTask(context.WithoutCancel(ctx), task.DeleteID, status, string(b), errText); err != nil {
			s.log.Error("room delete: cannot record status", "delete_id", task.DeleteID, "err", err)
		}
	}
	save("active", "")
	err := s.shutdown(ctx, task, req, &res, func() { save("active", "") })
	switch {
	case ctx.Err() != nil:
		// Stopping: the task stays active and resumes at the next start.
	case err != nil:
		s.log.Warn("room delete failed", "delete_id", task.DeleteID, "room_id", task.RoomID, "err", err)
		save("failed", err.Error())
	default:
		s.log.Info("room deleted", "delete_id", task.DeleteID, "room_id", task.RoomID, "admin", task.Requester,
			"kicked", len(res.KickedUsers), "purged", req.Purge)
		save("complete", "")
	}
}

func (s *Service) shutdown(ctx context.Context, task store.RoomDeleteTask, req DeleteRequest, res *ShutdownResult, progress func()) error {
	roomID := task.RoomID
	if req.Block {
		if err := s.rooms.SetBlocked(ctx, roomID, task.Requester, true); err != nil {
			return err
		}
	}
	if _, err := s.rooms.VersionOf(ctx, roomID); errors.Is(err, rooms.ErrUnknownRoom) {
		return nil // blocked before this server knew it, or purged before a restart
	} else if err != nil {
		return err
	}
	members, err := s.rooms.LocalMembers(ctx, roomID)
	if err != nil {
		return err
	}
	if req.NewRoomUserID != "" && res.NewRoomID == nil && len(members) > 0 {
		newID, err := s.replacementRoom(ctx, req)
		if err != nil {
			return fmt.Errorf("create the new room: %w", err)
		}
		res.NewRoomID = &newID
		progress()
	}
	for _, u := range members {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := s.rooms.EvictLocal(ctx, roomID, u); err != nil {
			s.log.Warn("room delete: cannot remove member", "room_id", roomID, "user_id", u, "err", err)
			res.FailedToKickUsers = appendNew(res.FailedToKickUsers, u)
			continue
		}
		res.KickedUsers = appendNew(res.KickedUsers, u)
		if res.NewRoomID != nil && u != req.NewRoomUserID {
			if _, err := s.rooms.ChangeMembership(ctx, rooms.MemberChange{RoomID: *res.NewRoomID, Sender: u, Target: u, Membership: "join"}); err != nil {
				s.log.Warn("room delete: cannot move member", "room_id", *res.NewRoomID, "user_id", u, "err", err)
			}
		}
	}
	if res.NewRoomID != nil {
		aliases, err := s.rooms.RoomAliases(ctx, roomID)
		if err != nil {
			return err
		}
		for _, a := range aliases {
			if err := s.rooms.MoveAlias(ctx, a, *res.NewRoomID, req.NewRoomUserID); err != nil {
				return err
			}
			res.LocalAliases = appendNew(res.LocalAliases, a)
		}
	}
	progress()
	if !req.Purge {
		return nil
	}
	if !req.ForcePurge {
		left, err := s.rooms.LocalMembers(ctx, roomID)
		if err != nil {
			return err
		}
		if len(left) > 0 {
			return fmt.Errorf("%d local users are still in the room; force_purge deletes it anyway", len(left))
		}
	}
	// The members' leave events go to the other servers first: once their
	// rows are gone they cannot be sent.
	deadline := time.Now().Add(sendsWait)
	for time.Now().Before(deadline) {
		pending, err := s.st.RoomSendsPending(ctx, roomID)
		if err != nil || !pending {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return s.rooms.Purge(ctx, roomID, nil)
}

// replacementRoom creates the room the members of a shut-down room move
// to: public, the message sent by its creator, everyone else unable to
// speak (users_default -10), as Synapse does.
func (s *Service) replacementRoom(ctx context.Context, req DeleteRequest) (string, error) {
	name, message := req.RoomName, req.Message
	if name == "" {
		name = DefaultRoomName
	}
	if message == "" {
		message = DefaultMessage
	}
	creator := req.NewRoomUserID
	pl, _ := json.Marshal(map[string]any{"users_default": -10, "users": map[string]int{creator: 100}})
	roomID, err := s.rooms.CreateRoom(ctx, creator, rooms.CreateRequest{Preset: "public_chat", Name: &name, PowerLevelContentOverride: pl})
	if err != nil {
		return "", err
	}
	content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": message})
	if _, err := s.rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: creator, Content: content}, nil); err != nil {
		return "", err
	}
	return roomID, nil
}

func appendNew(list []string, u string) []string {
	for _, x := range list {
		if x == u {
			return list
		}
	}
	return append(list, u)
}

func statusOf(t store.RoomDeleteTask) DeleteStatus {
	out := DeleteStatus{DeleteID: t.DeleteID, RoomID: t.RoomID, Status: t.Status, Error: t.Error}
	_ = json.Unmarshal([]byte(t.Result), &out.ShutdownRoom)
	if out.ShutdownRoom.KickedUsers == nil {
		out.ShutdownRoom.KickedUsers = []string{}
	}
	if out.ShutdownRoom.FailedToKickUsers == nil {
		out.ShutdownRoom.FailedToKickUsers = []string{}
	}
	if out.ShutdownRoom.LocalAliases == nil {
		out.ShutdownRoom.LocalAliases = []string{}
	}
	return out
}

// DeleteStatusOf returns one deletion's status.
func (s *Service) DeleteStatusOf(ctx context.Context, deleteID string) (*DeleteStatus, error) {
	t, err := s.st.GetRoomDeleteTask(ctx, deleteID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.NotFound("delete id not found")
	}
	if err != nil {
		return nil, err
	}
	st := statusOf(*t)
	return &st, nil
}

// RoomDeleteStatus returns a room's deletions running or finished in the
// last 24 hours.
func (s *Service) RoomDeleteStatus(ctx context.Context, roomID string) ([]DeleteStatus, error) {
	if err := CheckRoomID(roomID); err != nil {
		return nil, err
	}
	ts, err := s.st.RoomDeleteTasks(ctx, roomID, time.Now().Add(-statusWindow).UnixMilli())
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, errcode.NotFound("no deletion of room %s", roomID)
	}
	out := make([]DeleteStatus, len(ts))
	for i, t := range ts {
		out[i] = statusOf(t)
	}
	return out, nil
}
