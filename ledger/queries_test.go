package ledger_test

import (
	"context"
	"errors"
	"testing"

	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
)

// TestTypedQueries reads partners, customers, per-currency summaries and
// cards across partners through the ledger's typed queries.
func TestTypedQueries(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	a := newProgram(t, l, ledger.FundingCredit, 10_000, 1_000)
	b := newProgram(t, l, ledger.FundingDeposit, 5_000, 0)
	b.addBalance(t, 0)
	_, _, err := l.ReloadUserBalance(ctx, b.partner, b.balances[1], 300, "")
	must(t, err)
	// A hold: what the user balance holds moves to held, the partner
	// deposit's to reserved, and the summaries count both.
	_, err = l.Reserve(ctx, ledger.Reservation{PartnerID: b.partner, BalanceID: b.balances[1], Amount: 100, IdempotencyKey: "q1"})
	must(t, err)

	p, err := l.Partner(ctx, a.partner)
	must(t, err)
	if p.ID != a.partner || p.Name != "Test" || p.Currency != "EUR" || p.FundingModel != ledger.FundingCredit || p.CreatedAt.IsZero() {
		t.Errorf("partner = %+v", p)
	}
	if _, err := l.Partner(ctx, "prt_unknown"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("unknown partner: %v, want ErrNotFound", err)
	}
	all, err := l.Partners(ctx)
	must(t, err)
	if len(all) != 2 || all[0].ID > all[1].ID {
		t.Errorf("partners = %+v, want both, by id", all)
	}
	ids, err := l.PartnerIDs(ctx)
	must(t, err)
	if len(ids) != 2 {
		t.Errorf("partner ids = %v", ids)
	}

	c, err := l.Customer(ctx, a.partner, a.customer)
	must(t, err)
	if c.ID != a.customer || c.PartnerID != a.partner || c.FirstName != "Ada" || c.KYCStatus != "VERIFIED" || c.CreatedAt.IsZero() {
		t.Errorf("customer = %+v", c)
	}
	if _, err := l.Customer(ctx, b.partner, a.customer); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("another partner's customer: %v, want ErrNotFound", err)
	}

	sums, err := l.Summaries(ctx)
	must(t, err)
	// Every balance is in EUR: the users hold 1000 (a) and 300 (b, 100
	// of it held); the partners what their balances say.
	var users, partners int64
	for _, id := range a.balances {
		u, err := l.UserBalance(ctx, a.partner, id)
		must(t, err)
		users += u.Available + u.Held
	}
	for _, id := range b.balances {
		u, err := l.UserBalance(ctx, b.partner, id)
		must(t, err)
		users += u.Available + u.Held
	}
	pa, pb := a.partnerBalance(t), b.partnerBalance(t)
	partners = pa.Available + pa.Reserved + pb.Available + pb.Reserved
	if len(sums) != 1 || sums[0].Currency != "EUR" || sums[0].Users != users || sums[0].Partners != partners || users != 1_300 {
		t.Errorf("summaries = %+v, want EUR users %d partners %d", sums, users, partners)
	}
	a.checkMoney(t)
	b.checkMoney(t)

	ordered := ledger.Card{ID: "crd_q_ordered", PartnerID: a.partner, CustomerID: a.customer, BalanceID: a.balances[0],
		Type: "PHYSICAL", Status: "ORDERED", PANHash: "hq1", Last4: "0001", Expiry: "3012"}
	virtual := ledger.Card{ID: "crd_q_virtual", PartnerID: b.partner, CustomerID: b.customer, BalanceID: b.balances[0],
		Type: "VIRTUAL", Status: "ACTIVE", PANHash: "hq2", Last4: "0002", Expiry: "3012"}
	must(t, l.CreateCard(ctx, ordered))
	must(t, l.CreateCard(ctx, virtual))
	cards, err := l.ScanCards(ctx, nil)
	must(t, err)
	if len(cards) != 2 {
		t.Fatalf("every card: %+v", cards)
	}
	waiting, err := l.ScanCards(ctx, issuing.WaitsForBureau)
	must(t, err)
	if len(waiting) != 1 || waiting[0].ID != ordered.ID || waiting[0].PartnerID != a.partner || waiting[0].CustomerID != a.customer {
		t.Errorf("cards waiting for the bureau = %+v, want the ordered plastic", waiting)
	}
}
