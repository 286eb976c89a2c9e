package app

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// TestHoldExpiryErrorsAreLoggedAndCounted: a round of the hold expiry that
// cannot reach Redis says so in the log and in its counter; a round that
// works expires what is due and counts nothing.
func TestHoldExpiryErrorsAreLoggedAndCounted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	count := func(a *App) float64 {
		t.Helper()
		reg := prometheus.NewRegistry()
		reg.MustRegister(a.expiryErrors)
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
			t.Fatalf("gathering the counter: %v %v", mfs, err)
		}
		return mfs[0].GetMetric()[0].GetCounter().GetValue()
	}
	clock := time.Now()
	newApp := func(rdb redis.UniversalClient, prefix string) (*App, *ledgertest.LogBuffer) {
		t.Helper()
		l, err := ledger.New(rdb, ledger.Options{Prefix: prefix, Now: func() time.Time { return clock }})
		if err != nil {
			t.Fatal(err)
		}
		logs := &ledgertest.LogBuffer{}
		return &App{cfg: Config{HoldMaxAge: time.Hour}, Ledger: l, log: slog.New(slog.NewTextHandler(logs, nil)),
			expiryErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "test_expiry_errors"})}, logs
	}

	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = down.Close() })
	a, logs := newApp(down, "down")
	a.expireHoldsOnce(ctx)
	if n := count(a); n != 1 {
		t.Errorf("errors counted with Redis down: %v, want 1", n)
	}
	if !strings.Contains(logs.String(), "expiring holds: listing partners") {
		t.Errorf("the failure is not logged:\n%s", logs.String())
	}

	up, prefix := ledgertest.MustRedis(t)
	a, logs = newApp(up, prefix)
	l, pid := a.Ledger, "prt_expiry"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.CreatePartner(ctx, ledger.Partner{ID: pid, Name: "P", Currency: "EUR", FundingModel: ledger.FundingCredit}))
	must(l.CreatePartnerBalance(ctx, pid, "pbl_expiry", ledger.FundingCredit, "EUR", 0))
	_, err := l.ReloadPartnerBalance(ctx, pid, "pbl_expiry", 1_000, "")
	must(err)
	must(l.CreateCustomer(ctx, ledger.Customer{ID: "cus_expiry", PartnerID: pid}))
	must(l.SetKYC(ctx, pid, "cus_expiry", "VERIFIED"))
	must(l.CreateUserBalance(ctx, pid, "cus_expiry", "bal_expiry", "EUR"))
	_, _, err = l.ReloadUserBalance(ctx, pid, "bal_expiry", 500, "")
	must(err)
	res, err := l.Reserve(ctx, ledger.Reservation{PartnerID: pid, BalanceID: "bal_expiry", Amount: 200, IdempotencyKey: "expiry-1"})
	must(err)
	if res.Reason != "APPROVED" {
		t.Fatalf("hold: %+v", res)
	}
	clock = clock.Add(2 * a.cfg.HoldMaxAge)
	a.expireHoldsOnce(ctx)
	if n := count(a); n != 0 || logs.String() != "" {
		t.Errorf("a round that works counted %v errors and logged:\n%s", n, logs.String())
	}
	b, err := l.UserBalance(ctx, pid, "bal_expiry")
	must(err)
	in, err := l.Funding(ctx, pid, "EUR")
	must(err)
	pb, err := l.PartnerBalance(ctx, pid, "pbl_expiry")
	must(err)
	if b.Held != 0 || b.Available != 500 {
		t.Errorf("after the expiry the balance holds %d and has %d available, want 0 and 500", b.Held, b.Available)
	}
	if sum := b.Available + b.Held + b.Posted + pb.Available + pb.Reserved + pb.Settled; sum != in {
		t.Errorf("money not conserved: funding in %d, balances hold %d", in, sum)
	}
}
