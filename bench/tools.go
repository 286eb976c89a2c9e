package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/simulator"
)

func deleteKeys(ctx context.Context, redisURL, pattern string) {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	_, _ = ledger.DeleteKeys(ctx, rdb, pattern) // best effort: clean-up after a run
}

func hostInfo(ctx context.Context, o Options) Host {
	h := Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if opts, err := redis.ParseURL(o.RedisURL); err == nil {
		rdb := redis.NewClient(opts)
		if info, err := rdb.Info(ctx, "server").Result(); err == nil {
			if m := regexp.MustCompile(`redis_version:(\S+)`).FindStringSubmatch(info); m != nil {
				h.Redis = m[1]
			}
		}
		_ = rdb.Close()
	}
	if c, err := pgx.Connect(ctx, o.AdminDatabaseURL); err == nil {
		_ = c.QueryRow(ctx, "SHOW server_version").Scan(&h.Postgres)
		_ = c.Close(ctx)
	}
	return h
}

// captureHook records the arguments of EVALSHA calls, so that
// redis-benchmark can replay exactly what the switch sends.
type captureHook struct {
	mu   sync.Mutex
	args [][]any
}

func (h *captureHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *captureHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "evalsha") {
			h.mu.Lock()
			h.args = append(h.args, append([]any(nil), cmd.Args()...))
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (h *captureHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// take returns the one EVALSHA recorded since the last take.
func (h *captureHook) take(what string) ([]any, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer func() { h.args = nil }()
	if len(h.args) != 1 {
		return nil, fmt.Errorf("capturing %s: %d EVALSHA calls seen, want 1", what, len(h.args))
	}
	return h.args[0], nil
}

// scriptCommand is a hot-path script call as redis-benchmark replays it.
type scriptCommand struct {
	Name string
	SHA  string
	Args []string // EVALSHA sha numkeys key args...
	// NameOnly: captured to name the script's SHA in the switch's counts,
	// not replayed (each call needs a fresh approval).
	NameOnly bool
}

// placeholders turns captured arguments into redis-benchmark's: each
// argument equal to a key of repl becomes its value (with __rand_int__,
// so that every call is new). Every key of repl must be found.
func placeholders(what string, args []any, repl map[string]string) ([]string, error) {
	out := make([]string, 0, len(args))
	found := map[string]bool{}
	for _, a := range args {
		s := fmt.Sprint(a)
		if r, ok := repl[s]; ok {
			found[s] = true
			s = r
		}
		out = append(out, s)
	}
	if len(found) != len(repl) {
		return nil, fmt.Errorf("capturing %s: found %d of the %d arguments to vary in %d arguments", what, len(found), len(repl), len(out))
	}
	return out, nil
}

// captureScripts runs the hot path's scripts once each through the ledger
// (ledger.New + Preload, on its own client with a hook) on a seeded card,
// and returns the EVALSHA commands they sent:
//   - reserve: one authorization hold of amount 1, with the card version
//     check and a journal context like the switch's; the idempotency key,
//     hold id and RRN reference become __rand_int__ placeholders, so that
//     every call is a new hold (-r 1000000000);
//   - card_by_pan: the card lookup by PAN token (read-only, repeatable);
//   - record_decline: a decline decided before the ledger (wrong expiry),
//     with its idempotency key varied;
//   - cancel_late (the undo of an approval answered too late): only to
//     name its SHA.
func captureScripts(ctx context.Context, redisURL, prefix string, token func(string) string, cards *simulator.CardsFile) ([]scriptCommand, error) {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	hook := &captureHook{}
	rdb.AddHook(hook)
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	if err := l.Preload(ctx); err != nil {
		return nil, err
	}
	if len(cards.Cards) == 0 {
		return nil, errors.New("no seeded card")
	}
	c := cards.Cards[0]
	hook.take("") //nolint:errcheck // forget Preload's calls
	var out []scriptCommand
	add := func(name string, args []any, repl map[string]string) error {
		s, err := placeholders(name, args, repl)
		if err != nil {
			return err
		}
		out = append(out, scriptCommand{Name: name, SHA: s[1], Args: s})
		return nil
	}

	card, err := l.CardByPANHash(ctx, c.PartnerID, token(c.PAN))
	if err != nil {
		return nil, fmt.Errorf("capturing card_by_pan: %w", err)
	}
	args, err := hook.take("card_by_pan")
	if err != nil {
		return nil, err
	}
	if err := add("card_by_pan", args, nil); err != nil {
		return nil, err
	}

	const rrn, stan = "BENCH0000001", "000001"
	idem := "123456|" + stan + "|1202120000|" + rrn + "|" + c.ID
	meta, _ := json.Marshal(map[string]any{"mti": "0100", "card": c.ID, "amount": 1, "currency": "978", "stan": stan, "rrn": rrn,
		"acquirer": simulator.DefaultAcquirer, "terminal": simulator.DefaultTerminal, "merchant": simulator.DefaultMerchant,
		"mcc": simulator.DefaultMCC, "txn": "00"})
	res, err := l.Reserve(ctx, ledger.Reservation{PartnerID: c.PartnerID, BalanceID: c.BalanceID, CardID: c.ID, Amount: 1,
		IdempotencyKey: idem, ApprovalCode: "BENCH1", TxnType: "00", Reference: rrn + "|" + c.ID, Meta: string(meta),
		CardVersion: card.Version})
	if err != nil {
		return nil, fmt.Errorf("capturing reserve: %w", err)
	}
	if res.Reason != "APPROVED" {
		return nil, fmt.Errorf("capturing reserve: %s", res.Reason)
	}
	if args, err = hook.take("reserve"); err != nil {
		return nil, err
	}
	if err := add("reserve", args, map[string]string{idem: "bench:__rand_int__", res.HoldID: "hld_bench___rand_int__",
		rrn + "|" + c.ID: "__rand_int__|" + c.ID}); err != nil {
		return nil, err
	}

	eng := &ledger.Engine{L: l, Token: token}
	if _, err := eng.CancelLate(ctx, c.PartnerID, idem, authz.ReasonIssuerUnavailable, string(meta)); err != nil {
		return nil, fmt.Errorf("capturing cancel_late: %w", err)
	}
	if args, err = hook.take("cancel_late"); err != nil {
		return nil, err
	}
	out = append(out, scriptCommand{Name: "cancel_late", SHA: fmt.Sprint(args[1]), NameOnly: true})

	dkey := "123456|000002|1202120000|BENCH0000002|" + c.ID
	if _, err := eng.RecordDecline(ctx, c.PartnerID, dkey, 1, authz.ReasonExpiredCard, string(meta)); err != nil {
		return nil, fmt.Errorf("capturing record_decline: %w", err)
	}
	if args, err = hook.take("record_decline"); err != nil {
		return nil, err
	}
	if err := add("record_decline", args, map[string]string{dkey: "bench-decline:__rand_int__"}); err != nil {
		return nil, err
	}
	return out, nil
}

// parseBenchmarkCSV reads redis-benchmark's --csv output: a header
// ("test", "rps", latencies...) and one line per test. The test column
// repeats the command unescaped (a JSON argument's quotes break the CSV),
// so the values are taken from the end of the last line.
func parseBenchmarkCSV(out []byte) (header, values []string, err error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		return nil, nil, fmt.Errorf("unexpected redis-benchmark output: %q", out)
	}
	header, err = csv.NewReader(strings.NewReader(lines[0])).Read()
	if err != nil || len(header) < 2 {
		return nil, nil, fmt.Errorf("unexpected redis-benchmark header: %q", lines[0])
	}
	fields := strings.Split(strings.TrimSpace(lines[len(lines)-1]), ",")
	if len(fields) < len(header) {
		return nil, nil, fmt.Errorf("unexpected redis-benchmark line: %q", lines[len(lines)-1])
	}
	for _, f := range fields[len(fields)-(len(header)-1):] {
		values = append(values, strings.Trim(f, `"`))
	}
	return header, values, nil
}

// redisBenchmark runs redis-benchmark with one script call, pipelined
// pipeline deep, and reads the server's time per call from INFO
// commandstats (EVALSHA, after minus before).
func redisBenchmark(ctx context.Context, o Options, sc scriptCommand, requests, pipeline int) (*ToolResult, error) {
	ropts, err := redis.ParseURL(o.RedisURL)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	host, port := ropts.Addr, "6379"
	if i := strings.LastIndex(ropts.Addr, ":"); i >= 0 {
		host, port = ropts.Addr[:i], ropts.Addr[i+1:]
	}
	args := []string{"-h", host, "-p", port, "--dbnum", strconv.Itoa(ropts.DB), "-c", strconv.Itoa(o.RedisBenchClients),
		"-n", strconv.Itoa(requests), "-P", strconv.Itoa(pipeline), "-r", "1000000000", "--csv"}
	if ropts.Password != "" {
		args = append(args, "-a", ropts.Password)
	}
	args = append(args, sc.Args...)
	before, _ := commandStats(ctx, rdb)
	out, err := runTool(ctx, "redis-benchmark", args...)
	if err != nil {
		return nil, err
	}
	after, _ := commandStats(ctx, rdb)
	header, values, err := parseBenchmarkCSV(out)
	if err != nil {
		return nil, err
	}
	rate, err := strconv.ParseFloat(values[0], 64)
	if err != nil {
		return nil, fmt.Errorf("unexpected redis-benchmark rate %q", values[0])
	}
	var detail []string
	for i := 1; i < len(values); i++ {
		detail = append(detail, header[i+1]+"="+values[i])
	}
	shown := append([]string{"redis-benchmark"}, args...)
	if ropts.Password != "" {
		for i, a := range shown {
			if a == ropts.Password {
				shown[i] = "***"
			}
		}
	}
	r := &ToolResult{Tool: "redis-benchmark", Script: sc.Name, Pipeline: pipeline, Command: shown, Rate: rate, Detail: strings.Join(detail, " ")}
	if a, b := after["evalsha"], before["evalsha"]; a.calls > b.calls {
		r.USPerCall = float64(a.usec-b.usec) / float64(a.calls-b.calls)
	}
	return r, nil
}

// pgScript is what a team without Redis would build for a reservation:
// lock the balance row, move available to held, insert the hold, commit.
const pgScript = `\set bid random(1, :balances)
\set k random(1, 1000000000000)
BEGIN;
SELECT available FROM balances WHERE id = :bid FOR UPDATE;
UPDATE balances SET available = available - 1, held = held + 1 WHERE id = :bid;
INSERT INTO holds (balance_id, amount, idem_key, state) VALUES (:bid, 1, :k || '-' || :client_id, 'OPEN');
COMMIT;
`

const pgSchema = `
CREATE TABLE balances (id int PRIMARY KEY, available bigint NOT NULL, held bigint NOT NULL);
CREATE TABLE holds (id bigserial PRIMARY KEY, balance_id int NOT NULL REFERENCES balances, amount bigint NOT NULL,
  idem_key text NOT NULL UNIQUE, state text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO balances SELECT g, 100000000000, 0 FROM generate_series(1, %d) g;
`

var tpsPattern = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
var pgLatency = regexp.MustCompile(`latency average = ([0-9.]+ ms)`)

// pgReserveBench runs the row-lock reservation with pgbench on a fresh
// database, with as many balances as the switch run had.
func pgReserveBench(ctx context.Context, o Options, balances int) (*ToolResult, error) {
	name := randomName("antaca_bench_pg_")
	if err := createDatabase(ctx, o.AdminDatabaseURL, name); err != nil {
		return nil, err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = dropDatabase(ctx, o.AdminDatabaseURL, name)
	}()
	dbURL, err := databaseURL(o.AdminDatabaseURL, name)
	if err != nil {
		return nil, err
	}
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	_, err = c.Exec(ctx, fmt.Sprintf(pgSchema, balances))
	_ = c.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating pgbench schema: %w", err)
	}
	dir, err := os.MkdirTemp("", "antaca-pgbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "reserve.sql")
	if err := os.WriteFile(script, []byte(pgScript), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-n", "-M", "prepared", "-f", script, "-D", "balances=" + strconv.Itoa(balances),
		"-c", strconv.Itoa(o.PGBenchClients), "-j", "2", "-T", strconv.Itoa(o.PGBenchSeconds), dbURL}
	out, err := runTool(ctx, "pgbench", args...)
	if err != nil {
		return nil, err
	}
	m := tpsPattern.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("unexpected pgbench output: %q", out)
	}
	rate, _ := strconv.ParseFloat(string(m[1]), 64)
	detail := ""
	if l := pgLatency.FindSubmatch(out); l != nil {
		detail = "latency average " + string(l[1])
	}
	shown := append([]string{"pgbench"}, args[:len(args)-1]...)
	shown = append(shown, "<fresh database>")
	return &ToolResult{Tool: "pgbench", Command: shown, Rate: rate, Detail: detail}, nil
}

// databaseURL is adminURL pointing at database name.
func databaseURL(adminURL, name string) (string, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", fmt.Errorf("parsing database url: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func runTool(ctx context.Context, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s is not installed: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
