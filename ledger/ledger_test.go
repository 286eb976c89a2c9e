package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// program is one partner with its balances, for tests.
type program struct {
	l         *ledger.Ledger
	partner   string
	currency  string
	pbal      string // the balance the funding model uses
	customer  string
	balances  []string
	pbalances []string
}

func newLedger(t testing.TB) *ledger.Ledger {
	t.Helper()
	rdb, prefix := ledgertest.MustRedis(t)
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// newProgram creates a partner with the given funding model, its partner
// balance funded with partnerFunds, and one verified customer whose balance
// holds userFunds.
func newProgram(t testing.TB, l *ledger.Ledger, model string, partnerFunds, userFunds int64) *program {
	t.Helper()
	ctx := context.Background()
	p := &program{l: l, partner: ledgertest.UniqueName("prt"), currency: "EUR"}
	must(t, l.CreatePartner(ctx, ledger.Partner{ID: p.partner, Name: "Test", BIN: "", Currency: "EUR", FundingModel: model}))
	p.pbal = ledger.NewID("pbl")
	must(t, l.CreatePartnerBalance(ctx, p.partner, p.pbal, model, "EUR", 0))
	p.pbalances = append(p.pbalances, p.pbal)
	if partnerFunds > 0 {
		_, err := l.ReloadPartnerBalance(ctx, p.partner, p.pbal, partnerFunds, "")
		must(t, err)
	}
	p.customer = ledger.NewID("cus")
	must(t, l.CreateCustomer(ctx, ledger.Customer{ID: p.customer, PartnerID: p.partner, FirstName: "Ada"}))
	must(t, l.SetKYC(ctx, p.partner, p.customer, "VERIFIED"))
	p.addBalance(t, userFunds)
	return p
}

func (p *program) addBalance(t testing.TB, funds int64) string {
	t.Helper()
	ctx := context.Background()
	id := ledger.NewID("bal")
	must(t, p.l.CreateUserBalance(ctx, p.partner, p.customer, id, p.currency))
	p.balances = append(p.balances, id)
	if funds > 0 {
		_, _, err := p.l.ReloadUserBalance(ctx, p.partner, id, funds, "")
		must(t, err)
	}
	return id
}

func (p *program) user(t testing.TB, i int) ledger.UserBalance {
	t.Helper()
	b, err := p.l.UserBalance(context.Background(), p.partner, p.balances[i])
	must(t, err)
	return b
}

func (p *program) partnerBalance(t testing.TB) ledger.PartnerBalance {
	t.Helper()
	b, err := p.l.PartnerBalance(context.Background(), p.partner, p.pbal)
	must(t, err)
	return b
}

// checkMoney asserts conservation: money in from outside equals what the
// partner and user balances hold, keep held and have posted.
func (p *program) checkMoney(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	in, err := p.l.Funding(ctx, p.partner, p.currency)
	must(t, err)
	var sum int64
	for _, id := range p.pbalances {
		b, err := p.l.PartnerBalance(ctx, p.partner, id)
		must(t, err)
		sum += b.Available + b.Reserved + b.Settled
	}
	for i := range p.balances {
		b := p.user(t, i)
		sum += b.Available + b.Held + b.Posted
	}
	if in != sum {
		t.Fatalf("money not conserved: funding in %d, balances hold %d", in, sum)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentReservationsNeverOverspend(t *testing.T) {
	l := newLedger(t)
	p := newProgram(t, l, ledger.FundingDeposit, 10_000, 500)
	ctx := context.Background()

	var approved, declined atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	sem := make(chan struct{}, 64)
	for i := range 1000 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res, err := l.Reserve(ctx, ledger.Reservation{
				PartnerID: p.partner, BalanceID: p.balances[0], Amount: 1,
				IdempotencyKey: fmt.Sprintf("k%d", i), ApprovalCode: "000001", TxnType: "00",
			})
			if err != nil {
				errs <- err
				return
			}
			if res.Available < 0 {
				errs <- fmt.Errorf("available went below zero: %d", res.Available)
			}
			switch res.Reason {
			case "APPROVED":
				approved.Add(1)
			case "INSUFFICIENT_USER_FUNDS":
				declined.Add(1)
			default:
				errs <- fmt.Errorf("unexpected reason %s", res.Reason)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := approved.Load(); got != 500 {
		t.Fatalf("approved = %d, want 500", got)
	}
	if got := declined.Load(); got != 500 {
		t.Fatalf("declined = %d, want 500", got)
	}
	u := p.user(t, 0)
	if u.Available != 0 || u.Held != 500 {
		t.Fatalf("user available/held = %d/%d, want 0/500", u.Available, u.Held)
	}
	pb := p.partnerBalance(t)
	if pb.Available != 9_500 || pb.Reserved != 500 {
		t.Fatalf("deposit available/reserved = %d/%d, want 9500/500", pb.Available, pb.Reserved)
	}
	p.checkMoney(t)
}

func TestInsufficientFundsChangesNothing(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name                    string
		partnerFunds, userFunds int64
		amount                  int64
		wantReason              string
	}{
		{"partner deposit short", 100, 1_000, 500, "INSUFFICIENT_PARTNER_FUNDS"},
		{"user funds short", 1_000, 100, 500, "INSUFFICIENT_USER_FUNDS"},
		{"both short: deposit checked first", 100, 100, 500, "INSUFFICIENT_PARTNER_FUNDS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLedger(t)
			p := newProgram(t, l, ledger.FundingDeposit, tc.partnerFunds, tc.userFunds)
			res, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], Amount: tc.amount, IdempotencyKey: "a"})
			must(t, err)
			if res.Reason != tc.wantReason || res.HoldID != "" {
				t.Fatalf("reason %s hold %q, want %s and no hold", res.Reason, res.HoldID, tc.wantReason)
			}
			u, pb := p.user(t, 0), p.partnerBalance(t)
			if u.Available != tc.userFunds || u.Held != 0 {
				t.Fatalf("user available/held = %d/%d, want %d/0", u.Available, u.Held, tc.userFunds)
			}
			if pb.Available != tc.partnerFunds || pb.Reserved != 0 {
				t.Fatalf("deposit available/reserved = %d/%d, want %d/0", pb.Available, pb.Reserved, tc.partnerFunds)
			}
			p.checkMoney(t)
		})
	}
}

func TestCreditModelReloadChargesCredit(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	p := newProgram(t, l, ledger.FundingCredit, 1_000, 600)
	if got := p.partnerBalance(t).Available; got != 400 {
		t.Fatalf("credit after reload = %d, want 400", got)
	}
	_, _, err := l.ReloadUserBalance(ctx, p.partner, p.balances[0], 401, "")
	if !errors.Is(err, ledger.ErrInsufficientPartnerFunds) {
		t.Fatalf("reload beyond credit: err = %v, want ErrInsufficientPartnerFunds", err)
	}
	if got := p.user(t, 0).Available; got != 600 {
		t.Fatalf("user after failed reload = %d, want 600", got)
	}
	// In the CREDIT model an authorization touches only the user balance.
	res, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], Amount: 100, IdempotencyKey: "x"})
	must(t, err)
	if res.Reason != "APPROVED" || p.partnerBalance(t).Available != 400 {
		t.Fatalf("reserve in CREDIT model: %s, credit %d", res.Reason, p.partnerBalance(t).Available)
	}
	p.checkMoney(t)
}

func TestIdempotentReservation(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	p := newProgram(t, l, ledger.FundingDeposit, 10_000, 1_000)
	results := make([]ledger.ReservationResult, 5)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], Amount: 250,
				IdempotencyKey: "acq|123456|1124120000|RRN1", ApprovalCode: fmt.Sprintf("A%05d", i)})
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		}()
	}
	wg.Wait()
	dups := 0
	for _, r := range results {
		if r.HoldID != results[0].HoldID || r.ApprovalCode != results[0].ApprovalCode || r.Reason != "APPROVED" || r.Available != 750 {
			t.Fatalf("answers differ: %+v vs %+v", r, results[0])
		}
		if r.Duplicate {
			dups++
		}
	}
	if dups != 4 {
		t.Fatalf("duplicates = %d, want 4", dups)
	}
	open, err := l.OpenHolds(ctx, p.partner)
	must(t, err)
	if len(open) != 1 {
		t.Fatalf("open holds = %d, want 1", len(open))
	}
	_, err = l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], Amount: 251, IdempotencyKey: "acq|123456|1124120000|RRN1"})
	if !errors.Is(err, ledger.ErrIdempotencyMismatch) {
		t.Fatalf("same key, other amount: err = %v, want ErrIdempotencyMismatch", err)
	}
	if u := p.user(t, 0); u.Available != 750 || u.Held != 250 {
		t.Fatalf("user = %+v, want 750 available, 250 held", u)
	}
	p.checkMoney(t)
}

func TestCaptureVoidAndExpiry(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	p := newProgram(t, l, ledger.FundingDeposit, 10_000, 1_000)
	reserve := func(key string, amount int64) string {
		t.Helper()
		r, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], Amount: amount, IdempotencyKey: key})
		must(t, err)
		if r.Reason != "APPROVED" {
			t.Fatalf("reserve %s: %s", key, r.Reason)
		}
		return r.HoldID
	}

	t.Run("partial capture releases the rest, once", func(t *testing.T) {
		h := reserve("c1", 300)
		s, err := l.Capture(ctx, p.partner, h, 200, false, "", "")
		must(t, err)
		if s.Captured != 200 || s.Released != 100 {
			t.Fatalf("capture = %+v, want 200 captured 100 released", s)
		}
		if _, err := l.Capture(ctx, p.partner, h, 0, false, "", ""); !errors.Is(err, ledger.ErrHoldClosed) {
			t.Fatalf("second capture: err = %v, want ErrHoldClosed", err)
		}
		if _, err := l.Void(ctx, p.partner, h, 0, false, "", ""); !errors.Is(err, ledger.ErrHoldClosed) {
			t.Fatalf("void after capture: err = %v, want ErrHoldClosed", err)
		}
		u := p.user(t, 0)
		if u.Available != 800 || u.Held != 0 || u.Posted != 200 {
			t.Fatalf("user = %+v, want 800/0/200", u)
		}
		pb := p.partnerBalance(t)
		if pb.Available != 9_800 || pb.Reserved != 0 || pb.Settled != 200 {
			t.Fatalf("deposit = %+v, want 9800/0/200", pb)
		}
		p.checkMoney(t)
	})

	t.Run("partial void then full void", func(t *testing.T) {
		h := reserve("v1", 100)
		s, err := l.Void(ctx, p.partner, h, 40, false, "", "")
		must(t, err)
		if s.Released != 40 || s.State != "OPEN" {
			t.Fatalf("partial void = %+v", s)
		}
		if _, err := l.Void(ctx, p.partner, h, 61, false, "", ""); !errors.Is(err, ledger.ErrAmountExceedsHold) {
			t.Fatalf("void beyond hold: err = %v", err)
		}
		s, err = l.Void(ctx, p.partner, h, 0, false, "", "")
		must(t, err)
		if s.Released != 60 || s.State != "VOIDED" {
			t.Fatalf("full void = %+v", s)
		}
		if u := p.user(t, 0); u.Available != 800 || u.Held != 0 {
			t.Fatalf("user = %+v, want 800 available", u)
		}
		p.checkMoney(t)
	})

	t.Run("repeated void with one key releases once", func(t *testing.T) {
		h := reserve("r1", 50)
		for range 3 {
			s, err := l.Void(ctx, p.partner, h, 0, false, "rev-r1", "")
			must(t, err)
			if s.Released != 50 {
				t.Fatalf("void = %+v", s)
			}
		}
		if u := p.user(t, 0); u.Available != 800 || u.Held != 0 {
			t.Fatalf("user = %+v, want 800 available, nothing held", u)
		}
		p.checkMoney(t)
	})

	t.Run("capture racing expiry resolves once", func(t *testing.T) {
		for i := range 50 {
			h := reserve(fmt.Sprintf("race%d", i), 10)
			var wg sync.WaitGroup
			var capErr error
			var expired int
			wg.Add(2)
			go func() { defer wg.Done(); _, capErr = l.Capture(ctx, p.partner, h, 0, false, "", "") }()
			go func() {
				defer wg.Done()
				n, err := l.ExpireHolds(ctx, p.partner, -time.Hour, 100) // every open hold is "old"
				if err != nil {
					t.Error(err)
				}
				expired = n
			}()
			wg.Wait()
			hold, err := l.Hold(ctx, p.partner, h)
			must(t, err)
			switch {
			case capErr == nil && expired == 0:
				if hold.State != "CAPTURED" {
					t.Fatalf("captured hold in state %s", hold.State)
				}
			case errors.Is(capErr, ledger.ErrHoldClosed) && expired == 1:
				if hold.State != "EXPIRED" {
					t.Fatalf("expired hold in state %s", hold.State)
				}
			default:
				t.Fatalf("capture err %v, expired %d: resolved twice or never", capErr, expired)
			}
			if hold.Captured+hold.Released != hold.Amount {
				t.Fatalf("hold %+v: captured + released != amount", hold)
			}
		}
		if u := p.user(t, 0); u.Held != 0 {
			t.Fatalf("held = %d after all holds resolved", u.Held)
		}
		p.checkMoney(t)
	})

	t.Run("a completion after expiry still posts", func(t *testing.T) {
		h := reserve("x1", 90)
		_, err := l.ExpireHolds(ctx, p.partner, -time.Second, 100)
		must(t, err)
		if _, err := l.Capture(ctx, p.partner, h, 90, false, "", ""); !errors.Is(err, ledger.ErrHoldClosed) {
			t.Fatalf("plain capture of an expired hold: %v", err)
		}
		before := p.user(t, 0)
		s, err := l.Capture(ctx, p.partner, h, 90, true, "adv-x1", "")
		must(t, err)
		after := p.user(t, 0)
		if s.Captured != 90 || after.Available != before.Available-90 || after.Posted != before.Posted+90 || after.Held != before.Held {
			t.Fatalf("forced completion of an expired hold: %+v, user %+v -> %+v", s, before, after)
		}
		hold, err := l.Hold(ctx, p.partner, h)
		must(t, err)
		if hold.State != "CAPTURED" || hold.Amount-hold.Captured-hold.Released != 0 {
			t.Fatalf("hold after late completion: %+v", hold)
		}
		p.checkMoney(t)
	})

	t.Run("expiry releases old holds only", func(t *testing.T) {
		h := reserve("e1", 70)
		n, err := l.ExpireHolds(ctx, p.partner, time.Hour, 100)
		must(t, err)
		if n != 0 {
			t.Fatalf("expired %d fresh holds", n)
		}
		n, err = l.ExpireHolds(ctx, p.partner, -time.Second, 100)
		must(t, err)
		if n != 1 {
			t.Fatalf("expired %d, want 1", n)
		}
		hold, err := l.Hold(ctx, p.partner, h)
		must(t, err)
		if hold.State != "EXPIRED" || hold.Released != 70 {
			t.Fatalf("hold = %+v", hold)
		}
		p.checkMoney(t)
	})
}

func TestFinancialReversalAndRefund(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	p := newProgram(t, l, ledger.FundingDeposit, 10_000, 1_000)
	r, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], Amount: 300, IdempotencyKey: "f1", Capture: true})
	must(t, err)
	if u := p.user(t, 0); u.Posted != 300 || u.Held != 0 {
		t.Fatalf("after 0200: %+v", u)
	}
	if _, err := l.Void(ctx, p.partner, r.HoldID, 100, false, "", ""); !errors.Is(err, ledger.ErrHoldClosed) {
		t.Fatalf("void of posted without postedOK: %v", err)
	}
	s, err := l.Void(ctx, p.partner, r.HoldID, 100, true, "", "")
	must(t, err)
	if s.Released != 100 || p.user(t, 0).Posted != 200 || p.partnerBalance(t).Settled != 200 {
		t.Fatalf("partial reversal of 0200: %+v user %+v", s, p.user(t, 0))
	}
	rf, err := l.Refund(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], Amount: 50, IdempotencyKey: "rf"})
	must(t, err)
	if rf.Available != 850 {
		t.Fatalf("after refund available = %d, want 850", rf.Available)
	}
	p.checkMoney(t)
	if _, err := l.Void(ctx, p.partner, rf.HoldID, 0, true, "", ""); err != nil {
		t.Fatal(err)
	}
	if got := p.user(t, 0).Available; got != 800 {
		t.Fatalf("after refund reversal available = %d, want 800", got)
	}
	fp, err := l.ForcePost(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], Amount: 2_000, IdempotencyKey: "adv"})
	must(t, err)
	if fp.Available != -1_200 {
		t.Fatalf("forced post may overdraw: available = %d, want -1200", fp.Available)
	}
	p.checkMoney(t)
}

func TestCardGuardInReservation(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	p := newProgram(t, l, ledger.FundingCredit, 10_000, 1_000)
	card := ledger.Card{ID: ledger.NewID("crd"), PartnerID: p.partner, CustomerID: p.customer, BalanceID: p.balances[0],
		Type: "VIRTUAL", Status: "ACTIVE", PANHash: "h1", Last4: "1234", Expiry: "3012"}
	must(t, l.CreateCard(ctx, card))
	dup := card
	dup.ID = ledger.NewID("crd")
	if err := l.CreateCard(ctx, dup); !errors.Is(err, ledger.ErrPANExists) {
		t.Fatalf("second card with the same PAN: %v", err)
	}
	must(t, l.LockCard(ctx, p.partner, card.ID, 7, "PARTNER"))
	r, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], CardID: card.ID, Amount: 10, IdempotencyKey: "g1"})
	must(t, err)
	if r.Reason != "CARD_LOCKED_FRAUD" {
		t.Fatalf("reason = %s, want CARD_LOCKED_FRAUD", r.Reason)
	}
	if _, err := l.UnlockCard(ctx, p.partner, card.ID); err != nil {
		t.Fatal(err)
	}
	must(t, l.LockCard(ctx, p.partner, card.ID, 2, "CUSTOMER"))
	if _, err := l.UnlockCard(ctx, p.partner, card.ID); !errors.Is(err, ledger.ErrLockIrreversible) {
		t.Fatalf("unlock of reason 2: %v", err)
	}
	for i := 1; i <= 3; i++ {
		_, lock, err := l.RecordPIN(ctx, p.partner, card.ID, false, 3, "")
		must(t, err)
		if lock != 2 {
			t.Fatalf("lock = %d: a PIN-tries lock must not replace an irreversible one", lock)
		}
	}
	found, err := l.CardByPANHash(ctx, p.partner, "h1")
	must(t, err)
	if found.ID != card.ID || found.BalanceCurrency != "EUR" || found.LockReason != 2 {
		t.Fatalf("card by PAN = %+v", found)
	}
	if u := p.user(t, 0); u.Available != 1_000 {
		t.Fatalf("declines changed the balance: %+v", u)
	}
}

func TestCancelLateApproval(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	p := newProgram(t, l, ledger.FundingDeposit, 10_000, 1_000)
	eng := &ledger.Engine{L: l}
	for _, capture := range []bool{false, true} {
		key := fmt.Sprintf("late-%v", capture)
		r, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], Amount: 300, IdempotencyKey: key, ApprovalCode: "ABC123", Capture: capture})
		must(t, err)
		if r.Reason != "APPROVED" {
			t.Fatalf("reserve: %s", r.Reason)
		}
		released, err := eng.CancelLate(ctx, p.partner, key, "ISSUER_UNAVAILABLE", "")
		must(t, err)
		if released != 300 {
			t.Fatalf("capture=%v: released %d, want 300", capture, released)
		}
		if again, err := eng.CancelLate(ctx, p.partner, key, "ISSUER_UNAVAILABLE", ""); err != nil || again != 0 {
			t.Fatalf("second cancel released %d (err %v), want 0", again, err)
		}
		if u := p.user(t, 0); u.Available != 1_000 || u.Held != 0 || u.Posted != 0 {
			t.Fatalf("capture=%v: after cancel %+v, want everything back", capture, u)
		}
		if d := p.partnerBalance(t); d.Available != 10_000 || d.Reserved != 0 || d.Settled != 0 {
			t.Fatalf("capture=%v: deposit after cancel %+v", capture, d)
		}
		// A retransmission gets what the network was told.
		dup, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], Amount: 300, IdempotencyKey: key})
		must(t, err)
		if dup.Reason != "ISSUER_UNAVAILABLE" || dup.HoldID != "" || !dup.Duplicate {
			t.Fatalf("retransmission after cancel: %+v", dup)
		}
		p.checkMoney(t)
	}
}

// TestUnknownBINWithoutState: an unknown BIN is "card not found" only while
// Redis holds the ledger's state; on a Redis that lost it (before the
// rebuild) the answer is "unavailable", and the owner is told at once.
func TestUnknownBINWithoutState(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	lost := 0
	eng := &ledger.Engine{L: l, Token: func(pan string) string { return "tok-" + pan }, OnStateLost: func() { lost++ }}
	const pan = "9999990000000001"
	if _, err := eng.FindCard(ctx, pan); !errors.Is(err, authz.ErrUnavailable) || lost != 1 {
		t.Fatalf("unknown BIN on a Redis without state: %v (state lost reported %d times), want unavailable", err, lost)
	}
	must(t, l.MarkReady(ctx))
	if _, err := eng.FindCard(ctx, pan); !errors.Is(err, authz.ErrCardNotFound) || lost != 1 {
		t.Fatalf("unknown BIN on a ready Redis: %v (state lost reported %d times), want card not found", err, lost)
	}
}

// TestClosedHoldsAreRetired: every way a hold closes gives its Redis row
// the idempotency window as lifetime (Postgres keeps it for good), so
// Redis does not grow with the transaction history; open holds stay.
func TestClosedHoldsAreRetired(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := ledgertest.MustRedis(t)
	const ttl = time.Hour
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix, IdempotencyTTL: ttl})
	must(t, err)
	p := newProgram(t, l, ledger.FundingDeposit, 100_000, 10_000)
	bal := p.balances[0]
	life := func(hold string) time.Duration {
		t.Helper()
		d, err := rdb.PTTL(ctx, l.Keys().Row(p.partner, "holds", hold)).Result()
		must(t, err)
		return d
	}
	retired := func(what, hold string) {
		t.Helper()
		if d := life(hold); d <= ttl-time.Minute || d > ttl {
			t.Errorf("%s: hold row lifetime %s, want %s", what, d, ttl)
		}
	}
	reserve := func(key string, amount int64, capture bool) string {
		t.Helper()
		r, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: bal, Amount: amount, IdempotencyKey: key, Capture: capture})
		must(t, err)
		if r.Reason != "APPROVED" {
			t.Fatalf("reserve %s: %s", key, r.Reason)
		}
		return r.HoldID
	}

	open := reserve("open", 100, false)
	if d := life(open); d != -1 {
		t.Errorf("open hold has a lifetime %s", d)
	}
	_, err = l.Void(ctx, p.partner, open, 40, false, "partial", "")
	must(t, err)
	if d := life(open); d != -1 {
		t.Errorf("partly voided (still open) hold has a lifetime %s", d)
	}
	captured := reserve("cap", 100, false)
	_, err = l.Capture(ctx, p.partner, captured, 60, false, "cap-1", "")
	must(t, err)
	retired("partial capture", captured)
	voided := reserve("void", 100, false)
	_, err = l.Void(ctx, p.partner, voided, 0, false, "void-1", "")
	must(t, err)
	retired("full void", voided)
	retired("0200 (captured at once)", reserve("fin", 100, true))
	fp, err := l.ForcePost(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: bal, Amount: 50, IdempotencyKey: "fp"})
	must(t, err)
	retired("forced post", fp.HoldID)
	rf, err := l.Refund(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: bal, Amount: 30, IdempotencyKey: "rf"})
	must(t, err)
	retired("refund", rf.HoldID)
	expiring := reserve("exp", 100, false)
	_, err = l.ExpireHolds(ctx, p.partner, -time.Hour, 100) // every open hold
	must(t, err)
	retired("expiry", expiring)
	retired("expiry", open)
	late := reserve("late", 100, false)
	_, err = (&ledger.Engine{L: l}).CancelLate(ctx, p.partner, "late", "ISSUER_UNAVAILABLE", "")
	must(t, err)
	retired("late cancel", late)
	p.checkMoney(t)
}

// TestBalanceLimit: no credit takes a user balance (available + held) past
// authz.MaxAmount, the most an ISO amount field can carry; the refused
// credit changes nothing.
func TestBalanceLimit(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	p := newProgram(t, l, ledger.FundingDeposit, 1_000, 0)
	bal := p.balances[0]
	_, _, err := l.ReloadUserBalance(ctx, p.partner, bal, authz.MaxAmount-10, "")
	must(t, err)
	r, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: bal, Amount: 10, IdempotencyKey: "k1"})
	must(t, err)
	if r.Reason != "APPROVED" {
		t.Fatalf("reserve: %s", r.Reason)
	}
	// available + held = MaxAmount - 10: a credit of 10 fits, 11 does not.
	if _, _, err := l.ReloadUserBalance(ctx, p.partner, bal, 11, ""); !errors.Is(err, ledger.ErrBalanceLimit) {
		t.Fatalf("reload past the limit: %v, want ErrBalanceLimit", err)
	}
	if _, err := l.Refund(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: bal, Amount: 11, IdempotencyKey: "k2"}); !errors.Is(err, ledger.ErrBalanceLimit) {
		t.Fatalf("refund past the limit: %v, want ErrBalanceLimit", err)
	}
	if b := p.user(t, 0); b.Available != authz.MaxAmount-20 || b.Held != 10 {
		t.Fatalf("balance after refused credits = %+v, want %d available, 10 held", b, authz.MaxAmount-20)
	}
	_, _, err = l.ReloadUserBalance(ctx, p.partner, bal, 10, "")
	must(t, err)
	if b := p.user(t, 0); b.Available+b.Held != authz.MaxAmount {
		t.Fatalf("balance = %+v, want exactly the limit", b)
	}
	p.checkMoney(t)
}
