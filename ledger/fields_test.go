package ledger_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// TestMalformedFieldsAreErrors: an amount that is not an integer is an
// error naming the field, never a silent 0, wherever it is read.
func TestMalformedFieldsAreErrors(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := ledgertest.MustRedis(t)
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix})
	must(t, err)
	p := newProgram(t, l, ledger.FundingCredit, 10_000, 1_000)
	card := ledger.Card{ID: ledger.NewID("crd"), PartnerID: p.partner, CustomerID: p.customer, BalanceID: p.balances[0],
		Type: "VIRTUAL", Status: "ACTIVE", PANHash: "malformed", Last4: "0000", Expiry: "3012"}
	must(t, l.CreateCard(ctx, card))
	keys := l.Keys()
	corrupt := func(table, id, column string) func() {
		t.Helper()
		key := keys.Row(p.partner, table, id)
		if table == "funding" {
			key = keys.Row(p.partner, table, p.partner+":"+p.currency)
		}
		was, err := rdb.HGet(ctx, key, column).Result()
		must(t, err)
		must(t, rdb.HSet(ctx, key, column, "12x").Err())
		return func() { must(t, rdb.HSet(ctx, key, column, was).Err()) }
	}
	check := func(what string, err error, column string) {
		t.Helper()
		if !errors.Is(err, ledger.ErrMalformed) || !strings.Contains(err.Error(), column) || strings.Contains(err.Error(), "12x") {
			t.Errorf("%s with a malformed %s: %v, want ErrMalformed naming the column, not its value", what, column, err)
		}
	}

	restore := corrupt("user_balances", p.balances[0], "available")
	_, err = l.UserBalance(ctx, p.partner, p.balances[0])
	check("user balance", err, "available")
	_, err = l.CustomerBalances(ctx, p.partner, p.customer)
	check("customer balances", err, "available")
	_, err = l.Summaries(ctx)
	check("summaries", err, "available")
	restore()

	restore = corrupt("partner_balances", p.pbal, "reserved")
	_, err = l.PartnerBalance(ctx, p.partner, p.pbal)
	check("partner balance", err, "reserved")
	restore()

	restore = corrupt("funding", "", "total_in")
	_, err = l.Funding(ctx, p.partner, p.currency)
	check("funding", err, "total_in")
	restore()

	restore = corrupt("cards", card.ID, "lock_reason")
	_, err = l.Card(ctx, p.partner, card.ID)
	check("card", err, "lock_reason")
	_, err = l.ScanCards(ctx, nil)
	check("card scan", err, "lock_reason")
	restore()

	// Restored, everything reads again and the money is where it was.
	_, err = l.Card(ctx, p.partner, card.ID)
	must(t, err)
	if _, err := l.Summaries(ctx); err != nil {
		t.Fatal(err)
	}
	p.checkMoney(t)
}
