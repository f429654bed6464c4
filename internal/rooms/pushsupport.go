package rooms

import "luxchat/internal/matrix/pdu"

// InspectLocked calls f with a room's joined members and current state as
// of before the events being persisted. It is for indexers only: an
// Indexer runs with the room's writer lock held, which is what guards the
// maps f sees; f must neither keep nor modify them. For a room being
// created both maps are nil.
func (s *Service) InspectLocked(roomID string, f func(joined map[string]struct{}, state map[pdu.StateTuple]*pdu.Event)) {
	s.mu.Lock()
	r := s.rooms[roomID]
	s.mu.Unlock()
	if r == nil || !r.loaded {
		f(nil, nil)
		return
	}
	f(r.joined, r.state)
}
