package retention

import "github.com/prometheus/client_golang/prometheus"

// metrics are the purge job's Prometheus series.
type metrics struct {
	events   prometheus.Counter
	media    prometheus.Counter
	runs     *prometheus.CounterVec // by result
	duration prometheus.Histogram
	hold     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "luxchat_retention_events_purged_total", Help: "Events the retention purge job deleted.",
		}),
		media: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "luxchat_retention_media_purged_total", Help: "Media files the retention purge job deleted (their last referencing event was purged).",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "luxchat_retention_runs_total", Help: "Runs of the retention purge job, by result (ok, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "luxchat_retention_run_duration_seconds", Help: "How long runs of the retention purge job took.",
			Buckets: []float64{.01, .1, .5, 1, 5, 15, 60, 300, 1800},
		}),
		hold: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "luxchat_retention_lock_hold_seconds", Help: "How long each purge batch held its room's writer lock.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .035, .05, .1, .25},
		}),
	}
	reg.MustRegister(m.events, m.media, m.runs, m.duration, m.hold)
	return m
}
