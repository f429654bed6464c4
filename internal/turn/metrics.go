package turn

import "github.com/prometheus/client_golang/prometheus"

// metrics are the embedded server's Prometheus series.
type metrics struct {
	relayed         *prometheus.CounterVec // bytes, by direction
	dropped         prometheus.Counter     // packets over max_bitrate
	authRefused     *prometheus.CounterVec // by reason
	peersRefused    prometheus.Counter
	allocsRefused   *prometheus.CounterVec // by reason
	requestsDropped prometheus.Counter     // over a source's request rate
	toPeer          prometheus.Counter
	fromPeer        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, allocations func() float64) *metrics {
	m := &metrics{
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "luxchat_turn_relayed_bytes_total", Help: "Bytes relayed by the embedded TURN server, by direction (to_peer, from_peer).",
		}, []string{"direction"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "luxchat_turn_dropped_packets_total", Help: "Relayed packets dropped for exceeding turn.max_bitrate.",
		}),
		authRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "luxchat_turn_auth_refused_total", Help: "TURN requests refused for their credentials, by reason (expired, malformed, realm, integrity).",
		}, []string{"reason"}),
		peersRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "luxchat_turn_peers_refused_total", Help: "Permissions and datagrams refused because the peer is not a public address nor in turn.allowed_peer_networks.",
		}),
		allocsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "luxchat_turn_allocations_refused_total", Help: "Allocations refused, by reason (quota: per user or total; ports: no relay port free).",
		}, []string{"reason"}),
		requestsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "luxchat_turn_requests_dropped_total", Help: "STUN requests over UDP dropped unanswered for exceeding their source address's rate.",
		}),
	}
	m.toPeer, m.fromPeer = m.relayed.WithLabelValues("to_peer"), m.relayed.WithLabelValues("from_peer")
	current := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "luxchat_turn_allocations", Help: "Allocations the embedded TURN server holds now.",
	}, allocations)
	reg.MustRegister(m.relayed, m.dropped, m.authRefused, m.peersRefused, m.allocsRefused, m.requestsDropped, current)
	return m
}
