package notifications

import "context"

// UserErased forgets what the service keeps in memory of a user whose
// rows an erasure deleted (package gdpr): their rule set and their
// pushers, which no notification may reach any more.
func (s *Service) UserErased(ctx context.Context, userID string) error {
	s.invalidate(userID)
	return s.reloadPushers(ctx)
}
