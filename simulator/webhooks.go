package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/antaca/antaca/simulator/webhook"
)

// WebhookSink plays a partner's webhook endpoint: it verifies every
// delivery's signature with the endpoint secret (webhook.Receiver, the
// code a partner would take), answers 204, and counts deliveries, events
// (a redelivered event once) and refused deliveries. `antaca bench
// --webhook-endpoints` runs it as a child process, so its CPU is not the
// switch's.
type WebhookSink struct {
	Secret string

	deliveries, refused atomic.Int64
	mu                  sync.Mutex
	seen                map[string]struct{}
	types               map[string]int64 // distinct events by type
}

// WebhookSinkStats is what a WebhookSink received.
type WebhookSinkStats struct {
	Deliveries int64 `json:"deliveries"` // verified deliveries, repeats included
	Events     int64 `json:"events"`     // distinct event ids
	Refused    int64 `json:"refused"`    // bad signature or body
	// Types counts the distinct events by type.
	Types map[string]int64 `json:"types"`
}

// Handler serves the endpoint on every path.
func (s *WebhookSink) Handler() http.Handler {
	rc := &webhook.Receiver{
		Secret: func() string { return s.Secret },
		Handle: func(ev webhook.Event, _ []byte) error {
			s.deliveries.Add(1)
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.seen == nil {
				s.seen, s.types = map[string]struct{}{}, map[string]int64{}
			}
			if _, dup := s.seen[ev.ID]; !dup {
				s.seen[ev.ID] = struct{}{}
				s.types[ev.Type]++
			}
			return nil
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		rw := &statusWriter{ResponseWriter: w}
		rc.ServeHTTP(rw, r)
		if rw.status >= 400 {
			s.refused.Add(1)
		}
	})
}

// Stats reports what was received so far.
func (s *WebhookSink) Stats() WebhookSinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return WebhookSinkStats{Deliveries: s.deliveries.Load(), Events: int64(len(s.seen)), Refused: s.refused.Load(), Types: maps.Clone(s.types)}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// ServeWebhookSink serves s on ln until ctx ends, then writes its stats as
// JSON to report (when not empty).
func ServeWebhookSink(ctx context.Context, ln net.Listener, s *WebhookSink, report string) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = srv.Shutdown(sctx)
		cancel()
	case err = <-done:
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if report != "" {
		b, _ := json.Marshal(s.Stats())
		if werr := os.WriteFile(report, b, 0o644); werr != nil && err == nil {
			err = fmt.Errorf("writing the report: %w", werr)
		}
	}
	return err
}
