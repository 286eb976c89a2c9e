package ledger_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// commandCounter is a go-redis hook that counts the commands sent, alone or
// in pipelines.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestAuthorizationIsOneRoundTrip: once the card is cached, an approved
// authorization sends exactly one command to Redis (the reserve script);
// a lock made between the cache fill and the next authorization is seen
// by that script, and the answer is the lock's, never a stale approval.
func TestAuthorizationIsOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	base, prefix := ledgertest.MustRedis(t)
	opts := base.Options()
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	counter := &commandCounter{}
	rdb.AddHook(counter)
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix, AutoPipeline: true})
	must(t, err)

	p := &program{l: l, partner: ledgertest.UniqueName("prt"), currency: "EUR"}
	const bin = "49900001"
	must(t, l.CreatePartner(ctx, ledger.Partner{ID: p.partner, Name: "Test", BIN: bin, Currency: "EUR", FundingModel: ledger.FundingCredit}))
	p.pbal = ledger.NewID("pbl")
	must(t, l.CreatePartnerBalance(ctx, p.partner, p.pbal, ledger.FundingCredit, "EUR", 0))
	_, err = l.ReloadPartnerBalance(ctx, p.partner, p.pbal, 10_000, "")
	must(t, err)
	p.customer = ledger.NewID("cus")
	must(t, l.CreateCustomer(ctx, ledger.Customer{ID: p.customer, PartnerID: p.partner, FirstName: "Ada"}))
	must(t, l.SetKYC(ctx, p.partner, p.customer, "VERIFIED"))
	bal := p.addBalance(t, 1_000)
	token := func(pan string) string { return "tok-" + pan }
	pan := bin + "00000017"
	card := ledger.NewID("crd")
	must(t, l.CreateCard(ctx, ledger.Card{ID: card, PartnerID: p.partner, CustomerID: p.customer, BalanceID: bal,
		Type: "VIRTUAL", Status: "ACTIVE", PANHash: token(pan), BIN: bin, Last4: pan[len(pan)-4:], Expiry: "4912"}))

	eng := &authz.Engine{Ledger: &ledger.Engine{L: l, Token: token}}
	stan := 0
	authorize := func() authz.Decision {
		stan++
		return eng.Authorize(ctx, &authz.Request{Kind: authz.KindAuthorization, PAN: pan, TxnType: authz.TxnPurchase,
			Amount: 1, Currency: "978", STAN: fmt.Sprintf("%06d", stan), RRN: fmt.Sprintf("RRN%09d", stan),
			TransmissionTime: "1202120000", AcquirerID: "123456"})
	}
	if d := authorize(); d.Reason != authz.ReasonApproved {
		t.Fatalf("first authorization: %s, want approved", d.Reason)
	}
	for i := range 3 {
		before := counter.n.Load()
		if d := authorize(); d.Reason != authz.ReasonApproved {
			t.Fatalf("authorization %d: %s, want approved", i+2, d.Reason)
		}
		if sent := counter.n.Load() - before; sent != 1 {
			t.Fatalf("authorization %d sent %d commands to redis, want 1", i+2, sent)
		}
	}

	// Locked by another switch (another client, another cache) after this
	// one cached the card.
	other, err := ledger.New(base, ledger.Options{Prefix: prefix})
	must(t, err)
	must(t, other.LockCard(ctx, p.partner, card, 2, "ADMIN"))
	if d := authorize(); d.Reason != authz.ReasonLockedStolen {
		t.Fatalf("authorization after the lock: %s, want %s", d.Reason, authz.ReasonLockedStolen)
	}
	if b := p.user(t, 0); b.Available != 1_000-4 || b.Held != 4 {
		t.Errorf("balance = %+v, want 4 held of 1000", b)
	}
}
