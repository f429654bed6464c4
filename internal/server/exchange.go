package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"luxchat/internal/exchange"
	"luxchat/internal/federation"
)

// setupExchange builds the outbound queue and the exchange of EDUs and
// queries with other servers (their hooks are in the wiring).
func (s *Server) setupExchange() {
	if s.Federation == nil {
		return
	}
	cfg := s.Config
	s.Outbox = federation.NewQueue(cfg.ServerName, s.Store, s.policy, s.Federation, s.Log, federation.QueueOptions{
		RetryMin: cfg.Federation.RetryBaseDelay, RetryMax: cfg.Federation.RetryMaxDelay,
	})
	s.Exchange = exchange.New(cfg.ServerName, s.Outbox, s.Federation, s.Store, s.Rooms, s.RoomFed, s.Sync, s.E2EE, s.Log)
	if s.metrics != nil {
		s.metrics.MustRegister(outboxCollector{s.Outbox})
	}
}

var outboxDepthDesc = prometheus.NewDesc("luxchat_federation_outbox_depth",
	"PDUs and EDUs waiting for delivery, per destination.", []string{"destination"}, nil)

// outboxCollector reports the outbox depth of each destination at scrape
// time (one count query per destination this process has sent to).
type outboxCollector struct{ q *federation.Queue }

func (c outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- outboxDepthDesc }

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for dest, n := range c.q.Depths(ctx) {
		ch <- prometheus.MustNewConstMetric(outboxDepthDesc, prometheus.GaugeValue, float64(n), dest)
	}
}

// startExchange starts delivering queued items (after the federation
// client's DNS is final).
func (s *Server) startExchange(ctx context.Context) {
	if s.Outbox == nil {
		return
	}
	// Events committed before a crash but never queued go out first.
	if err := s.Exchange.Recover(ctx); err != nil {
		s.Log.Error("federation queue: recover", "err", err)
	}
	if err := s.Outbox.Start(ctx); err != nil {
		s.Log.Error("federation queue", "err", err)
	}
}

// stopExchange persists what was queued and stops the senders.
func (s *Server) stopExchange() {
	if s.Outbox == nil {
		return
	}
	s.Exchange.Close()
	s.Outbox.Close()
}
