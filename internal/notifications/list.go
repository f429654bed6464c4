package notifications

import (
	"context"
	"encoding/json"
	"strconv"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/roomread"
	"luxchat/internal/store"
)

// Notification is one entry of GET /notifications.
type Notification struct {
	Actions json.RawMessage `json:"actions"`
	Event   json.RawMessage `json:"event"`
	Read    bool            `json:"read"`
	RoomID  string          `json:"room_id"`
	TS      int64           `json:"ts"`
}

// Page is the answer of GET /notifications.
type Page struct {
	NextToken     string         `json:"next_token,omitempty"`
	Notifications []Notification `json:"notifications"`
}

// maxNotificationsLimit bounds one page.
const maxNotificationsLimit = 100

// Notifications lists a user's notifications, newest first, from the
// token of a previous page (a position).
func (s *Service) Notifications(ctx context.Context, userID, from string, limit int, onlyHighlight bool) (*Page, error) {
	var before int64
	if from != "" {
		n, err := strconv.ParseInt(from, 10, 64)
		if err != nil || n <= 0 {
			return nil, errcode.InvalidParam("invalid from token")
		}
		before = n
	}
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, maxNotificationsLimit)
	ns, err := s.store.Notifications(ctx, userID, before, limit, onlyHighlight)
	if err != nil {
		return nil, err
	}
	page := &Page{Notifications: []Notification{}}
	if len(ns) == 0 {
		return page, nil
	}
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.EventID
	}
	rows, err := s.store.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*store.EventRow, len(rows))
	for _, r := range rows {
		byID[r.EventID] = r
	}
	for _, n := range ns {
		row := byID[n.EventID]
		if row == nil {
			continue
		}
		page.Notifications = append(page.Notifications, Notification{
			Actions: json.RawMessage(n.Actions), Event: s.read.ClientEvent(row, roomread.Format{Viewer: userID}),
			Read: n.Read, RoomID: n.RoomID, TS: n.TS,
		})
	}
	if len(ns) == limit {
		page.NextToken = strconv.FormatInt(ns[len(ns)-1].Pos, 10)
	}
	return page, nil
}
