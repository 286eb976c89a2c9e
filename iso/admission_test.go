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
	const burst = 300 // 1.5 s of work against a 100 ms deadline, offered in 300 ms
	codes := make(chan string, burst)
	var wg sync.WaitGroup
	for i := range burst {
		time.Sleep(time.Millisecond)
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
	// (at most the deadline's worth), a new request is decided again. An
	// idle switch always admits: shed requests teach the estimates
	// nothing, so without that a slow period would never end.
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

// undoRecorder approves with a balance no answer can carry, and
// records what it was asked to undo.
type undoRecorder struct {
	mu        sync.Mutex
	abandoned []authz.Decision
}

func (a *undoRecorder) Authorize(context.Context, *authz.Request) authz.Decision {
	d := approve()
	d.Available = 10_000_000_000_000 // 14 digits: DE54 cannot carry it
	return d
}

func (a *undoRecorder) Abandon(_ context.Context, _ *authz.Request, d authz.Decision) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.abandoned = append(a.abandoned, d)
}

// TestUnbuildableApprovalIsUndone: when the answer to an approval cannot
// be built, the network gets a system error and the engine is asked to
// undo the approval: never a decline with a live hold.
func TestUnbuildableApprovalIsUndone(t *testing.T) {
	auth := &undoRecorder{}
	ts := startServer(t, iso.Config{}, auth)
	c := ts.dial(t)
	resp := send(t, c, txn{mti: "0100", stan: stan(1)}.build(t, ts.profile))
	if code := get(t, resp, 39); code != "9109" {
		t.Fatalf("DE39 %s, want 9109", code)
	}
	auth.mu.Lock()
	defer auth.mu.Unlock()
	if len(auth.abandoned) != 1 || !auth.abandoned[0].Approved() {
		t.Fatalf("abandoned %+v, want the one approval", auth.abandoned)
	}
}
