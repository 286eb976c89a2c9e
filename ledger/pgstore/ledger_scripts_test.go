package pgstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// TestWithLedgerScripts runs package ledger's real scripts under a running
// write-behind — reloads, authorizations, partial capture, void, refund,
// forced post, expiry, a decline, card locks — in both funding models, then
// flushes, audits, loses Redis, rebuilds, audits again, and checks a
// retransmitted authorization still gets its first answer. It does so on
// Redis and Postgres, and on the stores of `antaca demo` (the same scripts
// in an in-process Redis, the journal in SQLite).
func TestWithLedgerScripts(t *testing.T) {
	t.Run("redis+postgres", func(t *testing.T) { t.Parallel(); withLedgerScripts(t, newFixture(t)) })
	t.Run("embedded", func(t *testing.T) { t.Parallel(); withLedgerScripts(t, newEmbeddedFixture(t)) })
}

func withLedgerScripts(t *testing.T, fx *fixture) {
	ctx := ctxT(t, 60*time.Second)
	l, err := ledger.New(fx.rdb, ledger.Options{Prefix: fx.keys.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}

	w, _ := fx.worker(t, "w1")
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := w.Run(runCtx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { stop(); wg.Wait() })

	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	var firstAuth, partialAuth ledger.Reservation
	var firstHold string
	var partialRes ledger.ReservationResult
	for i, model := range []string{ledger.FundingDeposit, ledger.FundingCredit} {
		p := fmt.Sprintf("lp%d", i)
		pb, cus, ub, card := p+"_pb", p+"_cus", p+"_ub", p+"_card"
		check("partner", l.CreatePartner(ctx, ledger.Partner{ID: p, Name: "P", BIN: fmt.Sprintf("4999%02d", i), Currency: "EUR", FundingModel: model}))
		check("partner balance", l.CreatePartnerBalance(ctx, p, pb, model, "EUR", 1000))
		_, err := l.ReloadPartnerBalance(ctx, p, pb, 1_000_000, "reload-"+p)
		check("partner reload", err)
		check("customer", l.CreateCustomer(ctx, ledger.Customer{ID: cus, PartnerID: p, FirstName: "Ada"}))
		check("kyc", l.SetKYC(ctx, p, cus, "VERIFIED"))
		check("user balance", l.CreateUserBalance(ctx, p, cus, ub, "EUR"))
		_, _, err = l.ReloadUserBalance(ctx, p, ub, 100_000, "uload-"+p)
		check("user reload", err)
		check("card", l.CreateCard(ctx, ledger.Card{ID: card, PartnerID: p, CustomerID: cus, BalanceID: ub, Type: "VIRTUAL",
			Status: "ACTIVE", PANEnc: "enc", PANHash: "tok-" + p, BIN: "4999", Last4: "1234", Expiry: "2912", CVVEnc: "cvv"}))
		check("card copy", l.CreateCard(ctx, ledger.Card{ID: card + "_copy", PartnerID: p, CustomerID: cus, BalanceID: ub, Type: "PHYSICAL",
			Status: "ACTIVE", PANEnc: "enc", PANHash: "tok-" + p, BIN: "4999", Last4: "1234", Expiry: "2912", CVVEnc: "cvv", CopyOf: card}))

		auth := func(key string, amount int64) ledger.ReservationResult {
			t.Helper()
			r := ledger.Reservation{PartnerID: p, BalanceID: ub, CardID: card, Amount: amount, IdempotencyKey: key,
				ApprovalCode: "AP" + key[len(key)-2:], TxnType: "00", Meta: `{"rrn":"1"}`, Reference: "rrn-" + key + "|" + card}
			res, err := l.Reserve(ctx, r)
			check("reserve "+key, err)
			if i == 0 && firstHold == "" {
				firstAuth, firstHold = r, res.HoldID
			}
			return res
		}
		open := auth(p+"-a1", 1_000)
		toExpire := auth(p+"-a2", 700)
		expired, err := l.ExpireHolds(ctx, p, -time.Hour, 10) // cutoff in the future: every open hold so far
		check("expire", err)
		if expired != 2 {
			t.Fatalf("expired %d holds, want 2", expired)
		}
		for _, id := range []string{open.HoldID, toExpire.HoldID} {
			h, err := l.Hold(ctx, p, id)
			check("reading expired hold", err)
			if h.State != "EXPIRED" {
				t.Fatalf("hold %s is %s after expiry, want EXPIRED", id, h.State)
			}
		}
		open = auth(p+"-a3", 2_500)
		capt := auth(p+"-a4", 4_000)
		_, err = l.Capture(ctx, p, capt.HoldID, 3_000, false, "cap-"+p, "")
		check("capture", err)
		// An advice that posts more than the hold (a tip): the hold's
		// amount grows, its stored answer must not.
		tipped := auth(p+"-a7", 500)
		_, err = l.Capture(ctx, p, tipped.HoldID, 650, true, "tip-"+p, "")
		check("capture with extra", err)
		voided := auth(p+"-a5", 900)
		_, err = l.Void(ctx, p, voided.HoldID, 400, false, "void-"+p, "")
		check("partial void", err)
		_, err = l.Refund(ctx, ledger.Reservation{PartnerID: p, BalanceID: ub, CardID: card, Amount: 250, IdempotencyKey: "ref-" + p, ApprovalCode: "RF0001", Reference: "rrn-refund|" + card})
		check("refund", err)
		// A stand-in advice repeating the RRN of an authorization: the
		// reference names the newer hold, before and after a rebuild.
		_, err = l.Reserve(ctx, ledger.Reservation{PartnerID: p, BalanceID: ub, CardID: card, Amount: 80, IdempotencyKey: "pre-fp-" + p,
			ApprovalCode: "AP0080", TxnType: "00", Reference: "rrn-fp|" + card})
		check("reserve before the advice", err)
		time.Sleep(3 * time.Millisecond) // the rebuild orders holds by creation time
		_, err = l.ForcePost(ctx, ledger.Reservation{PartnerID: p, BalanceID: ub, CardID: card, Amount: 120, IdempotencyKey: "fp-" + p, ApprovalCode: "FP0001", TxnType: "00", Reference: "rrn-fp|" + card})
		check("force post", err)
		if d := auth(p+"-a6", 10_000_000); d.Reason == "APPROVED" {
			t.Fatalf("reserve beyond the funds was approved")
		}
		if i == 0 {
			// A partial approval: the stored answer names the requested
			// amount, the smaller approved one and the balance after.
			partialAuth = ledger.Reservation{PartnerID: p, BalanceID: ub, CardID: card, Amount: 5_000_000, IdempotencyKey: p + "-partial",
				ApprovalCode: "PA0001", TxnType: "00", AllowPartial: true, Reference: "rrn-partial|" + card}
			partialRes, err = l.Reserve(ctx, partialAuth)
			check("partial reserve", err)
			if partialRes.Reason != "APPROVED_PARTIAL" || partialRes.Available != 0 {
				t.Fatalf("partial reserve = %+v", partialRes)
			}
		}
		check("lock", l.LockCard(ctx, p, card, 3, "partner"))
		_, err = l.UnlockCard(ctx, p, card)
		check("unlock", err)
		_ = open
	}

	// The worker ran meanwhile; what is left goes now.
	stop()
	wg.Wait()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	fx.assertMirrors(t)
	for _, p := range []string{"lp0", "lp1"} {
		if n := len(fx.journalSeqs(t, p)); n < 18 {
			t.Fatalf("journal of %s holds %d events, want the 18 or more the scripts wrote", p, n)
		}
	}
	rep, err := Audit(ctx, fx.rdb, fx.keys, fx.db)
	if err != nil || !rep.OK() {
		t.Fatalf("Audit after the scripts: %v\n%s", err, rep)
	}

	before := fx.snapshot(t)
	// The idempotency records of holds come back exactly; those of
	// declines, captures, voids and reloads are not in Postgres.
	holdAnswers := map[string]bool{}
	for k := range before {
		if !strings.Contains(k, ":idem:") {
			continue
		}
		a := fx.rdb.HGetAll(ctx, k).Val()
		if a["hold"] != "" && (a["kind"] == "reserve" || a["kind"] == "refund" || a["kind"] == "force_post") {
			holdAnswers[k] = true
		}
	}
	if len(holdAnswers) != 19 {
		t.Fatalf("%d stored answers of holds, want 19 (seven holds, a refund and a forced post per partner, one partial)", len(holdAnswers))
	}
	ledgertest.DeleteKeys(t, ctx, fx.rdb, fx.keys.Pattern())
	if _, err := Rebuild(ctx, fx.rdb, fx.keys, fx.db); err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if rep, err := Audit(ctx, fx.rdb, fx.keys, fx.db); err != nil || !rep.OK() {
		t.Fatalf("Audit after rebuild: %v\n%s", err, rep)
	}
	// The rows, the partner set, BINs, index, PAN, cards-per-balance and
	// RRN reference keys come back as they were; idempotency answers of
	// other kinds than holds and velocity counters do not (Postgres does
	// not hold them).
	after := fx.snapshot(t)
	if len(before) < 40 {
		t.Fatalf("snapshot holds %d keys, want the scripts' rows and indexes", len(before))
	}
	for k, want := range before {
		if (strings.Contains(k, ":idem:") && !holdAnswers[k]) || strings.Contains(k, ":vel:") {
			continue
		}
		if got, ok := after[k]; !ok || got != want {
			t.Errorf("%s after rebuild:\n got  %q\n want %q", k, got, want)
		}
	}

	// A retransmission of the first authorization gets its first answer.
	res, err := l.Reserve(ctx, firstAuth)
	if err != nil {
		t.Fatalf("retransmitted reserve: %v", err)
	}
	if !res.Duplicate || res.HoldID != firstHold || res.Approved != firstAuth.Amount || res.Reason != "APPROVED" {
		t.Fatalf("retransmission after rebuild = %+v, want the stored answer for hold %s", res, firstHold)
	}
	res, err = l.Reserve(ctx, partialAuth)
	if err != nil {
		t.Fatalf("retransmitted partial reserve: %v", err)
	}
	if !res.Duplicate || res != (ledger.ReservationResult{Reason: "APPROVED_PARTIAL", HoldID: partialRes.HoldID, Approved: partialRes.Approved,
		ApprovalCode: "PA0001", Duplicate: true}) {
		t.Fatalf("retransmitted partial after rebuild = %+v, first answer %+v", res, partialRes)
	}
	// A reversal without DE90 still finds the hold by its RRN reference.
	if id, err := l.HoldByReference(ctx, firstAuth.PartnerID, firstAuth.Reference); err != nil || id != firstHold {
		t.Fatalf("hold by reference after rebuild = %q, %v; want %s", id, err, firstHold)
	}
	refs := 0
	for k := range after {
		if strings.Contains(k, ":ref:") {
			refs++
		}
	}
	if refs != 17 {
		t.Errorf("%d reference keys after rebuild, want 17 (six holds, a refund and a forced post per partner, one partial)", refs)
	}
}

// TestRebuildRestoresVelocity: the per-card authorization counters of the
// current window come back from the holds created in it; a decline counted
// before the loss does not (Postgres does not hold it).
func TestRebuildRestoresVelocity(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 30*time.Second)
	// One clock for the scripts and the rebuild, mid-window.
	at := time.Date(2026, 11, 24, 12, 30, 0, 0, time.UTC)
	clock := func() time.Time { return at }
	l, err := ledger.New(fx.rdb, ledger.Options{Prefix: fx.keys.Prefix, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	check("ready", l.MarkReady(ctx))
	const p, pb, cus, ub, card, other = "vp", "vp_pb", "vp_cus", "vp_ub", "vp_card", "vp_card2"
	check("partner", l.CreatePartner(ctx, ledger.Partner{ID: p, Name: "P", BIN: "499977", Currency: "EUR", FundingModel: ledger.FundingCredit}))
	check("partner balance", l.CreatePartnerBalance(ctx, p, pb, ledger.FundingCredit, "EUR", 0))
	_, err = l.ReloadPartnerBalance(ctx, p, pb, 100_000, "")
	check("partner reload", err)
	check("customer", l.CreateCustomer(ctx, ledger.Customer{ID: cus, PartnerID: p}))
	check("kyc", l.SetKYC(ctx, p, cus, "VERIFIED"))
	check("user balance", l.CreateUserBalance(ctx, p, cus, ub, "EUR"))
	_, _, err = l.ReloadUserBalance(ctx, p, ub, 10_000, "")
	check("user reload", err)
	for _, id := range []string{card, other} {
		check("card", l.CreateCard(ctx, ledger.Card{ID: id, PartnerID: p, CustomerID: cus, BalanceID: ub, Type: "VIRTUAL",
			Status: "ACTIVE", PANEnc: "enc", PANHash: "tok-" + id, BIN: "499977", Last4: "1234", Expiry: "2912", CVVEnc: "cvv"}))
	}
	eng := &ledger.Engine{L: l, VelocityWindow: time.Hour}
	// Three approvals and a decline on card, one approval on other, as
	// the engine counts them (before the reservation).
	for i := range 4 {
		n, err := eng.Count(ctx, p, card)
		check("count", err)
		if n != int64(i+1) {
			t.Fatalf("count %d, want %d", n, i+1)
		}
		if i < 3 {
			_, err = l.Reserve(ctx, ledger.Reservation{PartnerID: p, BalanceID: ub, CardID: card, Amount: 100, IdempotencyKey: fmt.Sprintf("v%d", i)})
			check("reserve", err)
		}
	}
	_, err = eng.Count(ctx, p, other)
	check("count", err)
	_, err = l.Reserve(ctx, ledger.Reservation{PartnerID: p, BalanceID: ub, CardID: other, Amount: 100, IdempotencyKey: "o1"})
	check("reserve", err)

	w, _ := fx.worker(t, "w1")
	check("flush", w.Flush(ctx))
	ledgertest.DeleteKeys(t, ctx, fx.rdb, fx.keys.Pattern())
	rep, err := Rebuild(ctx, fx.rdb, fx.keys, fx.db, WithVelocityWindow(time.Hour), func(c *rebuildConfig) { c.now = clock })
	check("rebuild", err)
	if rep.Velocity != 2 {
		t.Errorf("restored %d velocity counters, want 2", rep.Velocity)
	}
	// The next authorization counts on top of the three approvals (the
	// decline is lost) and of the one on the other card.
	if n, err := eng.Count(ctx, p, card); err != nil || n != 4 {
		t.Errorf("count after rebuild = %d, %v; want 4", n, err)
	}
	if n, err := eng.Count(ctx, p, other); err != nil || n != 2 {
		t.Errorf("other card's count after rebuild = %d, %v; want 2", n, err)
	}
	if ttl := fx.rdb.PTTL(ctx, fx.keys.Velocity(p, card, at.UnixMilli()/time.Hour.Milliseconds())).Val(); ttl <= time.Hour || ttl > 2*time.Hour {
		t.Errorf("restored counter expires in %s, want two windows", ttl)
	}
}
