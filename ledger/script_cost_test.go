package ledger_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// BenchmarkScriptInstructions counts what the hot path's scripts cost Redis
// in instructions, which, unlike time, a busy machine does not change: a
// private redis-server runs under valgrind's callgrind, counters are zeroed
// before the loop and dumped after it, and the total is divided by b.N. It
// needs valgrind and redis-server, and runs only when asked:
//
//	ANTACA_BENCH_CALLGRIND=1 go test -run '^$' -bench BenchmarkScriptInstructions -benchtime 300x ./ledger/
//
// The figures include Redis's own work for each call (reading the request,
// running the script, writing the reply), not the kernel's. With
// ANTACA_CALLGRIND_KEEP=/some/prefix each dump is kept for
// callgrind_annotate --inclusive=yes.
func BenchmarkScriptInstructions(b *testing.B) {
	if os.Getenv("ANTACA_BENCH_CALLGRIND") == "" {
		b.Skip("set ANTACA_BENCH_CALLGRIND=1 to count Redis instructions under callgrind")
	}
	for _, tool := range []string{"valgrind", "callgrind_control", "redis-server"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed", tool)
		}
	}
	b.Run("reserve", func(b *testing.B) {
		cg, l, p, card := callgrindLedger(b)
		ctx := context.Background()
		cg.zero(b)
		b.ResetTimer()
		for i := range b.N {
			res, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], CardID: card.ID,
				Amount: 1, IdempotencyKey: fmt.Sprintf("cg-%d", i), ApprovalCode: "A00001", TxnType: "00",
				Reference: fmt.Sprintf("RRN%09d|%s", i, card.ID), Meta: `{"mti":"0100","card":"` + card.ID + `","amount":1}`,
				CardVersion: card.Version})
			if err != nil || res.Reason != "APPROVED" {
				b.Fatalf("reserve: %v %s", err, res.Reason)
			}
		}
		b.StopTimer()
		b.ReportMetric(cg.perCall(b, b.N), "redis-instr/op")
	})
	b.Run("record_decline", func(b *testing.B) {
		cg, l, p, card := callgrindLedger(b)
		eng := &ledger.Engine{L: l, Token: func(s string) string { return s }}
		ctx := context.Background()
		cg.zero(b)
		b.ResetTimer()
		for i := range b.N {
			if _, err := eng.RecordDecline(ctx, p.partner, fmt.Sprintf("cg-%d|%s", i, card.ID), 1, authz.ReasonExpiredCard,
				`{"mti":"0100","card":"`+card.ID+`"}`); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(cg.perCall(b, b.N), "redis-instr/op")
	})
	b.Run("card_by_pan", func(b *testing.B) {
		cg, l, p, card := callgrindLedger(b)
		ctx := context.Background()
		cg.zero(b)
		b.ResetTimer()
		for range b.N {
			if _, err := l.CardByPANHash(ctx, p.partner, card.PANHash); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(cg.perCall(b, b.N), "redis-instr/op")
	})
}

// callgrindRedis is a redis-server running under callgrind.
type callgrindRedis struct {
	pid int
	out string // callgrind's output file
}

// callgrindLedger starts a private redis-server under callgrind and seeds
// a DEPOSIT program with one funded balance and an active card.
func callgrindLedger(b *testing.B) (*callgrindRedis, *ledger.Ledger, *program, ledger.Card) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	dir := b.TempDir()
	out := filepath.Join(dir, "callgrind.out")
	cmd := exec.Command("valgrind", "--tool=callgrind", "--callgrind-out-file="+out,
		"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--hz", "1", "--dir", dir)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(60 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("redis-server under callgrind did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	b.Cleanup(func() { _ = rdb.Close() })
	l, err := ledger.New(rdb, ledger.Options{Prefix: ledgertest.UniqueName("cg")})
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Preload(context.Background()); err != nil {
		b.Fatal(err)
	}
	p := newProgram(b, l, ledger.FundingDeposit, 1<<38, 1<<38)
	card := ledger.Card{ID: ledger.NewID("crd"), PartnerID: p.partner, CustomerID: p.customer, BalanceID: p.balances[0],
		Type: "VIRTUAL", Status: "ACTIVE", PANHash: "cg-pan", Last4: "1234", Expiry: "3012"}
	must(b, l.CreateCard(context.Background(), card))
	found, err := l.CardByPANHash(context.Background(), p.partner, card.PANHash)
	must(b, err)
	card.Version = found.Version
	return &callgrindRedis{pid: cmd.Process.Pid, out: out}, l, p, card
}

func (c *callgrindRedis) zero(b *testing.B) {
	b.Helper()
	if out, err := exec.Command("callgrind_control", "-z", strconv.Itoa(c.pid)).CombinedOutput(); err != nil {
		b.Fatalf("callgrind_control -z: %v: %s", err, out)
	}
}

// perCall dumps the counters and returns the instructions since zero per
// call.
func (c *callgrindRedis) perCall(b *testing.B, calls int) float64 {
	b.Helper()
	if out, err := exec.Command("callgrind_control", "-d", strconv.Itoa(c.pid)).CombinedOutput(); err != nil {
		b.Fatalf("callgrind_control -d: %v: %s", err, out)
	}
	dumps, _ := filepath.Glob(c.out + ".*")
	if len(dumps) == 0 {
		b.Fatal("callgrind wrote no dump")
	}
	if k := os.Getenv("ANTACA_CALLGRIND_KEEP"); k != "" {
		_ = exec.Command("cp", dumps[len(dumps)-1], k+"."+strings.ReplaceAll(b.Name(), "/", "_")).Run()
	}
	raw, err := os.ReadFile(dumps[len(dumps)-1])
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "summary: "); ok {
			n, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			if err != nil {
				b.Fatal(err)
			}
			return n / float64(calls)
		}
	}
	b.Fatal("no summary in the callgrind dump")
	return 0
}
