package simulator_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger/ledgertest"
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
	cfg.ISODeadline = 2 * time.Second // -race on two cores: keep slow answers apart from real timeouts
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

// rest returns a REST issuer for the switch, or skips the test while the
// REST API is not mounted in app.
func (s *testSwitch) rest(t testing.TB) *simulator.RESTIssuer {
	t.Helper()
	r, err := simulator.NewRESTIssuer(simulator.RESTConfig{
		BaseURL: s.HTTPBase, RootCAs: s.CA.Pool(), AdminUser: testAdminUser, AdminPassword: testAdminPassword,
		PartnerCA: s.CA, CertDir: filepath.Join(s.Dir, "partner-certs"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !r.Available(ctx) {
		t.Skip("REST API not mounted in app (GET /openapi.yaml does not answer 200)")
	}
	return r
}

// seed provisions a small program through iss.
func (s *testSwitch) seed(t testing.TB, iss simulator.Issuer, o simulator.SeedOptions) *simulator.CardsFile {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o.PartnerFunds == 0 {
		o.PartnerFunds = 1_000_000_000_000
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
