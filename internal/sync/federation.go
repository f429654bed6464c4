package sync

import (
	"context"
	"time"

	"luxchat/internal/store"
)

// Federation is told about ephemeral changes that other servers may need
// to hear of (typing, receipts, presence). Implementations only queue
// work and ignore users of other servers.
type Federation interface {
	// Typing: userID started or stopped typing in roomID, whose joined
	// members are joined.
	Typing(ctx context.Context, roomID, userID string, typing bool, timeout time.Duration, joined []string)
	// Presence: userID's presence changed.
	Presence(ctx context.Context, p store.Presence)
	// Receipt: a public receipt was stored.
	Receipt(ctx context.Context, r store.Receipt)
}

// ReceiptStored tells federation about a public receipt (private ones
// never leave the server).
func (s *Service) ReceiptStored(ctx context.Context, r store.Receipt) {
	if s.hooks.Federation != nil && r.Type != "m.read.private" {
		s.hooks.Federation.Receipt(ctx, r)
	}
}
