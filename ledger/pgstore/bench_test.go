package pgstore

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// reserveEntry is the journal entry of an authorization in the DEPOSIT
// model: a new hold, the user balance's available->held, the partner
// deposit's available->reserved.
func reserveEntry(p string, seq int64, hold string, ub string, ubV, pbV int64) map[string]any {
	ch := fmt.Sprintf(`[{"t":"holds","id":%q,"v":"1","set":{"balance_id":%q,"card_id":"card","partner_balance_id":"%s-pb",`+
		`"currency":"EUR","amount":"100","state":"OPEN","idem_key":"idem-%s","approval_code":"A1B2C3","txn_type":"purchase","created_ms":"1780000000000"}},`+
		`{"t":"user_balances","id":%q,"v":"%d","add":{"available":"-100","held":"100"}},`+
		`{"t":"partner_balances","id":"%s-pb","v":"%d","add":{"available":"-100","reserved":"100"}}]`,
		hold, ub, p, hold, ub, ubV, p, pbV)
	return map[string]any{"seq": seq, "type": "reserve", "reason": "APPROVED", "ts": "1780000000000", "ch": ch}
}

// BenchmarkWriteBehind measures events per second from the journal streams
// into Postgres: b.N reserve events (3 row changes each) over 4 partners
// and 400 user balances are written to Redis first, then one worker
// flushes them with the default batch size.
//
//	go test -run '^$' -bench BenchmarkWriteBehind -benchtime 50000x ./ledger/pgstore/
func BenchmarkWriteBehind(b *testing.B) {
	fx := newFixture(b)
	ctx := context.Background()
	partners := []string{"p0", "p1", "p2", "p3"}
	seq := map[string]int64{}
	ubV := map[string]int64{}
	pipe := fx.rdb.Pipeline()
	for i := range b.N {
		p := partners[i%len(partners)]
		seq[p]++
		ub := p + "-ub" + strconv.Itoa(i/len(partners)%100)
		ubV[ub]++
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: fx.keys.Journal(p), Values: reserveEntry(p, seq[p], p+"-h"+strconv.Itoa(i), ub, ubV[ub], seq[p])})
		if pipe.Len() >= 1000 {
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, p := range partners {
		pipe.SAdd(ctx, fx.keys.Partners(), p)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	w, _ := fx.worker(b, "bench")

	b.ResetTimer()
	start := time.Now()
	if err := w.Flush(ctx); err != nil {
		b.Fatalf("Flush: %v", err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")

	var n int
	if err := fx.pool.QueryRow(ctx, "SELECT count(*) FROM journal").Scan(&n); err != nil || n != b.N {
		b.Fatalf("journal holds %d events, %v; want %d", n, err, b.N)
	}
}

// BenchmarkSink compares PGSink's set-based batches with applying the
// documented rule one statement at a time, on 500-event batches.
//
//	go test -run '^$' -bench BenchmarkSink -benchtime 20x ./ledger/pgstore/
func BenchmarkSink(b *testing.B) {
	mkBatch := func(round int) []Event {
		evs := make([]Event, 0, 500)
		for i := range 500 {
			seq := int64(round*500 + i + 1)
			ub := "ub" + strconv.Itoa(i%100)
			ubV := int64(round*5 + i/100 + 1)
			f := reserveEntry("p0", seq, "h"+strconv.FormatInt(seq, 10), ub, ubV, seq)
			ev, err := ParseEntry("p0", "", f)
			if err != nil {
				b.Fatal(err)
			}
			evs = append(evs, ev)
		}
		return evs
	}
	b.Run("set-based", func(b *testing.B) {
		fx := newFixture(b)
		sink := NewPGSink(fx.pool)
		ctx := context.Background()
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			evs := mkBatch(i)
			b.StartTimer()
			if _, err := sink.Apply(ctx, evs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("per-statement", func(b *testing.B) {
		fx := newFixture(b)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, fx.dbURL)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			evs := mkBatch(i)
			b.StartTimer()
			if err := applySequential(ctx, conn, evs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
