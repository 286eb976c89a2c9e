package iso_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moov-io/iso8583"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/iso/isoclient"
)

// fakeAuthorizer is an Authorizer made of a function field.
type fakeAuthorizer struct {
	authorize func(ctx context.Context, req *authz.Request) authz.Decision
}

var _ iso.Authorizer = (*fakeAuthorizer)(nil)

func (f *fakeAuthorizer) Authorize(ctx context.Context, req *authz.Request) authz.Decision {
	return f.authorize(ctx, req)
}

// recorder is a fakeAuthorizer that approves and remembers every request.
type recorder struct {
	mu   sync.Mutex
	reqs []*authz.Request
}

func (r *recorder) authorizer(d authz.Decision) *fakeAuthorizer {
	return &fakeAuthorizer{authorize: func(_ context.Context, req *authz.Request) authz.Decision {
		r.mu.Lock()
		r.reqs = append(r.reqs, req)
		r.mu.Unlock()
		return d
	}}
}

func (r *recorder) last(t *testing.T) *authz.Request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("authorizer was not called")
	}
	return r.reqs[len(r.reqs)-1]
}

func approve() authz.Decision {
	return authz.Decision{Reason: authz.ReasonApproved, ApprovalCode: "A1B2C3", Amount: 1050, Available: 98950, HasAvailable: true, Currency: "978"}
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is a running server on 127.0.0.1:0 with its own registry and
// a debug log kept in memory; it is drained at cleanup, and its log is then
// checked for card data.
type testServer struct {
	*iso.Server
	reg     *prometheus.Registry
	logs    *syncBuffer
	profile *iso.Profile
	framing iso.Framing
	served  chan error
}

func startServer(t testing.TB, cfg iso.Config, auth iso.Authorizer) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	cfg.Registerer = reg
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.Profile == nil {
		cfg.Profile = mustProfile(t, iso.ProfileCMF)
	}
	srv, err := iso.New(cfg, auth)
	if err != nil {
		t.Fatalf("iso.New: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ts := &testServer{Server: srv, reg: reg, logs: logs, profile: cfg.Profile, framing: cfg.Framing, served: make(chan error, 1)}
	go func() { ts.served <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-ts.served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
		assertNoCardData(t, logs.String())
	})
	return ts
}

// Card data used by every test message; none of it may reach a log.
const (
	testPAN      = "5412751234567890"
	testPINBlock = "0412AC89ABCDEF67"
)

func assertNoCardData(t testing.TB, logs string) {
	t.Helper()
	for _, secret := range []string{testPAN, testPINBlock, strings.ToLower(testPINBlock)} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain card data %q", secret)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func mustProfile(t testing.TB, name string) *iso.Profile {
	t.Helper()
	p, err := iso.ProfileByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (ts *testServer) dial(t testing.TB) *isoclient.Client {
	t.Helper()
	c, err := ts.tryDial()
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// tryDial is dial for goroutines other than the test's own, which must not
// call t.Fatal: the caller reports the error and closes the client.
func (ts *testServer) tryDial() (*isoclient.Client, error) {
	return isoclient.Dial(context.Background(), isoclient.Config{
		Addr: ts.Addr().String(), Profile: ts.profile, Framing: ts.framing,
	})
}

func (ts *testServer) rawDial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ts.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// metricValue reads one series from the server's registry: a counter's or
// gauge's value, a histogram's sample count. It fails the test when no
// family has that name, when labels names a label the metric lacks, or when
// not exactly one series matches labels, so a typo cannot read as 0. (A
// plain Counter or Gauge always has its one series; a CounterVec has a
// series, and a family, only once some label values were counted.)
func (ts *testServer) metricValue(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	v, err := gatherValue(ts.reg, name, labels)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// metricSum adds up every series of a counter family (0 when the family
// has no series yet).
func (ts *testServer) metricSum(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// gatherValue is metricValue's lookup, returning an error instead of
// failing the test.
func gatherValue(g prometheus.Gatherer, name string, labels map[string]string) (float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var (
			found bool
			value float64
		)
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				got, ok := have[k]
				if !ok {
					return 0, fmt.Errorf("metric %s has no label %q (labels %v)", name, k, have)
				}
				if got != v {
					continue next
				}
			}
			if found {
				return 0, fmt.Errorf("metric %s: more than one series matches %v", name, labels)
			}
			found = true
			switch {
			case m.Counter != nil:
				value = m.Counter.GetValue()
			case m.Gauge != nil:
				value = m.Gauge.GetValue()
			case m.Histogram != nil:
				value = float64(m.Histogram.GetSampleCount())
			default:
				return 0, fmt.Errorf("metric %s: unsupported type %s", name, mf.GetType())
			}
		}
		if !found {
			return 0, fmt.Errorf("metric %s: no series matches %v", name, labels)
		}
		return value, nil
	}
	return 0, fmt.Errorf("no metric family %s in the registry", name)
}

// txn describes a test transaction message. Without stan, DE11 is left
// for the client to fill.
type txn struct {
	mti    string
	pc     string
	amount string
	stan   string
	rrn    string
	pan    string
	extra  map[int]string
	drop   []int
}

// build returns a full transaction message in profile p, laid out by
// isoclient.Spec so that DE52 packs.
func (x txn) build(t testing.TB, p *iso.Profile) *iso8583.Message {
	t.Helper()
	m, err := x.tryBuild(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tryBuild is build for goroutines other than the test's own.
func (x txn) tryBuild(p *iso.Profile) (*iso8583.Message, error) {
	m := iso8583.NewMessage(isoclient.Spec(p))
	m.MTI(x.mti)
	f := map[int]string{
		2:  testPAN,
		3:  "000000",
		4:  "000000001050",
		7:  "0612101530",
		12: "101530",
		13: "0612",
		14: "2812",
		18: "5411",
		22: "051",
		32: "123456",
		37: "415910000001",
		41: "TERM0001",
		42: "MERCHANT0000001",
		43: "ANTACA TEST SHOP         BERLIN       DE",
		49: "978",
		52: testPINBlock,
	}
	for k, v := range map[int]string{2: x.pan, 3: x.pc, 4: x.amount, 11: x.stan, 37: x.rrn} {
		if v != "" {
			f[k] = v
		}
	}
	for k, v := range x.extra {
		f[k] = v
	}
	for _, k := range x.drop {
		delete(f, k)
	}
	for k, v := range f {
		if err := m.Field(k, v); err != nil {
			return nil, fmt.Errorf("setting DE%d: %w", k, err)
		}
	}
	return m, nil
}

func get(t testing.TB, m *iso8583.Message, id int) string {
	t.Helper()
	s, err := tryGet(m, id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tryGet is get for goroutines other than the test's own.
func tryGet(m *iso8583.Message, id int) (string, error) {
	s, err := m.GetString(id)
	if err != nil {
		return "", fmt.Errorf("reading DE%d: %w", id, err)
	}
	return s, nil
}

// send sends msg on c with a generous timeout.
func send(t testing.TB, c *isoclient.Client, msg *iso8583.Message) *iso8583.Message {
	t.Helper()
	resp, err := trySend(c, msg)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// trySend is send for goroutines other than the test's own.
func trySend(c *isoclient.Client, msg *iso8583.Message) (*iso8583.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Send(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("Send: %w", err)
	}
	return resp, nil
}

// writeRaw frames payload with the server's framing and writes it.
func writeRaw(t testing.TB, conn net.Conn, f iso.Framing, payload []byte) {
	t.Helper()
	if err := f.WriteFrame(conn, payload); err != nil {
		t.Fatalf("writing frame: %v", err)
	}
}

// readResponse reads one framed message from conn and unpacks it.
func readResponse(t testing.TB, conn net.Conn, f iso.Framing, p *iso.Profile) *iso8583.Message {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	frame, err := f.ReadFrame(conn)
	if err != nil {
		t.Fatalf("reading response frame: %v", err)
	}
	m := iso8583.NewMessage(p.Spec)
	if err := m.Unpack(frame); err != nil {
		t.Fatalf("unpacking response: %v", err)
	}
	return m
}

// expectClosed asserts the server closes conn within d.
func expectClosed(t testing.TB, conn net.Conn, d time.Duration) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 256)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %s", d)
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("unexpected read error: %v", err)
		}
		return
	}
}

// assertHealthy proves the server still answers on a fresh connection.
func assertHealthy(t testing.TB, ts *testServer) {
	t.Helper()
	c := ts.dial(t)
	resp := send(t, c, txn{mti: "0100"}.build(t, ts.profile))
	if got := get(t, resp, 39); got == "" {
		t.Fatalf("healthy check: no DE39")
	}
}

func pack(t testing.TB, m *iso8583.Message) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("packing: %v", err)
	}
	return b
}

func stan(i int) string { return fmt.Sprintf("%06d", i) }
