package accounts

import (
	"log/slog"

	"luxchat/internal/config"
	"luxchat/internal/store"
)

// Service is the accounts domain. It is safe for concurrent use.
type Service struct {
	cfg   *config.Config
	store *store.Store
	log   *slog.Logger
}

// New returns the accounts service.
func New(cfg *config.Config, st *store.Store, log *slog.Logger) *Service {
	return &Service{cfg: cfg, store: st, log: log}
}
