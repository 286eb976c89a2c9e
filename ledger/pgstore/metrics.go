package pgstore

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the write-behind's Prometheus series. The lag gauges are what
// the alert rules watch: a growing lag means Postgres no longer keeps up (or
// is down) and a Redis failure would now lose more than the alert budget.
type metrics struct {
	lagEntries  prometheus.Gauge
	lagSeconds  prometheus.Gauge
	events      *prometheus.CounterVec
	batches     prometheus.Counter
	errors      *prometheus.CounterVec
	batchTime   prometheus.Histogram
	batchSize   prometheus.Histogram
	commitWait  prometheus.Histogram
	queue       prometheus.Gauge
	healthy     prometheus.Gauge
	quarantined prometheus.Counter
	recovered   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		lagEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "antaca_writebehind_lag_entries",
			Help: "Journal entries in the Redis streams not yet committed to Postgres.",
		}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "antaca_writebehind_lag_seconds",
			Help: "Age of the oldest journal entry not yet committed to Postgres.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_writebehind_events_total",
			Help: "Journal events committed to Postgres; result=duplicate were already there.",
		}, []string{"result"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "antaca_writebehind_batches_total",
			Help: "Postgres transactions committed by the write-behind (group commits).",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_writebehind_errors_total",
			Help: "Write-behind failures by stage: redis, postgres, overflow (entries left to the sweep because the queue was full).",
		}, []string{"stage"}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "antaca_writebehind_batch_seconds",
			Help:    "Time to apply one batch to Postgres.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "antaca_writebehind_batch_events",
			Help:    "Events per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		commitWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "antaca_journal_commit_wait_seconds",
			Help:    "Time an answer waited for its journal entry to be committed in Postgres.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "antaca_journal_commit_queue",
			Help: "Journal entries queued for the next group commit.",
		}),
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "antaca_journal_healthy",
			Help: "1 while journal commits to Postgres succeed; 0 while they fail (answers that need them get issuer unavailable).",
		}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "antaca_journal_quarantined_total",
			Help: "Journal entries Postgres refused (or that did not validate), moved to the journal_quarantine table.",
		}),
		recovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "antaca_journal_recovered_total",
			Help: "Journal entries the sweep found in the streams with no committer (a switch that stopped before committing).",
		}),
	}
	for _, r := range []string{"applied", "duplicate"} {
		m.events.WithLabelValues(r)
	}
	for _, s := range []string{stageRedis, stagePostgres, stageOverflow} {
		m.errors.WithLabelValues(s)
	}
	if reg == nil {
		return m
	}
	m.lagEntries = register(reg, m.lagEntries)
	m.lagSeconds = register(reg, m.lagSeconds)
	m.events = register(reg, m.events)
	m.batches = register(reg, m.batches)
	m.errors = register(reg, m.errors)
	m.batchTime = register(reg, m.batchTime)
	m.batchSize = register(reg, m.batchSize)
	m.commitWait = register(reg, m.commitWait)
	m.queue = register(reg, m.queue)
	m.healthy = register(reg, m.healthy)
	m.quarantined = register(reg, m.quarantined)
	m.recovered = register(reg, m.recovered)
	return m
}

// register registers c, or returns the collector already registered under
// the same name so that two workers in one process share their series.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
	}
	return c
}

const (
	stageRedis    = "redis"
	stagePostgres = "postgres"
	stageOverflow = "overflow"
)
