package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// `antaca demo` runs the ledger's scripts in an in-process Redis
// (miniredis, whose Lua is gopher-lua with its own cjson). These tests
// hold it to real Redis: the package's whole suite passes on it, and every
// script leaves the same journal, answers and keys on both.

// recordingJournal keeps every journal entry the scripts return.
type recordingJournal struct {
	mu      sync.Mutex
	entries []ledger.JournalEntry
}

func (j *recordingJournal) Commit(_ context.Context, entries []ledger.JournalEntry, _ bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, entries...)
	return nil
}

// scriptRun is one store's record of the same operations.
type scriptRun struct {
	results []string // "<script>: <answer>", one per operation
	journal []string // type, reason, ts, meta and the changes, keys sorted
	keys    []string // every key: type, value, whether it expires
}

// runEveryScript runs each script of lua/ at least once, in an order
// that makes every one succeed, on rdb with a fixed clock, and records
// what happened. ran lists the scripts run.
func runEveryScript(t *testing.T, rdb redis.UniversalClient, prefix string) (run scriptRun, ran map[string]bool) {
	t.Helper()
	ctx := context.Background()
	// A clock that moves a millisecond at each reading: holds created by
	// one run sort as in the other (ties would fall to the random ids).
	clock := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var cmu sync.Mutex
	now := func() time.Time {
		cmu.Lock()
		defer cmu.Unlock()
		clock = clock.Add(time.Millisecond)
		return clock
	}
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix, Now: now})
	must(t, err)
	must(t, l.Preload(ctx))
	j := &recordingJournal{}
	l.SetJournal(j, ledger.AnswerAfterPostgres)
	eng := &ledger.Engine{L: l, Token: func(pan string) string { return "tok-" + pan }, VelocityWindow: time.Hour, CardCacheTTL: -1}
	ran = map[string]bool{}
	step := func(script string, f func() (any, error)) any {
		t.Helper()
		ran[script] = true
		v, err := f()
		if err != nil {
			t.Fatalf("%s: %v", script, err)
		}
		run.results = append(run.results, fmt.Sprintf("%s: %+v", script, v))
		return v
	}
	const p, pb, cus, ub, card = "ep", "ep_pb", "ep_cus", "ep_ub", "ep_card"
	step("create_partner", func() (any, error) {
		return nil, l.CreatePartner(ctx, ledger.Partner{ID: p, Name: "Émile & Co", BIN: "49990123", Currency: "EUR",
			FundingModel: ledger.FundingDeposit, DigitalFirst: true})
	})
	step("create_partner_balance", func() (any, error) {
		return nil, l.CreatePartnerBalance(ctx, p, pb, ledger.FundingDeposit, "EUR", 900_000)
	})
	step("reload_partner_balance", func() (any, error) { return l.ReloadPartnerBalance(ctx, p, pb, 999_999_999_999, "pr1") })
	step("create_customer", func() (any, error) {
		return nil, l.CreateCustomer(ctx, ledger.Customer{ID: cus, PartnerID: p, ExternalID: "x-1", FirstName: "Zoë \"Z\"", LastName: "Ñ\\ü", Email: "z@example.test"})
	})
	step("set_kyc", func() (any, error) { return nil, l.SetKYC(ctx, p, cus, "VERIFIED") })
	step("create_user_balance", func() (any, error) { return nil, l.CreateUserBalance(ctx, p, cus, ub, "EUR") })
	step("reload_user_balance", func() (any, error) {
		b, ch, err := l.ReloadUserBalance(ctx, p, ub, 500_000, "ur1")
		return fmt.Sprintf("%+v %+v", b, ch), err
	})
	newCard := func(id, pan string, status string, copyOf string) ledger.Card {
		return ledger.Card{ID: id, PartnerID: p, CustomerID: cus, BalanceID: ub, Type: "VIRTUAL", Status: status, PANEnc: "enc-" + pan,
			PANHash: "tok-" + pan, BIN: "49990123", Last4: pan[len(pan)-4:], Expiry: "2912", CVVEnc: "cvv", CopyOf: copyOf}
	}
	step("create_card", func() (any, error) { return nil, l.CreateCard(ctx, newCard(card, "4999012300000001", "ACTIVE", "")) })
	step("card_by_pan", func() (any, error) { return l.CardByPANHash(ctx, p, "tok-4999012300000001") })
	step("velocity", func() (any, error) { return eng.Count(ctx, p, card) })
	var holds []string
	reserve := func(key string, amount int64, capture, partial bool) ledger.ReservationResult {
		t.Helper()
		v := step("reserve", func() (any, error) {
			return l.Reserve(ctx, ledger.Reservation{PartnerID: p, BalanceID: ub, CardID: card, Amount: amount, IdempotencyKey: key,
				ApprovalCode: "A" + key, TxnType: "00", Capture: capture, AllowPartial: partial, Reference: "rrn-" + key + "|" + card,
				Meta: `{"mti":"0100","card":"` + card + `","amount":` + fmt.Sprint(amount) + `,"merchant":"Café \u00e9\t"}`})
		})
		r := v.(ledger.ReservationResult)
		holds = append(holds, r.HoldID)
		return r
	}
	h1 := reserve("k1", 12_345, false, false)
	reserve("k1", 12_345, false, false) // the stored answer
	h2 := reserve("k2", 700, false, false)
	reserve("k3", 1_000_000_000, false, true) // partial: all the user has left
	reserve("k4", 100, false, false)          // declined: nothing left
	step("void", func() (any, error) { return l.Void(ctx, p, h2.HoldID, 0, false, "v1", "") })
	step("capture", func() (any, error) { return l.Capture(ctx, p, h1.HoldID, 10_000, false, "c1", `{"mti":"0120"}`) })
	step("reload_user_balance", func() (any, error) {
		b, ch, err := l.ReloadUserBalance(ctx, p, ub, 250_000, "ur2")
		return fmt.Sprintf("%+v %+v", b, ch), err
	})
	reserve("k5", 2_000, true, false) // 0200: posted at once
	step("force_post", func() (any, error) {
		return l.ForcePost(ctx, ledger.Reservation{PartnerID: p, BalanceID: ub, CardID: card, Amount: 3_000, IdempotencyKey: "f1",
			ApprovalCode: "F1", TxnType: "00", Reference: "rrn-f1|" + card})
	})
	step("refund", func() (any, error) {
		return l.Refund(ctx, ledger.Reservation{PartnerID: p, BalanceID: ub, CardID: card, Amount: 1_500, IdempotencyKey: "r1", ApprovalCode: "R1"})
	})
	step("record_decline", func() (any, error) {
		return eng.RecordDecline(ctx, p, "d1", 99, authz.ReasonDoNotHonour, `{"card":"`+card+`"}`)
	})
	h6 := reserve("k6", 1_000, false, false)
	step("cancel_late", func() (any, error) { return eng.CancelLate(ctx, p, "k6", authz.ReasonIssuerUnavailable, "") })
	reserve("k7", 1_000, false, false)
	step("expire", func() (any, error) { return l.ExpireHolds(ctx, p, -time.Hour, 100) })
	step("pin_result", func() (any, error) {
		tries, lock, err := l.RecordPIN(ctx, p, card, false, 3, `{"card":"`+card+`"}`)
		return fmt.Sprint(tries, lock), err
	})
	step("pin_result", func() (any, error) {
		tries, lock, err := l.RecordPIN(ctx, p, card, true, 3, "")
		return fmt.Sprint(tries, lock), err
	})
	step("update_card", func() (any, error) {
		return l.UpdateCard(ctx, p, card, ledger.CardUpdate{To: "ACTIVE", Event: "card_personalise", Set: map[string]string{"delivery": `{"city":"Zürich"}`}})
	})
	step("lock_card", func() (any, error) { return l.LockCardFrom(ctx, p, card, 3, "PARTNER", "ref-9") })
	step("unlock_card", func() (any, error) { return l.UnlockCard(ctx, p, card) })
	// A plastic replaced by a new one that is activated later.
	const plastic, plastic2 = "ep_plastic", "ep_plastic2"
	step("create_card", func() (any, error) {
		c := newCard(plastic, "4999012300000002", "ACTIVE", "")
		c.Type = "PHYSICAL"
		return nil, l.CreateCard(ctx, c)
	})
	step("replace_card", func() (any, error) {
		n := newCard(plastic2, "4999012300000003", "LINKED", "")
		n.Type = "PHYSICAL"
		return l.ReplaceCard(ctx, p, ledger.Replacement{OldID: plastic, New: n, KeepOld: true, Source: "ADMIN"})
	})
	step("activate_card", func() (any, error) { return l.ActivateCard(ctx, p, plastic2, "CUSTOMER") })
	step("remove_card", func() (any, error) { return nil, l.RemoveCard(ctx, p, plastic) })
	// Programs and spend controls: a second program with its controls,
	// the card's own controls, and an authorization that charges them.
	step("default_program", func() (any, error) { return l.EnsureDefaultPrograms(ctx) })
	step("create_program", func() (any, error) {
		return nil, l.CreateProgram(ctx, authz.Program{ID: "ep_prg2", PartnerID: p, Name: "Zweites Programm", Currency: "EUR",
			Ranges: []authz.BINRange{{From: "49990200", To: "49990299"}}, CardTypes: []authz.CardType{"VIRTUAL"},
			StandIn: authz.StandIn{Policy: authz.StandInDecline}})
	})
	step("update_program", func() (any, error) {
		return nil, l.SetProgramControls(ctx, p, "ep_prg2", authz.Controls{PerTransactionMax: 90_000, MCCBlock: []string{"7995"}})
	})
	step("set_card_controls", func() (any, error) {
		return nil, l.SetCardControls(ctx, p, card, &authz.Controls{PerTransactionMax: 100_000,
			Limits: []authz.Limit{{Interval: "day", Amount: 1_000_000, Count: 10}, {Interval: "all_time", Amount: 5_000_000}}}, nil)
	})
	reserve("k8", 500, false, false)
	_ = h6

	// Hold ids are random: name them by order of appearance.
	names := map[string]string{}
	holdRE := regexp.MustCompile(`hld_[0-9a-f]{24}`)
	norm := func(s string) string {
		return holdRE.ReplaceAllStringFunc(s, func(id string) string {
			if names[id] == "" {
				names[id] = fmt.Sprintf("hold#%d", len(names)+1)
			}
			return names[id]
		})
	}
	for _, id := range holds {
		norm(id)
	}
	for i, r := range run.results {
		run.results[i] = norm(r)
	}
	for _, e := range j.entries {
		var ch any
		if e.Ch != "[]" && e.Ch != "{}" {
			must(t, json.Unmarshal([]byte(e.Ch), &ch))
		}
		chs, err := json.Marshal(ch) // map keys sorted: cjson's order is its own
		must(t, err)
		run.journal = append(run.journal, norm(fmt.Sprintf("%d %s %s %s %s %s", e.Seq, e.Type, e.Reason, e.Ts, e.Meta, chs)))
	}
	run.keys = dumpKeys(t, rdb, prefix, norm)
	return run, ran
}

// dumpKeys describes every key under prefix: its type, value and whether it
// expires (miniredis does not count time down by itself).
func dumpKeys(t *testing.T, rdb redis.UniversalClient, prefix string, norm func(string) string) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := ledger.ScanKeys(ctx, rdb, prefix+":*", "")
	must(t, err)
	var out []string
	for _, k := range keys {
		typ := rdb.Type(ctx, k).Val()
		var val string
		switch typ {
		case "string":
			val = rdb.Get(ctx, k).Val()
		case "hash":
			val = fmt.Sprint(rdb.HGetAll(ctx, k).Val())
		case "set":
			m := rdb.SMembers(ctx, k).Val()
			sort.Strings(m)
			val = fmt.Sprint(m)
		case "zset":
			val = fmt.Sprint(rdb.ZRangeWithScores(ctx, k, 0, -1).Val())
		case "stream":
			val = fmt.Sprintf("%d entries", rdb.XLen(ctx, k).Val())
		}
		expires := rdb.PTTL(ctx, k).Val() > 0
		out = append(out, norm(fmt.Sprintf("%s %s expires=%v %s", strings.TrimPrefix(k, prefix), typ, expires, val)))
	}
	sort.Strings(out)
	return out
}

// TestEmbeddedRedisRunsEveryScriptAlike runs every script on real Redis
// and on the in-process one, and wants the same answers, journal entries
// and keys.
func TestEmbeddedRedisRunsEveryScriptAlike(t *testing.T) {
	real, prefix := ledgertest.MustRedis(t)
	emb, eprefix, _ := ledgertest.MustEmbeddedRedis(t)
	want, ran := runEveryScript(t, real, prefix)
	got, _ := runEveryScript(t, emb, eprefix)

	files, err := os.ReadDir("lua")
	must(t, err)
	for _, f := range files {
		name := strings.TrimSuffix(f.Name(), ".lua")
		if name != "common" && name != "controls" && !ran[name] { // controls.lua is a library, as common.lua
			t.Errorf("script %s is not exercised", name)
		}
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{{"answers", got.results, want.results}, {"journal", got.journal, want.journal}, {"keys", got.keys, want.keys}} {
		if slices.Equal(c.got, c.want) {
			continue
		}
		for i := range max(len(c.got), len(c.want)) {
			var g, w string
			if i < len(c.got) {
				g = c.got[i]
			}
			if i < len(c.want) {
				w = c.want[i]
			}
			if g != w {
				t.Errorf("%s differ at %d:\n embedded %s\n redis    %s", c.what, i, g, w)
				break
			}
		}
	}
	if len(want.journal) < 25 {
		t.Fatalf("journal holds %d entries, want one per changing step", len(want.journal))
	}
}

// TestLedgerSuiteOnEmbeddedRedis runs this package's tests again, in a
// child process, against an in-process Redis this test serves.
func TestLedgerSuiteOnEmbeddedRedis(t *testing.T) {
	if os.Getenv("ANTACA_TEST_EMBEDDED_SUITE") != "" {
		t.Skip("this is the run on the embedded Redis")
	}
	if testing.Short() {
		t.Skip("runs the package's tests again")
	}
	_, _, m := ledgertest.MustEmbeddedRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.count=1", "-test.run=^Test", "-test.skip=^TestLedgerSuiteOnEmbeddedRedis$|^TestEmbeddedRedisRunsEveryScriptAlike$")
	cmd.Env = append(os.Environ(), "ANTACA_TEST_EMBEDDED_SUITE=1", "ANTACA_TEST_REDIS_URL=redis://"+m.Addr()+"/0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the ledger's tests on the embedded Redis: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PASS") {
		t.Fatalf("no test ran on the embedded Redis:\n%s", out)
	}
}
