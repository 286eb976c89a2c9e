package api

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/antaca/antaca/ledger"
)

// metrics of the API. Labels never carry customer, balance or card ids;
// the partner id is a bounded label (one per card program).
type metrics struct {
	requests  *prometheus.CounterVec   // route, code
	latency   *prometheus.HistogramVec // route
	available *prometheus.GaugeVec     // partner, type, currency
	low       *prometheus.CounterVec   // partner, type, currency
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_http_requests_total",
			Help: "REST requests by route pattern and HTTP status.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "antaca_http_request_seconds",
			Help:    "REST request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		available: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "antaca_partner_balance_available",
			Help: "Available amount of a partner balance (minor units), as last read or changed through the API.",
		}, []string{"partner", "type", "currency"}),
		low: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_partner_balance_low_total",
			Help: "Low-balance notices: times a partner balance was seen below its low-balance threshold after being at or above it.",
		}, []string{"partner", "type", "currency"}),
	}
	var err error
	m.requests, err = register(reg, m.requests)
	if err == nil {
		m.latency, err = register(reg, m.latency)
	}
	if err == nil {
		m.available, err = register(reg, m.available)
	}
	if err == nil {
		m.low, err = register(reg, m.low)
	}
	return m, err
}

// register registers c, or returns the collector already registered under
// the same description (two servers on one registry share their metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("api: registering metrics: %w", err)
	}
	return c, nil
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

func (m *metrics) setAvailable(b ledger.PartnerBalance) {
	m.available.WithLabelValues(b.PartnerID, b.Type, b.Currency).Set(float64(b.Available))
}

// hookMetrics are the partner webhooks' (webhooks.go). The endpoint id is
// a label: a partner has at most a few endpoints, and operators need to
// see which one is behind.
type hookMetrics struct {
	events     *prometheus.CounterVec   // type
	deliveries *prometheus.CounterVec   // partner, endpoint, result
	latency    *prometheus.HistogramVec // partner
	backlog    *prometheus.GaugeVec     // partner, endpoint
	oldest     *prometheus.GaugeVec     // partner, endpoint
	failing    *prometheus.GaugeVec     // partner, endpoint
	skipped    prometheus.Counter
}

func newHookMetrics(reg prometheus.Registerer) (*hookMetrics, error) {
	m := &hookMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_webhook_events_total",
			Help: "Webhook events made from the journal, by type.",
		}, []string{"type"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_webhook_deliveries_total",
			Help: "Webhook delivery attempts by result: delivered (2xx), retry (failed, tried again later), failed (failed past the retry period: given up, endpoint marked failing).",
		}, []string{"partner", "endpoint", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "antaca_webhook_delivery_seconds",
			Help:    "Time of one webhook delivery attempt, from connect to answer.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"partner"}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "antaca_webhook_backlog",
			Help: "Webhook deliveries waiting to be delivered, per endpoint.",
		}, []string{"partner", "endpoint"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "antaca_webhook_backlog_oldest_seconds",
			Help: "Age of the oldest webhook delivery waiting, per endpoint (0 when none waits).",
		}, []string{"partner", "endpoint"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "antaca_webhook_endpoint_failing",
			Help: "1 when a webhook endpoint is failing: a delivery to it was given up and none succeeded since.",
		}, []string{"partner", "endpoint"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "antaca_webhook_journal_gaps_total",
			Help: "Journal entries missing from Postgres for longer than the gap timeout, whose events were never made.",
		}),
	}
	var err error
	m.events, err = register(reg, m.events)
	if err == nil {
		m.deliveries, err = register(reg, m.deliveries)
	}
	if err == nil {
		m.latency, err = register(reg, m.latency)
	}
	if err == nil {
		m.backlog, err = register(reg, m.backlog)
	}
	if err == nil {
		m.oldest, err = register(reg, m.oldest)
	}
	if err == nil {
		m.failing, err = register(reg, m.failing)
	}
	if err == nil {
		m.skipped, err = register(reg, m.skipped)
	}
	return m, err
}
