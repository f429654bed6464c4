package sync

import (
	"context"
	"time"
)

// Federation is told about ephemeral changes that other servers may need
// to hear of (typing, receipts, presence). Implementations only queue
// work and ignore users of other servers.
type Federation interface {
	// Typing: userID started or stopped typing in roomID, whose joined
	// members are joined.
	Typing(ctx context.Context, roomID, userID string, typing bool, timeout time.Duration, joined []string)
	// Presence: userID's presence changed.
	Presence(ctx context.Context, p Presence)
	// Receipt: a receipt was stored; a private one (m.read.private) must
	// not leave the server.
	Receipt(ctx context.Context, r Receipt)
}

// receiptStored tells the listeners about a receipt.
func (s *Service) receiptStored(ctx context.Context, r Receipt) {
	if s.hooks.Federation != nil {
		s.hooks.Federation.Receipt(ctx, r)
	}
}
