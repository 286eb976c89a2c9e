package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/api/apitest"
	"github.com/antaca/antaca/api/jwe"
	"github.com/antaca/antaca/api/pki"
	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/antaca/antaca/ledger/pgstore"
)

// Fixed material shared by the tests of this binary: generating RSA keys
// is slow under the race detector.
var (
	fixtureOnce sync.Once
	fixture     struct {
		caCert, caKey         []byte // the partner CA
		serverCert, serverKey []byte // localhost, signed by the CA
		otherCACert, otherKey []byte // a CA the server does not trust
		clientKey             *rsa.PrivateKey
		otherClientKey        *rsa.PrivateKey
		validator             *apitest.Validator
		err                   error
	}
)

func loadFixture(t *testing.T) {
	t.Helper()
	fixtureOnce.Do(func() {
		f := &fixture
		if f.caCert, f.caKey, f.err = pki.NewCA("Antaca test partner CA", 24*time.Hour); f.err != nil {
			return
		}
		if f.serverCert, f.serverKey, f.err = pki.NewServerCert(f.caCert, f.caKey, nil, time.Hour); f.err != nil {
			return
		}
		if f.otherCACert, f.otherKey, f.err = pki.NewCA("Someone else's CA", 24*time.Hour); f.err != nil {
			return
		}
		if f.clientKey, f.err = rsa.GenerateKey(rand.Reader, 2048); f.err != nil {
			return
		}
		if f.otherClientKey, f.err = rsa.GenerateKey(rand.Reader, 2048); f.err != nil {
			return
		}
		f.validator, f.err = apitest.NewValidator()
	})
	if fixture.err != nil {
		t.Fatal(fixture.err)
	}
}

const (
	rootUser     = "root"
	rootPassword = "root-password-123"
)

// env is one API server over real HTTPS with its own Redis prefix,
// Postgres database and keys directory.
type env struct {
	t        *testing.T
	srv      *api.Server
	ts       *httptest.Server
	ledger   *ledger.Ledger
	rdb      redis.UniversalClient // the Redis of the ledger and the API
	issuing  *issuing.Service
	keys     *cardcrypto.Keys
	reg      *prometheus.Registry
	offset   atomic.Int64  // the API's clock runs this far ahead
	pool     *pgxpool.Pool // db.Pool(): nil on the embedded stores
	db       *pgstore.DB
	apiKeys  string // the API's Redis prefix
	serverPK *rsa.PublicKey
	root     *client // bootstrap admin
	logs     ledgertest.LogBuffer
}

type envOption func(*api.Config)

// testStores gives a test its Redis key space and its database: Redis and
// Postgres, or with ANTACA_TEST_STORES=embedded the stores of `antaca
// demo` (an in-process Redis and a SQLite file; see
// TestOnEmbeddedStores).
func testStores(t *testing.T) (redis.UniversalClient, string, *pgstore.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if os.Getenv("ANTACA_TEST_STORES") == "embedded" {
		rdb, prefix, _ := ledgertest.MustEmbeddedRedis(t)
		db, err := pgstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "antaca.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return rdb, prefix, db
	}
	rdb, prefix := ledgertest.MustRedis(t)
	dbURL := ledgertest.MustDatabase(t)
	if err := pgstore.Migrate(ctx, dbURL); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return rdb, prefix, pgstore.Postgres(pool)
}

// TestOnEmbeddedStores runs the tests of every route that reads or writes
// the database again, in a child process, on the stores of `antaca demo`.
func TestOnEmbeddedStores(t *testing.T) {
	if os.Getenv("ANTACA_TEST_STORES") != "" {
		t.Skip("this is the run on the embedded stores")
	}
	if testing.Short() {
		t.Skip("runs tests again")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run := "^(TestAdminSessionShowsWhoAndExpiry|TestAdminUserRoleChangeAndDeactivation|TestAdminCustomerSearchCardsAndAuthorizations|" +
		"TestAdminRoles|TestAdminPartnersAndCustomers|TestListBalances|TestPhysicalCardFlow|TestDigitalFirstGoesToTheBureau|" +
		"TestTransactionsEveryStatus|TestWebhooksEveryEventType|TestWebhookRedeliveryAndFailing|TestWebhookEndpointRules|TestWebhookRetries)$"
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.count=1", "-test.run="+run, "-test.v")
	cmd.Env = append(os.Environ(), "ANTACA_TEST_STORES=embedded")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("on the embedded stores: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "--- PASS: Test"); n < 13 {
		t.Fatalf("%d tests passed on the embedded stores, want 13:\n%s", n, out)
	}
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	loadFixture(t)
	rdb, prefix, db := testStores(t)
	keys, err := cardcrypto.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ledger: l, rdb: rdb, keys: keys, issuing: &issuing.Service{Store: l, Keys: keys},
		reg: prometheus.NewRegistry(), pool: db.Pool(), db: db, apiKeys: prefix + ":api"}

	var logOut io.Writer = &e.logs
	if testing.Verbose() {
		logOut = io.MultiWriter(&e.logs, os.Stderr)
	}
	cfg := api.Config{
		Ledger: l, Issuing: e.issuing, Keys: keys, Redis: rdb, RedisPrefix: e.apiKeys, DB: db,
		BootstrapAdminUser: rootUser, BootstrapAdminPassword: rootPassword,
		PasswordIterations: 1000, // fast tests; production uses the 600 000 default
		Registerer:         e.reg,
		Logger:             slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:                func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.srv, err = api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := tls.X509KeyPair(fixture.serverCert, fixture.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	cas := x509.NewCertPool()
	cas.AppendCertsFromPEM(fixture.caCert)
	e.ts = httptest.NewUnstartedServer(e.srv)
	e.ts.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: cas}
	e.ts.StartTLS()
	t.Cleanup(func() {
		e.ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Close(ctx); err != nil {
			t.Errorf("closing server: %v", err)
		}
	})
	e.serverPK, err = jwe.ParsePublicKeyPEM(keys.JWEPublicKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	e.root = e.adminLogin(rootUser, rootPassword)
	return e
}

// advance moves the API's clock.
func (e *env) advance(d time.Duration) { e.offset.Add(int64(d)) }

// httpClient returns an HTTPS client trusting the test CA, presenting
// certPEM/keyPEM when given, with every exchange checked against the
// OpenAPI document.
func (e *env) httpClient(certPEM, keyPEM []byte) *http.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(fixture.caCert)
	cfg := &tls.Config{RootCAs: roots}
	if certPEM != nil {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			e.t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	base := &http.Transport{TLSClientConfig: cfg}
	e.t.Cleanup(base.CloseIdleConnections)
	return &http.Client{Transport: fixture.validator.Transport(base, e.t.Errorf), Timeout: 20 * time.Second}
}

// client is one caller: a partner (certificate), a customer or an admin (bearer).
type client struct {
	e      *env
	hc     *http.Client
	bearer string
	jwe    *jwe.Client
	// seen, when set, receives every response body, and the plaintext of
	// encrypted ones (to scan admin answers for card data).
	seen func(body []byte)
}

func (e *env) newClient(certPEM, keyPEM []byte) *client {
	return &client{e: e, hc: e.httpClient(certPEM, keyPEM),
		jwe: &jwe.Client{ServerKey: e.serverPK, Key: fixture.clientKey}}
}

// partnerClient presents a certificate for partnerID signed by the partner CA.
func (e *env) partnerClient(partnerID string) *client {
	key, csr, err := pki.NewKeyAndCSR(partnerID)
	if err != nil {
		e.t.Fatal(err)
	}
	cert, err := pki.SignCSR(fixture.caCert, fixture.caKey, csr, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.newClient(cert, key)
}

func (e *env) bearerClient(token string) *client {
	c := e.newClient(nil, nil)
	c.bearer = token
	return c
}

type resp struct {
	status int
	body   []byte
	header http.Header
}

func (r resp) code() string {
	var e struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Code
}

// field is the error's field, the body part it is about.
func (r resp) field() string {
	var e struct {
		Field string `json:"field"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Field
}

type reqOpt func(*http.Request)

func header(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

// invalidRequest sends a deliberately invalid request past the OpenAPI check.
func invalidRequest(r *http.Request) {
	*r = *r.WithContext(apitest.WithoutRequestValidation(r.Context()))
}

func (c *client) send(req *http.Request, opts ...reqOpt) resp {
	c.e.t.Helper()
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	for _, o := range opts {
		o(req)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if c.seen != nil {
		c.seen(b)
	}
	return resp{status: res.StatusCode, body: b, header: res.Header}
}

// do sends a plain request; body is JSON-encoded unless it is []byte.
func (c *client) do(method, path string, body any, opts ...reqOpt) resp {
	c.e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				c.e.t.Fatal(err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.e.ts.URL+path, rd)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, opts...)
}

// json sends a plain request, requires status want and decodes the answer into out.
func (c *client) json(method, path string, body any, want int, out any) resp {
	c.e.t.Helper()
	r := c.do(method, path, body)
	if r.status != want {
		c.e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			c.e.t.Fatalf("%s %s: decoding %s: %v", method, path, r.body, err)
		}
	}
	return r
}

// encrypted sends a JWE request (body nil: headers only) and returns the
// response with its decrypted plaintext, both checked against the
// document's x-jwe-request / x-jwe-response schemas.
func (c *client) encrypted(method, path string, body any, opts ...reqOpt) (resp, []byte) {
	c.e.t.Helper()
	if body != nil {
		plain, _ := json.Marshal(body)
		if err := fixture.validator.ValidatePlaintext(method, path, true, plain); err != nil {
			c.e.t.Errorf("request plaintext: %v", err)
		}
	}
	req, err := c.jwe.NewRequest(context.Background(), method, c.e.ts.URL+path, body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	r := c.send(req, opts...)
	if r.status/100 != 2 || len(r.body) == 0 {
		return r, nil
	}
	plain, err := c.jwe.DecryptResponse(r.body)
	if err != nil {
		c.e.t.Fatalf("%s %s: decrypting the answer: %v (%s)", method, path, err, r.body)
	}
	if err := fixture.validator.ValidatePlaintext(method, path, false, plain); err != nil {
		c.e.t.Errorf("%s %s: response plaintext: %v", method, path, err)
	}
	if c.seen != nil {
		c.seen(plain)
	}
	return r, plain
}

// encryptedJSON is encrypted with a required status, decoding the plaintext into out.
func (c *client) encryptedJSON(method, path string, body any, want int, out any) {
	c.e.t.Helper()
	r, plain := c.encrypted(method, path, body)
	if r.status != want {
		c.e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if out != nil {
		if err := json.Unmarshal(plain, out); err != nil {
			c.e.t.Fatalf("%s %s: decoding plaintext: %v", method, path, err)
		}
	}
}

func (e *env) adminLogin(user, password string) *client {
	e.t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	e.newClient(nil, nil).json("POST", "/admin/login", map[string]string{"username": user, "password": password}, 200, &tok)
	return e.bearerClient(tok.Token)
}

// newAdmin creates an admin with role and logs in as them.
func (e *env) newAdmin(name, role string) *client {
	e.t.Helper()
	e.root.json("POST", "/admin/users", map[string]string{"username": name, "password": name + "-password-1", "role": role}, 201, nil)
	return e.adminLogin(name, name+"-password-1")
}

// Views as clients read them.
type customerJSON struct {
	ID        string `json:"id"`
	PartnerID string `json:"partnerId"`
	KYCStatus string `json:"kycStatus"`
}

type cardJSON struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Status     string `json:"status"`
	LockReason int    `json:"lockReason"`
	Last4      string `json:"last4"`
	BalanceID  string `json:"balanceId"`
	CopyOf     string `json:"copyOf"`
	PINSet     bool   `json:"pinSet"`
}

type balanceJSON struct {
	ID        string     `json:"id"`
	Currency  string     `json:"currency"`
	Available int64      `json:"available"`
	Held      int64      `json:"held"`
	State     string     `json:"state"`
	Cards     []cardJSON `json:"cards"`
}

type fullDataJSON struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	CardNo string `json:"cardNo"`
	Exp    string `json:"exp"`
	CVV    string `json:"cvv"`
}

type partnerBalanceJSON struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Currency  string `json:"currency"`
	Balance   int64  `json:"balance"`
	Available int64  `json:"available"`
}

// program is a partner set up through the admin API, with its client.
type program struct {
	id   string
	bin  string
	pbal string // its funding balance
	c    *client
}

// newProgram creates a partner with a funding balance in EUR holding funds.
func (e *env) newProgram(id, bin, model string, funds int64) *program {
	e.t.Helper()
	e.root.json("POST", "/admin/partners", map[string]any{"id": id, "name": id + " bank", "bin": bin, "currency": "EUR", "fundingModel": model, "digitalFirst": true}, 201, nil)
	var pb partnerBalanceJSON
	e.root.json("POST", "/admin/partners/"+id+"/balances", map[string]any{"type": model, "currency": "EUR"}, 201, &pb)
	if funds > 0 {
		e.root.json("POST", "/admin/partners/"+id+"/balances/"+pb.ID+"/reload", map[string]any{"amount": funds}, 200, nil)
	}
	return &program{id: id, bin: bin, pbal: pb.ID, c: e.partnerClient(id)}
}

// verifiedCustomer registers a customer, verifies its KYC and opens a EUR balance.
func (p *program) verifiedCustomer(t *testing.T, name string) (customerID, balanceID string) {
	t.Helper()
	var cust customerJSON
	p.c.json("POST", "/secure/customers", map[string]string{"externalId": "ext-" + name, "firstName": name, "lastName": "Tester", "email": name + "@example.com", "phone": "+48123456789"}, 201, &cust)
	p.c.json("PUT", "/secure/customers/"+cust.ID+"/kyc", map[string]string{"status": "VERIFIED"}, 200, nil)
	var bal balanceJSON
	p.c.json("POST", "/secure/customers/"+cust.ID+"/balances", map[string]string{"currency": "EUR"}, 201, &bal)
	return cust.ID, bal.ID
}

// session opens a customer session through the partner.
func (p *program) session(t *testing.T, customerID string) *client {
	t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	p.c.json("POST", "/secure/customers/"+customerID+"/sessions", nil, 201, &tok)
	return p.c.e.bearerClient(tok.Token)
}

// metric reads one sample of the env's registry; 0 when absent.
func (e *env) metric(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

// cardIDs lists the card ids a balance's card set names, read straight
// from Redis: a refused request must not leave even a dangling id there.
func (e *env) cardIDs(partner, balanceID string) []string {
	e.t.Helper()
	ids, err := e.rdb.SMembers(context.Background(), e.ledger.Keys().BalanceCards(partner, balanceID)).Result()
	if err != nil {
		e.t.Fatalf("reading cards of %s: %v", balanceID, err)
	}
	return ids
}

func contains(b []byte, s string) bool { return s != "" && strings.Contains(string(b), s) }

// newProgramWithThreshold creates a CREDIT partner whose EUR credit
// balance alerts below threshold.
func (e *env) newProgramWithThreshold(id, bin string, threshold int64) *program {
	e.t.Helper()
	e.root.json("POST", "/admin/partners", map[string]string{"id": id, "name": id, "bin": bin, "currency": "EUR", "fundingModel": "CREDIT"}, 201, nil)
	var pb partnerBalanceJSON
	e.root.json("POST", "/admin/partners/"+id+"/balances", map[string]any{"type": "CREDIT", "currency": "EUR", "lowBalanceThreshold": threshold}, 201, &pb)
	return &program{id: id, bin: bin, pbal: pb.ID, c: e.partnerClient(id)}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// flushJournal writes the ledger's journal to Postgres, as the switch's
// write-behind does.
func (e *env) flushJournal() {
	e.t.Helper()
	wb, err := pgstore.NewWriteBehind(pgstore.Options{Redis: e.rdb, Keys: e.ledger.Keys(), Sink: e.db.Sink(),
		Registerer: prometheus.NewRegistry()})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := wb.Flush(ctx); err != nil {
		e.t.Fatalf("flushing the journal: %v", err)
	}
}
