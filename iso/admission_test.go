package iso_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
)

// TestAdmissionSheds: behind a store that serves one decision at a time,
// a burst far larger than the deadline allows gets a quick issuer
// unavailable for what cannot finish in time, without asking the
// Authorizer; what was admitted is decided; once the burst is over a new
// request is decided again.
func TestAdmissionSheds(t *testing.T) {
	var (
		store   sync.Mutex // one decision at a time, 5 ms each
		decided atomic.Int64
	)
	auth := &fakeAuthorizer{authorize: func(ctx context.Context, _ *authz.Request) authz.Decision {
		store.Lock()
		defer store.Unlock()
		time.Sleep(5 * time.Millisecond)
		decided.Add(1)
		return approve()
	}}
	ts := startServer(t, iso.Config{RequestTimeout: 100 * time.Millisecond, MaxInFlightPerConn: 1000}, auth)
	c := ts.dial(t)
	const burst = 300 // 1.5 s of work against a 100 ms deadline
	codes := make(chan string, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := trySend(c, txn{mti: "0100", stan: stan(i + 1)}.build(t, ts.profile))
			if err != nil {
				codes <- "error: " + err.Error()
				return
			}
			code, _ := resp.GetString(39)
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	count := map[string]int{}
	for code := range codes {
		count[code]++
	}
	shed := ts.metricValue(t, "antaca_iso_shed_total", nil)
	timeouts := ts.metricValue(t, "antaca_iso_timeouts_total", nil)
	t.Logf("answers %v; shed %v, timed out %v, decided %d", count, shed, timeouts, decided.Load())
	if count["0000"]+count["9112"] != burst {
		t.Fatalf("answers %v, want all %d approved or issuer unavailable", count, burst)
	}
	if shed == 0 {
		t.Fatal("nothing was shed although the burst could not finish in time")
	}
	if int64(count["0000"]) != decided.Load()-int64(timeouts) && int64(count["0000"]) > decided.Load() {
		t.Errorf("%d approvals but only %d decisions", count["0000"], decided.Load())
	}
	if float64(burst)-shed > float64(decided.Load())+timeouts {
		t.Errorf("%v admitted requests were neither decided nor timed out", float64(burst)-shed)
	}

	// The burst is over: once the store has finished what was admitted
	// (at most the deadline's worth), a new request is decided again.
	deadline := time.Now().Add(3 * time.Second)
	for i := 1; ; i++ {
		resp := send(t, c, txn{mti: "0100", stan: stan(burst + i)}.build(t, ts.profile))
		if get(t, resp, 39) == "0000" {
			t.Logf("approved again %d request(s) after the burst", i)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still not approving 3 s after the burst")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
