package bench

import (
	"bytes"
	"context"
	"encoding/csv"
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

// captureHook records the arguments of the ledger's EVALSHA calls, so that
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

// reserveCommand loads the ledger's scripts through ledger.New and Preload,
// places one real reservation on a seeded balance and returns the EVALSHA
// command it sent: the reserve script's SHA, its key and its arguments.
// The idempotency key and hold id are replaced with redis-benchmark's
// __rand_int__ placeholders so that every call is a new reservation.
func reserveCommand(ctx context.Context, redisURL, prefix string, cards *simulator.CardsFile) ([]string, error) {
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
	const idem = "bench-capture-idempotency-key"
	res, err := l.Reserve(ctx, ledger.Reservation{PartnerID: c.PartnerID, BalanceID: c.BalanceID, CardID: c.ID, Amount: 1,
		IdempotencyKey: idem, ApprovalCode: "BENCH1", TxnType: "00", Meta: "{}"})
	if err != nil {
		return nil, fmt.Errorf("capturing a reservation: %w", err)
	}
	if res.Reason != "APPROVED" {
		return nil, fmt.Errorf("capturing a reservation: %s", res.Reason)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.args) == 0 {
		return nil, errors.New("capturing a reservation: no EVALSHA seen")
	}
	args := hook.args[0]
	out := make([]string, 0, len(args))
	replaced := 0
	for _, a := range args {
		s := fmt.Sprint(a)
		switch {
		case s == idem:
			s, replaced = "bench:__rand_int__", replaced+1
		case s == res.HoldID:
			s, replaced = "hld_bench___rand_int__", replaced+1
		}
		out = append(out, s)
	}
	if replaced != 2 {
		return nil, fmt.Errorf("capturing a reservation: found %d of idempotency key and hold id in %d arguments", replaced, len(out))
	}
	return out, nil
}

// redisReserveBench runs redis-benchmark with the reserve script: the
// ceiling one Redis core sets for reservations, without the switch.
func redisReserveBench(ctx context.Context, o Options, sw *switchUnderTest, cards *simulator.CardsFile) (*ToolResult, error) {
	cmdArgs, err := reserveCommand(ctx, o.RedisURL, sw.prefix, cards)
	if err != nil {
		return nil, err
	}
	ropts, err := redis.ParseURL(o.RedisURL)
	if err != nil {
		return nil, err
	}
	host, port := ropts.Addr, "6379"
	if i := strings.LastIndex(ropts.Addr, ":"); i >= 0 {
		host, port = ropts.Addr[:i], ropts.Addr[i+1:]
	}
	args := []string{"-h", host, "-p", port, "--dbnum", strconv.Itoa(ropts.DB), "-c", strconv.Itoa(o.RedisBenchClients),
		"-n", strconv.Itoa(o.RedisBenchRequests), "-r", "1000000000", "--csv"}
	if ropts.Password != "" {
		args = append(args, "-a", ropts.Password)
	}
	args = append(args, cmdArgs...)
	out, err := runTool(ctx, "redis-benchmark", args...)
	if err != nil {
		return nil, err
	}
	rows, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil || len(rows) < 2 || len(rows[len(rows)-1]) < 2 {
		return nil, fmt.Errorf("unexpected redis-benchmark output: %q", out)
	}
	header, last := rows[0], rows[len(rows)-1]
	rate, err := strconv.ParseFloat(last[1], 64)
	if err != nil {
		return nil, fmt.Errorf("unexpected redis-benchmark rate %q", last[1])
	}
	var detail []string
	for i := 2; i < len(last) && i < len(header); i++ {
		detail = append(detail, header[i]+"="+last[i])
	}
	shown := append([]string{"redis-benchmark"}, args...)
	if ropts.Password != "" {
		for i, a := range shown {
			if a == ropts.Password {
				shown[i] = "***"
			}
		}
	}
	return &ToolResult{Tool: "redis-benchmark", Command: shown, Rate: rate, Detail: strings.Join(detail, " ")}, nil
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
// database, with as many balances as the switch run had customers.
func pgReserveBench(ctx context.Context, o Options) (*ToolResult, error) {
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
	_, err = c.Exec(ctx, fmt.Sprintf(pgSchema, o.Customers))
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
	args := []string{"-n", "-M", "prepared", "-f", script, "-D", "balances=" + strconv.Itoa(o.Customers),
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
