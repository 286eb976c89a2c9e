package ledger_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/antaca/antaca/ledger"
)

// BenchmarkReserve measures reservations through the real Redis: one
// Lua script per authorization (idempotency key, deposit, user balance,
// hold, journal entry). Parallel clients spread over 64 balances of one
// partner, as a program's authorizations are.
func BenchmarkReserve(b *testing.B) {
	l := newLedger(b)
	p := newProgram(b, l, ledger.FundingDeposit, 1<<50, 0)
	for range 63 {
		p.addBalance(b, 0)
	}
	ctx := context.Background()
	for _, id := range p.balances { // 1e11 each: within authz.MaxAmount
		if _, _, err := l.ReloadUserBalance(ctx, p.partner, id, 100_000_000_000, ""); err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Int64
	b.SetParallelism(16) // 16 x GOMAXPROCS connections in flight
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			res, err := l.Reserve(ctx, ledger.Reservation{
				PartnerID: p.partner, BalanceID: p.balances[n%int64(len(p.balances))], Amount: 1,
				IdempotencyKey: fmt.Sprintf("bench%d", n), ApprovalCode: "000001", TxnType: "00",
			})
			if err != nil || res.Reason != "APPROVED" {
				b.Fatalf("reserve: %v %s", err, res.Reason)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reservations/s")
}
