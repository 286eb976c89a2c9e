package pgstore

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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

// BenchmarkSinkSmallBatches measures what a group commit of a few
// authorizations costs, as it comes at moderate rates: CPU of the Postgres
// backend (read from /proc, so Postgres must run on this machine) and of
// this process per event, for batches of 1, 4 and 16 reserve events,
// applied in one round trip (every event new: the common case) and the
// careful way (BEGIN, journal insert returning the new events, changes,
// COMMIT) that a batch holding a stored event takes.
//
//	go test -run '^$' -bench BenchmarkSinkSmallBatches -benchtime 2000x ./ledger/pgstore/
func BenchmarkSinkSmallBatches(b *testing.B) {
	for _, size := range []int{1, 4, 16} {
		for _, path := range []string{"one-round-trip", "checked"} {
			b.Run(fmt.Sprintf("%s/%d", path, size), func(b *testing.B) {
				fx := newFixture(b)
				ctx := context.Background()
				cfg, err := pgxpool.ParseConfig(fx.dbURL)
				if err != nil {
					b.Fatal(err)
				}
				cfg.MaxConns, cfg.MinConns = 1, 1
				if os.Getenv("PGLOG") != "" {
					cfg.ConnConfig.RuntimeParams["log_min_duration_statement"] = "0"
				}
				pool, err := pgxpool.NewWithConfig(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer pool.Close()
				var pid int
				if err := pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
					b.Fatal(err)
				}
				sink := NewPGSink(pool)
				seq := int64(0)
				batch := func() []Event {
					evs := make([]Event, 0, size)
					for range size {
						seq++
						ub := "ub" + strconv.FormatInt(seq%100, 10)
						f := reserveEntry("p0", seq, "h"+strconv.FormatInt(seq, 10), ub, seq, seq)
						ev, err := ParseEntry("p0", "", f)
						if err != nil {
							b.Fatal(err)
						}
						evs = append(evs, ev)
					}
					return evs
				}
				pg0, self0 := procCPU(b, pid), selfCPU()
				b.ResetTimer()
				for range b.N {
					evs := batch()
					if path == "checked" {
						chs := make([]string, len(evs))
						for i, ev := range evs {
							chs[i] = string(changesJSON(ev.Changes))
						}
						_, err = sink.applyChecked(ctx, evs, newJournalColumns(evs, chs))
					} else {
						_, err = sink.Apply(ctx, evs)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				n := float64(b.N * size)
				b.ReportMetric(float64((procCPU(b, pid)-pg0).Microseconds())/n, "pg-µs/event")
				b.ReportMetric(float64((selfCPU()-self0).Microseconds())/n, "go-µs/event")
				var stored int
				if err := pool.QueryRow(ctx, "SELECT count(*) FROM journal").Scan(&stored); err != nil || stored != b.N*size {
					b.Fatalf("journal holds %d events (%v), want %d", stored, err, b.N*size)
				}
			})
		}
	}
}

// procCPU is the user+system CPU time of process pid.
func procCPU(tb testing.TB, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Skipf("reading the Postgres backend's CPU time: %v", err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
