package pgstore

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the write-behind's Prometheus series. The lag gauges are what
// the alert rules watch: a growing lag means Postgres no longer keeps up (or
// is down) and a Redis failure would now lose more than the alert budget.
type metrics struct {
	lagEntries prometheus.Gauge
	lagSeconds prometheus.Gauge
	events     *prometheus.CounterVec
	batches    prometheus.Counter
	errors     *prometheus.CounterVec
	batchTime  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		lagEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "antaca_writebehind_lag_entries",
			Help: "Journal entries not yet acknowledged by the write-behind (undelivered + pending).",
		}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "antaca_writebehind_lag_seconds",
			Help: "Age of the oldest journal entry not yet acknowledged by the write-behind.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_writebehind_events_total",
			Help: "Journal events written to Postgres and acknowledged; result=duplicate were already there.",
		}, []string{"result"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "antaca_writebehind_batches_total",
			Help: "Postgres transactions committed by the write-behind.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_writebehind_errors_total",
			Help: "Write-behind failures by stage: redis, postgres, rejected (entry does not validate), lost (entry gone from the stream before it was applied).",
		}, []string{"stage"}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "antaca_writebehind_batch_seconds",
			Help:    "Time to apply one batch to Postgres.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	for _, r := range []string{"applied", "duplicate"} {
		m.events.WithLabelValues(r)
	}
	for _, s := range []string{stageRedis, stagePostgres, stageRejected, stageLost} {
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
	stageRejected = "rejected"
	stageLost     = "lost"
)
