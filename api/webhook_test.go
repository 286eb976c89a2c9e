package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/antaca/antaca/api"
)

// hookRecorder is a webhook receiver answering each delivery with the
// next status of its script (200 once the script is used up).
type hookRecorder struct {
	mu       sync.Mutex
	statuses []int
	got      []api.LowBalanceEvent
	keys     []string
	answered chan int
}

func newHookRecorder(t *testing.T, statuses ...int) (*hookRecorder, string) {
	h := &hookRecorder{statuses: statuses, answered: make(chan int, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev api.LowBalanceEvent
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		h.mu.Lock()
		status := http.StatusOK
		if len(h.statuses) > 0 {
			status, h.statuses = h.statuses[0], h.statuses[1:]
		}
		h.got = append(h.got, ev)
		h.keys = append(h.keys, r.Header.Get("Idempotency-Key"))
		h.mu.Unlock()
		w.WriteHeader(status)
		h.answered <- status
	}))
	t.Cleanup(srv.Close)
	return h, srv.URL
}

// wait returns the statuses of the next n deliveries.
func (h *hookRecorder) wait(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	for range n {
		select {
		case s := <-h.answered:
			out = append(out, s)
		case <-time.After(10 * time.Second):
			t.Fatalf("webhook deliveries: got %v, want %d", out, n)
		}
	}
	return out
}

// crossThreshold makes a CREDIT partner balance fall below its threshold
// once, by a user reload.
func crossThreshold(t *testing.T, e *env) {
	t.Helper()
	p := e.newProgramWithThreshold("hook", "455555", 20_000)
	e.root.json("POST", "/admin/partners/hook/balances/"+p.pbal+"/reload", map[string]int{"amount": 30_000}, 200, nil)
	cid, bid := p.verifiedCustomer(t, "h1")
	p.c.json("POST", "/secure/customers/"+cid+"/balances/"+bid+"/reload", map[string]int{"amount": 15_000}, 200, nil)
}

// TestWebhookRetries: a delivery that fails with 503 is repeated with the
// same event id until it succeeds; a 400 is not repeated.
func TestWebhookRetries(t *testing.T) {
	t.Parallel()
	t.Run("retried until delivered", func(t *testing.T) {
		t.Parallel()
		hook, url := newHookRecorder(t, 503, 503)
		e := newEnv(t, func(c *api.Config) { c.LowBalanceWebhook = url; c.WebhookBackoff = 20 * time.Millisecond })
		crossThreshold(t, e)
		if got := hook.wait(t, 3); got[0] != 503 || got[1] != 503 || got[2] != 200 {
			t.Fatalf("deliveries answered %v, want 503 503 200", got)
		}
		hook.mu.Lock()
		defer hook.mu.Unlock()
		id := hook.got[0].ID
		for i, ev := range hook.got {
			if ev.ID == "" || ev.ID != id || hook.keys[i] != id || ev.Available != 15_000 {
				t.Errorf("delivery %d: event %+v, Idempotency-Key %q; want the same event id %q each time", i, ev, hook.keys[i], id)
			}
		}
		waitMetric(t, e, "retry", 2)
		waitMetric(t, e, "ok", 1)
	})
	t.Run("client error not retried", func(t *testing.T) {
		t.Parallel()
		hook, url := newHookRecorder(t, 400)
		e := newEnv(t, func(c *api.Config) { c.LowBalanceWebhook = url; c.WebhookBackoff = 20 * time.Millisecond })
		crossThreshold(t, e)
		if got := hook.wait(t, 1); got[0] != 400 {
			t.Fatalf("delivery answered %v", got)
		}
		waitMetric(t, e, "error", 1)
		select {
		case s := <-hook.answered:
			t.Fatalf("a refused delivery was repeated (answered %d)", s)
		case <-time.After(200 * time.Millisecond):
		}
	})
	t.Run("gives up after the attempts", func(t *testing.T) {
		t.Parallel()
		hook, url := newHookRecorder(t, 500, 500, 500, 500)
		e := newEnv(t, func(c *api.Config) {
			c.LowBalanceWebhook = url
			c.WebhookBackoff = 10 * time.Millisecond
			c.WebhookAttempts = 3
		})
		crossThreshold(t, e)
		hook.wait(t, 3)
		waitMetric(t, e, "error", 1)
		waitMetric(t, e, "retry", 2)
	})
	t.Run("dropped at shutdown", func(t *testing.T) {
		t.Parallel()
		hook, url := newHookRecorder(t, 503)
		e := newEnv(t, func(c *api.Config) { c.LowBalanceWebhook = url; c.WebhookBackoff = time.Hour })
		crossThreshold(t, e)
		hook.wait(t, 1)
		waitMetric(t, e, "retry", 1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Close(ctx); err != nil {
			t.Fatalf("Close waited for an hour-long backoff: %v", err)
		}
		waitMetric(t, e, "dropped", 1)
	})
}

// waitMetric waits for antaca_api_webhook_deliveries_total{result} to
// reach want (deliveries finish in the background).
func waitMetric(t *testing.T, e *env, result string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := e.metric("antaca_api_webhook_deliveries_total", map[string]string{"result": result})
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("webhook deliveries %s = %v, want %v", result, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
