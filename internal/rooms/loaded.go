package rooms

// StateLoaded reports whether a room's current state is in the rooms
// cache, so that reading it costs no statement: readers of many rooms
// (simplified sliding sync's window) read the others in bulk instead of
// loading each. A room whose lock is held is in use, hence loaded.
func (s *Service) StateLoaded(roomID string) bool {
	s.mu.Lock()
	r := s.rooms[roomID]
	s.mu.Unlock()
	if r == nil {
		return false
	}
	if !r.mu.TryLock() {
		return true
	}
	defer r.mu.Unlock()
	return r.loaded
}
