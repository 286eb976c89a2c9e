package simulator_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/antaca/antaca/ledger/pgstore"
	"github.com/antaca/antaca/simulator"
)

// testSwitch is a real switch started with app.New on 127.0.0.1:0, on the
// test's own Redis key prefix and Postgres database, serving HTTPS with a
// partner CA so that the REST API (once mounted) takes partner calls.
type testSwitch struct {
	App      *app.App
	Cfg      app.Config
	Keys     *cardcrypto.Keys
	CA       *simulator.CA // signs the server certificate and partner client certificates
	CAFile   string
	Dir      string
	Direct   *simulator.DirectIssuer
	HTTPBase string
}

const (
	testAdminUser     = "sim-admin"
	testAdminPassword = "sim-admin-password-0123"
)

func startSwitch(t testing.TB, mutate ...func(*app.Config)) *testSwitch {
	t.Helper()
	_, prefix := ledgertest.MustRedis(t)
	dir := t.TempDir()
	ca, err := simulator.NewCA("Antaca test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServer("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"server.crt": certPEM, "server.key": keyPEM, "ca.crt": ca.CertPEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := app.DefaultConfig()
	cfg.RedisURL = ledgertest.RedisURL()
	cfg.DatabaseURL = ledgertest.MustDatabase(t)
	cfg.KeyPrefix = prefix
	cfg.ISOAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.KeysDir = filepath.Join(dir, "keys")
	cfg.TLSCert = filepath.Join(dir, "server.crt")
	cfg.TLSKey = filepath.Join(dir, "server.key")
	cfg.PartnerCA = filepath.Join(dir, "ca.crt")
	cfg.AdminUser, cfg.AdminPassword = testAdminUser, testAdminPassword
	cfg.AdminPasswordIterations = 10_000 // the lowest accepted: logins stay quick under -race on a busy machine
	cfg.ISODeadline = 2 * time.Second    // -race on two cores: keep slow answers apart from real timeouts
	for _, m := range mutate {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	a.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	keys, err := cardcrypto.LoadOrCreate(cfg.KeysDir)
	if err != nil {
		t.Fatal(err)
	}
	return &testSwitch{
		App: a, Cfg: cfg, Keys: keys, CA: ca, CAFile: filepath.Join(dir, "ca.crt"), Dir: dir,
		Direct:   &simulator.DirectIssuer{Ledger: a.Ledger, Issuing: a.Issuing},
		HTTPBase: "https://" + a.HTTPAddr(),
	}
}

// rest returns a REST issuer for the switch. The test switch always mounts
// the REST API, so an API that does not answer (TLS, dial, timeout, a
// status other than 200) fails the test with the reason instead of
// skipping it.
func (s *testSwitch) rest(t testing.TB) *simulator.RESTIssuer {
	t.Helper()
	r, err := simulator.NewRESTIssuer(simulator.RESTConfig{
		BaseURL: s.HTTPBase, RootCAs: s.CA.Pool(), AdminUser: testAdminUser, AdminPassword: testAdminPassword,
		PartnerCA: s.CA, CertDir: filepath.Join(s.Dir, "partner-certs"),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Generous: a TLS handshake under -race on a busy two-core machine.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.Ping(ctx); err != nil {
		t.Fatalf("REST API of the test switch does not answer: %v", err)
	}
	return r
}

// audit checks the ledger at a quiescent point (after the load or the
// scenarios, before shutdown): it flushes the write-behind journal to
// Postgres, requires pgstore.Audit to find Redis and Postgres equal row by
// row (with the money identity and held/reserved against open holds on
// each side), and checks the money identity of docs/ledger.md once more
// through the ledger's own readers, per partner and currency:
//
//	funding.total_in = Σ partner balances (available + reserved + settled)
//	                 + Σ user balances (available + held + posted)
func (s *testSwitch) audit(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.App.FlushJournal(ctx); err != nil {
		t.Fatalf("flushing the write-behind journal: %v", err)
	}
	rep, err := pgstore.Audit(ctx, s.App.Redis, s.App.Ledger.Keys(), s.App.DB)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	if !rep.OK() {
		t.Errorf("Redis and Postgres disagree after the run:\n%s", rep)
	}
	checkMoney(ctx, t, s.App.Redis, s.App.Ledger)
}

// checkMoney checks the money identity for every partner and currency of
// l, reading balances and funding through the ledger (the row ids from
// their keys in rdb). It fails when there is no partner or no money at
// all, so that it cannot pass vacuously.
func checkMoney(ctx context.Context, t testing.TB, rdb redis.UniversalClient, l *ledger.Ledger) {
	t.Helper()
	keys := l.Keys()
	partners, err := l.PartnerIDs(ctx)
	if err != nil {
		t.Fatalf("listing partners: %v", err)
	}
	if len(partners) == 0 {
		t.Fatal("money check: the ledger has no partner")
	}
	// ids lists the ids of a partner's rows of a table, from their keys.
	ids := func(pid, table string) []string {
		base := keys.Row(pid, table, "")
		found, err := ledger.ScanKeys(ctx, rdb, base+"*", "hash")
		if err != nil {
			t.Fatalf("listing %s of partner %s: %v", table, pid, err)
		}
		out := make([]string, 0, len(found))
		for _, k := range found {
			out = append(out, strings.TrimPrefix(k, base))
		}
		return out
	}
	type sums struct{ in, partners, users int64 }
	var totalIn int64
	for _, pid := range partners {
		byCur := map[string]*sums{}
		at := func(cur string) *sums {
			if byCur[cur] == nil {
				byCur[cur] = &sums{}
			}
			return byCur[cur]
		}
		pbIDs, err := l.PartnerBalanceIDs(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range pbIDs {
			b, err := l.PartnerBalance(ctx, pid, id)
			if err != nil {
				t.Fatal(err)
			}
			at(b.Currency).partners += b.Available + b.Reserved + b.Settled
		}
		for _, id := range ids(pid, "user_balances") {
			b, err := l.UserBalance(ctx, pid, id)
			if err != nil {
				t.Fatal(err)
			}
			at(b.Currency).users += b.Available + b.Held + b.Posted
		}
		for _, id := range ids(pid, "funding") {
			cur := strings.TrimPrefix(id, pid+":")
			in, err := l.Funding(ctx, pid, cur)
			if err != nil {
				t.Fatal(err)
			}
			at(cur).in += in
			totalIn += in
		}
		for cur, s := range byCur {
			if s.in != s.partners+s.users {
				t.Errorf("money not conserved for partner %s %s: funding in %d != partner balances %d + user balances %d (off by %d)",
					pid, cur, s.in, s.partners, s.users, s.in-s.partners-s.users)
			}
		}
	}
	if totalIn == 0 {
		t.Error("money check: no money entered any program (nothing was checked)")
	}
}

// seed provisions a small program through iss.
func (s *testSwitch) seed(t testing.TB, iss simulator.Issuer, o simulator.SeedOptions) *simulator.CardsFile {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o.PartnerFunds == 0 {
		o.PartnerFunds = 999_999_999_999 // the most a balance may hold (authz.MaxAmount)
	}
	f, err := simulator.Seed(ctx, iss, o)
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	return f
}

func (s *testSwitch) connect(t testing.TB, links int) *simulator.Network {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := simulator.Connect(ctx, simulator.NetworkConfig{Addr: s.App.ISOAddr(), Profile: s.Cfg.ISOProfile, Framing: s.Cfg.ISOFraming, Links: links})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if err := n.WaitUp(ctx, links); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}
