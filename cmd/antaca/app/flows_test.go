package app_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger"
)

func TestReversalsDuplicatesAndAdvices(t *testing.T) {
	h := startApp(t, nil)
	p := h.newProgram(ledger.FundingDeposit, 1_000_000, 10_000)
	c := h.client("cmf")
	card := p.virtualCard(p.balance)
	code := func(s *sent) string { return field(t, s.Resp, 39) }

	t.Run("duplicate 0100 answers the same DE38 and leaves one hold", func(t *testing.T) {
		x := txn{MTI: "0100", PAN: card.PAN, Amount: 700, STAN: c.NextSTAN(), RRN: newRRN(), DE7: time.Now().UTC().Format("0102150405")}
		first := h.send(c, x)
		again := h.send(c, x)
		x.MTI = "0101"
		repeat := h.send(c, x)
		for _, s := range []*sent{first, again, repeat} {
			if code(s) != "0000" || field(t, s.Resp, 38) != field(t, first.Resp, 38) {
				t.Fatalf("answer %s/%s, want 0000/%s", code(s), field(t, s.Resp, 38), field(t, first.Resp, 38))
			}
		}
		if u := p.user(p.balance); u.Held != 700 || u.Available != 9_300 {
			t.Fatalf("balance = %+v, want one hold of 700", u)
		}
		// Reverse it and check the funds return exactly, once.
		rev := txn{MTI: "0400", PAN: card.PAN, Amount: 700, RRN: first.RRN, Original: first, STAN: c.NextSTAN(), DE7: time.Now().UTC().Format("0102150405")}
		r1 := h.send(c, rev)
		rev.MTI = "0401"
		r2 := h.send(c, rev)
		rev.MTI = "0400"
		rev.STAN = c.NextSTAN() // a second, distinct reversal of the same original
		r3 := h.send(c, rev)
		for _, s := range []*sent{r1, r2, r3} {
			if code(s) != "4000" {
				t.Fatalf("reversal DE39 = %s, want 4000", code(s))
			}
		}
		if u := p.user(p.balance); u.Held != 0 || u.Available != 10_000 {
			t.Fatalf("after reversals: %+v, want 10000 available", u)
		}
		p.checkMoney()
	})

	t.Run("the same STAN, DE7 and RRN on two cards are two transactions", func(t *testing.T) {
		bal := p.newBalance(500)
		other := p.virtualCard(bal)
		x := txn{MTI: "0100", PAN: card.PAN, Amount: 100, STAN: c.NextSTAN(), RRN: newRRN(), DE7: time.Now().UTC().Format("0102150405")}
		a := h.send(c, x)
		x.PAN = other.PAN
		b := h.send(c, x)
		if code(a) != "0000" || code(b) != "0000" {
			t.Fatalf("answers %s, %s", code(a), code(b))
		}
		if u := p.user(bal); u.Held != 100 {
			t.Fatalf("second card's balance %+v: its authorization was taken for a duplicate", u)
		}
		// Give the funds back so the rest of the test keeps its figures.
		for _, s := range []*sent{a, b} {
			pan := card.PAN
			if s == b {
				pan = other.PAN
			}
			if got := code(h.send(c, txn{MTI: "0400", PAN: pan, Amount: 100, RRN: s.RRN, Original: s})); got != "4000" {
				t.Fatalf("reversal: %s", got)
			}
		}
		p.checkMoney()
	})

	t.Run("partial reversal restores the difference", func(t *testing.T) {
		orig := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 1_000})
		if code(orig) != "0000" {
			t.Fatalf("auth: %s", code(orig))
		}
		rev := h.send(c, txn{MTI: "0400", PAN: card.PAN, Amount: 1_000, RRN: orig.RRN, Original: orig, Replace: ptr(600)})
		if code(rev) != "4000" {
			t.Fatalf("partial reversal: %s", code(rev))
		}
		if u := p.user(p.balance); u.Held != 600 || u.Available != 9_400 {
			t.Fatalf("after partial reversal: %+v, want 600 held", u)
		}
		// Completion advice of the remaining 600 posts it.
		adv := h.send(c, txn{MTI: "0220", PAN: card.PAN, Amount: 600, RRN: orig.RRN, Original: orig})
		if code(adv) != "9001" {
			t.Fatalf("completion advice: %s", code(adv))
		}
		if u := p.user(p.balance); u.Held != 0 || u.Posted != 600 || u.Available != 9_400 {
			t.Fatalf("after completion: %+v", u)
		}
		p.checkMoney()
	})

	t.Run("0200 posts at once and its reversal gives it back", func(t *testing.T) {
		fin := h.send(c, txn{MTI: "0200", PAN: card.PAN, Amount: 250})
		if code(fin) != "0000" {
			t.Fatalf("0200: %s", code(fin))
		}
		if u := p.user(p.balance); u.Posted != 850 || u.Held != 0 {
			t.Fatalf("after 0200: %+v", u)
		}
		rev := h.send(c, txn{MTI: "0420", PAN: card.PAN, Amount: 250, RRN: fin.RRN, Original: fin})
		if code(rev) != "4000" {
			t.Fatalf("0420: %s", code(rev))
		}
		if u := p.user(p.balance); u.Posted != 600 || u.Available != 9_400 {
			t.Fatalf("after 0420: %+v", u)
		}
		p.checkMoney()
	})

	t.Run("stand-in advice posts without a funds check", func(t *testing.T) {
		bal := p.newBalance(100)
		sc := p.virtualCard(bal)
		adv := h.send(c, txn{MTI: "0120", PAN: sc.PAN, Amount: 300})
		if code(adv) != "9001" {
			t.Fatalf("advice: %s", code(adv))
		}
		if u := p.user(bal); u.Available != -200 || u.Posted != 300 {
			t.Fatalf("after stand-in advice: %+v, want -200 available", u)
		}
		dup := h.send(c, txn{MTI: "0121", PAN: sc.PAN, Amount: 300, STAN: adv.STAN, DE7: adv.DE7, RRN: adv.RRN})
		if code(dup) != "9001" || p.user(bal).Posted != 300 {
			t.Fatalf("repeated advice posted twice: %s %+v", code(dup), p.user(bal))
		}
		p.checkMoney()
	})

	t.Run("refund and balance inquiry", func(t *testing.T) {
		before := p.user(p.balance).Available
		rf := h.send(c, txn{MTI: "0200", PAN: card.PAN, Amount: 75, Proc: "20"})
		if code(rf) != "0000" {
			t.Fatalf("refund: %s", code(rf))
		}
		bi := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 0, Proc: "30"})
		if code(bi) != "0000" || available(t, bi.Resp) != fmt.Sprint(before+75) {
			t.Fatalf("balance inquiry: %s, DE54 %s, want %d", code(bi), available(t, bi.Resp), before+75)
		}
		p.checkMoney()
	})
}

// TestConcurrentConnections: 200 connections sending authorizations at
// once; every request is answered with its own response.
func TestConcurrentConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("200 connections")
	}
	// The test is about pairing answers with requests, not latency: a
	// thousand authorizations at once under -race on a loaded machine can
	// miss the usual deadline, and 9112 would not say anything here. The
	// 200 connections all come from 127.0.0.1: no per-address limit.
	h := startApp(t, func(c *app.Config) { c.ISODeadline = 5 * time.Second; c.ISOMaxConnsPerIP = -1 })
	p := h.newProgram(ledger.FundingDeposit, 10_000_000, 10_000_000)
	card := p.virtualCard(p.balance)
	const conns, perConn = 200, 5
	var wg sync.WaitGroup
	errs := make(chan error, conns*perConn)
	for i := range conns {
		c := h.client("cmf")
		wg.Add(1)
		go func() {
			defer wg.Done()
			var inner sync.WaitGroup
			for j := range perConn {
				inner.Add(1)
				go func() {
					defer inner.Done()
					amount := int64(i*perConn + j + 1)
					m := c.NewMessage("0100")
					stan := c.NextSTAN()
					rrn := fmt.Sprintf("%06d%06d", i, j)
					for id, v := range map[int]string{2: card.PAN, 3: "000000", 4: fmt.Sprintf("%012d", amount),
						7: time.Now().UTC().Format("0102150405"), 11: stan, 32: acquirer, 37: rrn, 49: "978"} {
						if err := m.Field(id, v); err != nil {
							errs <- err
							return
						}
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					resp, err := c.Send(ctx, m)
					if err != nil {
						errs <- err
						return
					}
					gotSTAN, _ := resp.GetString(11)
					gotRRN, _ := resp.GetString(37)
					gotAmt, _ := resp.GetString(4)
					code, _ := resp.GetString(39)
					if gotSTAN != stan || gotRRN != rrn || strings.TrimLeft(gotAmt, "0") != fmt.Sprint(amount) || code != "0000" {
						errs <- fmt.Errorf("conn %d req %d: response %s/%s/%s/%s does not match request %s/%s/%d", i, j, gotSTAN, gotRRN, gotAmt, code, stan, rrn, amount)
					}
				}()
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := int64(conns * perConn)
	if u := p.user(p.balance); u.Held != n*(n+1)/2 {
		t.Fatalf("held = %d, want %d", u.Held, n*(n+1)/2)
	}
	p.checkMoney()
}
