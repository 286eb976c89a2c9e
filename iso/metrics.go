package iso

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// decisionBuckets resolve 50 µs to 1 s: the switch answers in well under a
// millisecond when healthy and the request deadline sits at a few hundred
// milliseconds, so both ends matter.
var decisionBuckets = []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1}

// metrics are the listener's Prometheus series. Labels are bounded: the MTI
// label only takes the answered types (anything else is "other") and the
// code label only the profile's action codes. No PAN, STAN or id ever
// becomes a label value.
type metrics struct {
	requests        *prometheus.CounterVec
	decisions       *prometheus.CounterVec
	decisionSeconds prometheus.Histogram
	openConns       prometheus.Gauge
	inflight        prometheus.Gauge
	timeouts        prometheus.Counter
	rejectedConns   *prometheus.CounterVec
	formatErrors    *prometheus.CounterVec
	shed            prometheus.Counter
	writes          prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_iso_requests_total",
			Help: "ISO 8583 messages answered, by request MTI and DE39 action code.",
		}, []string{"mti", "code"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_iso_decisions_total",
			Help: "ISO 8583 answers by machine-readable reason (several reasons share an action code).",
		}, []string{"reason"}),
		decisionSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "antaca_iso_decision_seconds",
			Help:    "Time from reading a message to having its answer, in seconds.",
			Buckets: decisionBuckets,
		}),
		openConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "antaca_iso_open_connections",
			Help: "ISO 8583 connections currently open.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "antaca_iso_inflight_requests",
			Help: "ISO 8583 requests read and not yet answered.",
		}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "antaca_iso_timeouts_total",
			Help: "Requests answered issuer unavailable because the decision missed its deadline.",
		}),
		rejectedConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_iso_rejected_connections_total",
			Help: "Connections closed at accept, by reason: limit (open connections), per_address_limit (open connections of one source address), not_allowed (address outside the allow-list).",
		}, []string{"reason"}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "antaca_iso_shed_total",
			Help: "Authorizations answered issuer unavailable at once, without deciding, because the requests ahead of them would make them wait longer than the queue target or their deadline allows (admission control).",
		}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "antaca_iso_writes_total",
			Help: "System calls writing answers; answers ready together share one (compare with antaca_iso_requests_total).",
		}),
		formatErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_iso_format_errors_total",
			Help: "Messages answered with a format error or dropped as unreadable, by the field at fault (data element number, 0 the MTI, 1 the bitmap, trailing, frame or other).",
		}, []string{"field"}),
	}
	// The rejection reasons are few and known: export them at zero.
	for _, r := range []string{rejectLimit, rejectPerAddress, rejectNotAllowed} {
		m.rejectedConns.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{
		m.requests, m.decisions, m.decisionSeconds, m.openConns, m.inflight, m.timeouts, m.rejectedConns, m.formatErrors,
		m.shed, m.writes,
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("registering ISO metrics: %w (one server per registry)", err)
			}
			return nil, fmt.Errorf("registering ISO metrics: %w", err)
		}
	}
	return m, nil
}

// Reasons for closing a connection at accept (label of
// antaca_iso_rejected_connections_total).
const (
	rejectLimit      = "limit"
	rejectPerAddress = "per_address_limit"
	rejectNotAllowed = "not_allowed"
)

// knownMTIs are the request MTIs used as label values as they are.
var knownMTIs = map[string]bool{
	"0100": true, "0101": true, "0120": true, "0121": true,
	"0200": true, "0201": true, "0220": true, "0221": true,
	"0400": true, "0401": true, "0420": true, "0421": true,
	"0800": true, "0801": true, "0302": true, "0303": true,
}

// mtiLabel keeps the label set bounded whatever a peer sends.
func mtiLabel(mti string) string {
	if knownMTIs[mti] {
		return mti
	}
	return "other"
}
