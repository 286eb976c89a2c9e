package pgstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/antaca/antaca/ledger/ledgertest"
)

// BenchmarkTransactionList measures the listing of one card's 20 newest
// transactions (Transactions.List: holds, declines and the holds'
// histories, four queries) with 1,000,000 transactions in the tables:
// 40,000 cards of 5 partners, each with 22 holds (a third of them
// captured, so 1.3M journal entries for holds) and 3 declines. The rows
// are loaded once with COPY (the journal through the journal_refs
// trigger, as the write-behind fills it). It reports the p50 and p99 of
// one listing in milliseconds, first page and a page after a cursor.
//
//	go test -run '^$' -bench BenchmarkTransactionList -benchtime 2000x ./ledger/pgstore/
func BenchmarkTransactionList(b *testing.B) {
	const (
		partners       = 5
		cards          = 40_000
		holdsPerCard   = 22
		declinesPerCar = 3
	)
	ctx := context.Background()
	dbURL := ledgertest.MustDatabase(b)
	if err := Migrate(ctx, dbURL); err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()

	start := time.Now()
	now := time.Now().UnixMilli()
	rng := rand.New(rand.NewPCG(1, 2))
	cardID := func(i int) string { return fmt.Sprintf("crd_%08d", i) }
	partnerOf := func(i int) string { return fmt.Sprintf("p%d", i%partners) }

	// Holds.
	i := 0
	holdRows := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= cards*holdsPerCard {
			return nil, nil
		}
		c := i / holdsPerCard
		created := now - rng.Int64N(30*24*3600*1000)
		state, captured, closed := "OPEN", int64(0), int64(0)
		if i%3 == 0 {
			state, captured, closed = "CAPTURED", 1000, created+1000
		}
		row := []any{fmt.Sprintf("hld_%09d", i), partnerOf(c), int64(2), fmt.Sprintf("bal_%08d", c/2), cardID(c), "", "EUR",
			int64(1000), captured, int64(0), state, "", "ABC123", "00", created, closed, "", "reserve", int64(1000), int64(1000)}
		i++
		return row, nil
	})
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"holds"}, []string{"id", "partner_id", "v", "balance_id", "card_id",
		"partner_balance_id", "currency", "amount", "captured", "released", "state", "idem_key", "approval_code", "txn_type",
		"created_ms", "closed_ms", "reference", "origin", "requested", "approved"}, holdRows); err != nil {
		b.Fatalf("copying holds: %v", err)
	}

	// The journal: a reserve entry per hold, a capture per captured hold,
	// and the declines, numbered per partner.
	seqs := make([]int64, partners)
	type entry struct {
		p        string
		typ      string
		ts       int64
		ch, meta string
	}
	var pending []entry
	h := 0
	d := 0
	journalRows := pgx.CopyFromFunc(func() ([]any, error) {
		for len(pending) == 0 {
			switch {
			case h < cards*holdsPerCard:
				c := h / holdsPerCard
				hid := fmt.Sprintf("hld_%09d", h)
				ts := now - rng.Int64N(30*24*3600*1000)
				pending = append(pending, entry{partnerOf(c), "reserve", ts,
					fmt.Sprintf(`[{"t":"holds","id":%q,"v":"1","set":{"card_id":%q,"amount":"1000","state":"OPEN"}},{"t":"user_balances","id":"bal_%08d","v":"1","add":{"available":"-1000","held":"1000"}}]`, hid, cardID(c), c/2),
					fmt.Sprintf(`{"mti":"0100","card":%q,"amount":1000,"currency":"978","mcc":"5411"}`, cardID(c))})
				if h%3 == 0 {
					pending = append(pending, entry{partnerOf(c), "capture", ts + 1000,
						fmt.Sprintf(`[{"t":"holds","id":%q,"v":"2","set":{"state":"CAPTURED"},"add":{"captured":"1000"}}]`, hid), `{"mti":"0220"}`})
				}
				h++
			case d < cards*declinesPerCar:
				c := d / declinesPerCar
				pending = append(pending, entry{partnerOf(c), "decline", now - rng.Int64N(30*24*3600*1000), "[]",
					fmt.Sprintf(`{"mti":"0100","card":%q,"amount":5000,"currency":"978","mcc":"5411"}`, cardID(c))})
				d++
			default:
				return nil, nil
			}
		}
		e := pending[0]
		pending = pending[1:]
		var pi int
		_, _ = fmt.Sscanf(e.p, "p%d", &pi)
		seqs[pi]++
		reason := "APPROVED"
		if e.typ == "decline" {
			reason = "INSUFFICIENT_USER_FUNDS"
		}
		return []any{e.p, seqs[pi], e.typ, reason, e.ts, e.ch, e.meta}, nil
	})
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"journal"}, []string{"partner_id", "seq", "type", "reason", "ts_ms", "changes", "meta"}, journalRows); err != nil {
		b.Fatalf("copying journal: %v", err)
	}
	for _, t := range []string{"holds", "journal", "journal_refs"} {
		if _, err := pool.Exec(ctx, "VACUUM ANALYZE "+t); err != nil {
			b.Fatal(err)
		}
	}
	var nHolds, nRefs int64
	if err := pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM holds), (SELECT count(*) FROM journal_refs)").Scan(&nHolds, &nRefs); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d holds and %d declines (%d journal references) in %s", nHolds, cards*declinesPerCar, nRefs, time.Since(start).Round(time.Second))

	store := NewTransactions(Postgres(pool))
	run := func(b *testing.B, cursor bool) {
		var took []time.Duration
		for b.Loop() {
			c := rng.IntN(cards)
			q := TxnQuery{PartnerID: partnerOf(c), CardID: cardID(c), Limit: 20}
			if cursor {
				first, _, err := store.List(ctx, q)
				if err != nil || len(first) != 20 {
					b.Fatalf("first page: %d, %v", len(first), err)
				}
				ref := first[len(first)-1].Ref()
				q.After = &ref
			}
			t0 := time.Now()
			got, _, err := store.List(ctx, q)
			took = append(took, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			if want := 20; !cursor && len(got) != want || cursor && len(got) != holdsPerCard+declinesPerCar-20 {
				b.Fatalf("card %d: %d transactions", c, len(got))
			}
		}
		slices.Sort(took)
		pct := func(p float64) float64 {
			return float64(took[min(len(took)-1, int(p*float64(len(took))))].Microseconds()) / 1000
		}
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
	}
	b.Run("first-page", func(b *testing.B) { run(b, false) })
	b.Run("after-cursor", func(b *testing.B) { run(b, true) })
}
