package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger"
)

func ptr(v int64) *int64 { return &v }

// TestActionCodeTable reaches every row of the action-code table of
// iso/README.md in the cmf profile over real TCP, asserting DE39, DE38 and
// the balances.
func TestActionCodeTable(t *testing.T) {
	h := startApp(t, func(c *app.Config) {
		c.AllowPartial = true
		c.MaxAmount = 100_000
		c.VelocityMax = 5
	})
	ctx := context.Background()
	p := h.newProgram(ledger.FundingDeposit, 1_000_000, 50_000)
	c := h.client("cmf")
	card := p.virtualCard(p.balance)

	type want struct {
		code     string
		approval bool
	}
	expect := func(t *testing.T, s *sent, w want) {
		t.Helper()
		if got := field(t, s.Resp, 39); got != w.code {
			t.Fatalf("DE39 = %s, want %s", got, w.code)
		}
		de38 := field(t, s.Resp, 38)
		if w.approval && len(de38) != 6 {
			t.Fatalf("DE38 = %q, want a 6-character approval code", de38)
		}
		if !w.approval && de38 != "" {
			t.Fatalf("DE38 = %q on a decline", de38)
		}
	}

	t.Run("0000 approved, DE54 balance", func(t *testing.T) {
		s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 1_000, Expiry: card.Expiry})
		expect(t, s, want{"0000", true})
		if got := available(t, s.Resp); got != "49000" {
			t.Fatalf("DE54 available = %s, want 49000", got)
		}
		if u := p.user(p.balance); u.Available != 49_000 || u.Held != 1_000 {
			t.Fatalf("balance = %+v", u)
		}
	})

	t.Run("0002 approved for partial amount", func(t *testing.T) {
		bal := p.newBalance(300)
		pc := p.virtualCard(bal)
		s := h.send(c, txn{MTI: "0100", PAN: pc.PAN, Amount: 500})
		expect(t, s, want{"0002", true})
		if u := p.user(bal); u.Available != 0 || u.Held != 300 {
			t.Fatalf("balance = %+v, want 0 available 300 held", u)
		}
		p.checkMoney()
	})

	lockCase := func(reason authz.LockReason, code string) {
		t.Run(code+" lock reason "+reason.String(), func(t *testing.T) {
			lc := p.virtualCard(p.balance)
			_, err := h.App.Issuing.Lock(ctx, p.partner, lc.ID, reason, "PARTNER")
			must(t, err)
			before := p.user(p.balance)
			s := h.send(c, txn{MTI: "0100", PAN: lc.PAN, Amount: 100})
			expect(t, s, want{code, false})
			if after := p.user(p.balance); after != before {
				t.Fatalf("a decline changed the balance: %+v -> %+v", before, after)
			}
		})
	}
	lockCase(authz.LockLost, "2008")
	lockCase(authz.LockStolen, "2009")
	lockCase(authz.LockPendingQuery, "1000")
	lockCase(authz.LockConsolidation, "1016")
	lockCase(authz.LockInactive, "1018")
	lockCase(authz.LockPINTries, "1006")
	lockCase(authz.LockFraud, "1002")
	lockCase(authz.LockReplaced, "1011")

	t.Run("1000 wrong CVV2; a CVV reset retires the old one", func(t *testing.T) {
		vc := p.virtualCard(p.balance)
		full, err := h.App.Issuing.FullData(ctx, p.partner, vc.ID)
		must(t, err)
		expect(t, h.send(c, txn{MTI: "0100", PAN: vc.PAN, Amount: 10, CVV2: full.CVV}), want{"0000", true})
		wrong := "000"
		if full.CVV == wrong {
			wrong = "001"
		}
		expect(t, h.send(c, txn{MTI: "0100", PAN: vc.PAN, Amount: 10, CVV2: wrong}), want{"1000", false})
		fresh, err := h.App.Issuing.ResetCVV(ctx, p.partner, vc.ID)
		must(t, err)
		if fresh.CVV == full.CVV {
			t.Fatalf("the CVV reset kept the CVV2 %s", full.CVV)
		}
		if !cvv2Pattern.MatchString(full.CVV) || !cvv2Pattern.MatchString(fresh.CVV) {
			t.Fatalf("CVV2 before the reset %q, after %q, want three digits each", full.CVV, fresh.CVV)
		}
		expect(t, h.send(c, txn{MTI: "0100", PAN: vc.PAN, Amount: 10, CVV2: full.CVV}), want{"1000", false})
		expect(t, h.send(c, txn{MTI: "0100", PAN: vc.PAN, Amount: 10, CVV2: fresh.CVV}), want{"0000", true})
	})
	t.Run("1001 wrong expiry", func(t *testing.T) {
		s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100, Expiry: "2001"})
		expect(t, s, want{"1001", false})
	})
	t.Run("1004 cash on a virtual card", func(t *testing.T) {
		s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100, Proc: "01"})
		expect(t, s, want{"1004", false})
	})
	t.Run("1010 zero amount", func(t *testing.T) {
		s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 0})
		expect(t, s, want{"1010", false})
	})
	t.Run("1011 unknown PAN", func(t *testing.T) {
		pan, err := cardcrypto.GeneratePAN(p.bin, 16, nil)
		must(t, err)
		s := h.send(c, txn{MTI: "0100", PAN: pan, Amount: 100})
		expect(t, s, want{"1011", false})
	})
	t.Run("1011 removed card", func(t *testing.T) {
		rc := p.virtualCard(p.balance)
		must(t, h.App.Issuing.Remove(ctx, p.partner, rc.ID))
		s := h.send(c, txn{MTI: "0100", PAN: rc.PAN, Amount: 100})
		expect(t, s, want{"1011", false})
	})
	t.Run("1016 insufficient user funds", func(t *testing.T) {
		bal := p.newBalance(50)
		uc := p.physicalCard(bal, authz.StatusActive, "")
		s := h.send(c, txn{MTI: "0100", PAN: uc.PAN, Amount: 80, Proc: "01"})
		expect(t, s, want{"1016", false})
		if u := p.user(bal); u.Available != 50 || u.Held != 0 {
			t.Fatalf("balance = %+v", u)
		}
	})
	t.Run("1016 insufficient partner deposit", func(t *testing.T) {
		small := h.newProgram(ledger.FundingDeposit, 100, 10_000)
		sc := small.virtualCard(small.balance)
		s := h.send(c, txn{MTI: "0100", PAN: sc.PAN, Amount: 500})
		expect(t, s, want{"1016", false})
		if u := small.user(small.balance); u.Available != 10_000 {
			t.Fatalf("user balance changed: %+v", u)
		}
		if d := small.deposit(); d.Available != 100 || d.Reserved != 0 {
			t.Fatalf("deposit changed: %+v", d)
		}
		small.checkMoney()
	})
	t.Run("1017 incorrect PIN, then 1006 after three", func(t *testing.T) {
		pc := p.physicalCard(p.balance, authz.StatusActive, "1234")
		wrong, err := h.App.Keys.EncodePINBlock("9999", pc.PAN)
		must(t, err)
		right, err := h.App.Keys.EncodePINBlock("1234", pc.PAN)
		must(t, err)
		s := h.send(c, txn{MTI: "0100", PAN: pc.PAN, Amount: 100, PINBlock: right})
		expect(t, s, want{"0000", true})
		for i := range 3 {
			s = h.send(c, txn{MTI: "0100", PAN: pc.PAN, Amount: 100, PINBlock: wrong})
			if got := field(t, s.Resp, 39); got != "1017" {
				t.Fatalf("wrong PIN %d: DE39 = %s, want 1017", i+1, got)
			}
		}
		s = h.send(c, txn{MTI: "0100", PAN: pc.PAN, Amount: 100, PINBlock: right})
		expect(t, s, want{"1006", false})
		got, err := h.App.Issuing.Get(ctx, p.partner, pc.ID)
		must(t, err)
		if got.LockReason != int(authz.LockPINTries) {
			t.Fatalf("lock reason = %d, want 6", got.LockReason)
		}
	})
	t.Run("1019 currency not the balance's", func(t *testing.T) {
		s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100, Currency: "840"})
		expect(t, s, want{"1019", false})
	})
	t.Run("0000 billing amount in the balance's currency", func(t *testing.T) {
		s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 110, Currency: "840", Billing: &[2]string{"000000000100", "978"}})
		expect(t, s, want{"0000", true})
	})
	t.Run("1021 exceeds amount limit", func(t *testing.T) {
		s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100_001})
		expect(t, s, want{"1021", false})
	})
	t.Run("1023 exceeds frequency limit", func(t *testing.T) {
		vc := p.virtualCard(p.balance)
		for i := range 5 {
			s := h.send(c, txn{MTI: "0100", PAN: vc.PAN, Amount: 1})
			if got := field(t, s.Resp, 39); got != "0000" {
				t.Fatalf("auth %d: DE39 = %s", i, got)
			}
		}
		s := h.send(c, txn{MTI: "0100", PAN: vc.PAN, Amount: 1})
		expect(t, s, want{"1023", false})
	})
	t.Run("1806 physical card not activated", func(t *testing.T) {
		for _, st := range []authz.CardStatus{authz.StatusOrdered, authz.StatusLinked} {
			pc := p.physicalCard(p.balance, st, "")
			s := h.send(c, txn{MTI: "0100", PAN: pc.PAN, Amount: 100})
			expect(t, s, want{"1806", false})
		}
	})
	t.Run("4000 reversal restores funds; 1816 original not found", func(t *testing.T) {
		bal := p.newBalance(1_000)
		rc := p.virtualCard(bal)
		orig := h.send(c, txn{MTI: "0100", PAN: rc.PAN, Amount: 400})
		expect(t, orig, want{"0000", true})
		rev := h.send(c, txn{MTI: "0400", PAN: rc.PAN, Amount: 400, RRN: orig.RRN, Original: orig})
		expect(t, rev, want{"4000", false})
		if u := p.user(bal); u.Available != 1_000 || u.Held != 0 {
			t.Fatalf("after reversal: %+v", u)
		}
		missing := &sent{MTI: "0100", STAN: "999999", DE7: "0101000000", RRN: "000000000001"}
		nf := h.send(c, txn{MTI: "0400", PAN: rc.PAN, Amount: 400, RRN: missing.RRN, Original: missing})
		expect(t, nf, want{"1816", false})
		if u := p.user(bal); u.Available != 1_000 {
			t.Fatalf("original-not-found changed the balance: %+v", u)
		}
		p.checkMoney()
	})
	t.Run("9001 advice accepted", func(t *testing.T) {
		s := h.send(c, txn{MTI: "0120", PAN: card.PAN, Amount: 100})
		expect(t, s, want{"9001", false})
	})
	t.Run("8000 network management", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		must(t, c.Echo(ctx))
	})
	t.Run("9100 format error", func(t *testing.T) {
		m := c.NewMessage("0100")
		must(t, m.Field(2, card.PAN))
		must(t, m.Field(3, "000000"))
		must(t, m.Field(11, c.NextSTAN()))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := c.Send(ctx, m)
		must(t, err)
		if got := field(t, resp, 39); got != "9100" {
			t.Fatalf("DE39 = %s, want 9100", got)
		}
	})
	t.Run("9102 unsupported processing code", func(t *testing.T) {
		s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100, Proc: "40"})
		expect(t, s, want{"9102", false})
	})
	t.Run("9109 system error", func(t *testing.T) {
		bal := p.newBalance(1_000)
		sc := p.virtualCard(bal)
		// A corrupt balance row (not an integer) makes the script fail:
		// the switch answers system error instead of guessing.
		key := h.App.Ledger.Keys().Row(p.partner, "user_balances", bal)
		must(t, h.App.Redis.HSet(ctx, key, "available", "corrupt").Err())
		s := h.send(c, txn{MTI: "0100", PAN: sc.PAN, Amount: 100})
		expect(t, s, want{"9109", false})
		must(t, h.App.Redis.HSet(ctx, key, "available", "1000").Err())
	})
	p.checkMoney()

	t.Run("journal keeps every decision's reason, never a PAN", func(t *testing.T) {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		must(t, h.App.FlushJournal(fctx))
		var n int
		must(t, h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM journal
			WHERE type = 'decline' AND reason = 'CARD_LOCKED_FRAUD' AND meta->>'mti' = '0100' AND meta->>'card' <> ''`).Scan(&n))
		if n != 1 {
			t.Fatalf("journal has %d fraud-lock declines with context, want 1", n)
		}
		var leaks int
		must(t, h.App.Pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM journal WHERE changes::text LIKE '%' || $1 || '%' OR coalesce(meta::text, '') LIKE '%' || $1 || '%')
			+ (SELECT count(*) FROM cards c WHERE c::text LIKE '%' || $1 || '%')`, card.PAN).Scan(&leaks))
		if leaks != 0 {
			t.Fatalf("the PAN appears in clear in %d Postgres rows", leaks)
		}
	})
}

// TestISO87Sample checks a sample of the table in the iso87 profile.
func TestISO87Sample(t *testing.T) {
	h := startApp(t, func(c *app.Config) { c.ISOProfile = "iso87" })
	ctx := context.Background()
	p := h.newProgram(ledger.FundingCredit, 1_000_000, 10_000)
	c := h.client("iso87")
	card := p.virtualCard(p.balance)
	cases := []struct {
		name string
		x    txn
		want string
	}{
		{"approved", txn{MTI: "0100", PAN: card.PAN, Amount: 100}, "00"},
		{"insufficient funds", txn{MTI: "0100", PAN: card.PAN, Amount: 20_000}, "51"},
		{"wrong expiry", txn{MTI: "0100", PAN: card.PAN, Amount: 100, Expiry: "2001"}, "54"},
		{"restricted", txn{MTI: "0100", PAN: card.PAN, Amount: 100, Proc: "01"}, "62"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := h.send(c, tc.x)
			if got := field(t, s.Resp, 39); got != tc.want {
				t.Fatalf("DE39 = %s, want %s", got, tc.want)
			}
		})
	}
	stolen := p.virtualCard(p.balance)
	_, err := h.App.Issuing.Lock(ctx, p.partner, stolen.ID, authz.LockStolen, "CUSTOMER")
	must(t, err)
	if got := field(t, h.send(c, txn{MTI: "0100", PAN: stolen.PAN, Amount: 1}).Resp, 39); got != "43" {
		t.Fatalf("stolen card: DE39 = %s, want 43", got)
	}
	p.checkMoney()
}
