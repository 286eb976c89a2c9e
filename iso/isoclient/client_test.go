package isoclient_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/moov-io/iso8583"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/iso/isoclient"
)

type slowAuthorizer struct{ delay time.Duration }

func (a slowAuthorizer) Authorize(ctx context.Context, req *authz.Request) authz.Decision {
	select {
	case <-time.After(a.delay):
	case <-ctx.Done():
	}
	return authz.Decision{Reason: authz.ReasonApproved, ApprovalCode: req.STAN}
}

func start(t *testing.T, cfg iso.Config, a iso.Authorizer) *iso.Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	srv, err := iso.New(cfg, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return srv
}

func authRequest(c *isoclient.Client, stan string) *iso8583.Message {
	m := c.NewMessage("0100")
	for id, v := range map[int]string{
		2: "5412751234567890", 3: "000000", 4: "000000000100", 7: "0612101530",
		37: "415910000001", 49: "978", 52: "0412AC89ABCDEF67",
	} {
		_ = m.Field(id, v)
	}
	if stan != "" {
		_ = m.Field(11, stan)
	}
	return m
}

func TestClientGeneratesUniqueSTANs(t *testing.T) {
	srv := start(t, iso.Config{}, slowAuthorizer{delay: 5 * time.Millisecond})
	c, err := isoclient.Dial(context.Background(), isoclient.Config{Addr: srv.Addr().String(), SignOn: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := authRequest(c, "")
			resp, err := c.Send(context.Background(), req)
			if err != nil {
				t.Error(err)
				return
			}
			sent, _ := req.GetString(11)
			got, _ := resp.GetString(11)
			code, _ := resp.GetString(38) // the fake approves with the STAN as code
			if got != sent || code != sent {
				t.Errorf("sent STAN %s, answer DE11 %s DE38 %s", sent, got, code)
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[sent] {
				t.Errorf("STAN %s used twice", sent)
			}
			seen[sent] = true
		}()
	}
	wg.Wait()
}

// gateAuthorizer signals arrived on each request and holds it until
// release is closed (or the request's deadline passes).
type gateAuthorizer struct {
	arrived chan struct{}
	release chan struct{}
}

func (a gateAuthorizer) Authorize(ctx context.Context, req *authz.Request) authz.Decision {
	select {
	case a.arrived <- struct{}{}:
	default:
	}
	select {
	case <-a.release:
	case <-ctx.Done():
	}
	return authz.Decision{Reason: authz.ReasonApproved, ApprovalCode: req.STAN}
}

func TestClientRefusesSTANInFlight(t *testing.T) {
	gate := gateAuthorizer{arrived: make(chan struct{}, 1), release: make(chan struct{})}
	// A long deadline: the first request must still be in flight,
	// unanswered, when the second is tried.
	srv := start(t, iso.Config{RequestTimeout: 10 * time.Second}, gate)
	c, err := isoclient.Dial(context.Background(), isoclient.Config{Addr: srv.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	released := false
	release := func() {
		if !released {
			released = true
			close(gate.release)
		}
	}
	defer release()
	first := make(chan error, 1)
	go func() {
		_, err := c.Send(context.Background(), authRequest(c, "000042"))
		first <- err
	}()
	select {
	case <-gate.arrived: // the server holds the first request
	case err := <-first:
		t.Fatalf("first Send returned before reaching the Authorizer: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("first request never reached the Authorizer")
	}
	if _, err := c.Send(context.Background(), authRequest(c, "000042")); !errors.Is(err, isoclient.ErrSTANInFlight) {
		t.Errorf("second Send with the same STAN = %v, want ErrSTANInFlight", err)
	}
	release()
	if err := <-first; err != nil {
		t.Errorf("first Send: %v", err)
	}
	// Once answered, the STAN may be used again (a repeat, 0101).
	if _, err := c.Send(context.Background(), authRequest(c, "000042")); err != nil {
		t.Errorf("reusing an answered STAN: %v", err)
	}
}

func TestClientSendHonoursContext(t *testing.T) {
	srv := start(t, iso.Config{RequestTimeout: time.Second}, slowAuthorizer{delay: 500 * time.Millisecond})
	c, err := isoclient.Dial(context.Background(), isoclient.Config{Addr: srv.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Send(ctx, authRequest(c, "")); err == nil {
		t.Error("Send succeeded past its context deadline")
	}
	if el := time.Since(start); el > 400*time.Millisecond {
		t.Errorf("Send returned after %s", el)
	}
}

func TestClientASCII4AndEchoInterval(t *testing.T) {
	f := iso.Framing{Header: iso.ASCII4}
	reg := prometheus.NewRegistry()
	srv := start(t, iso.Config{Framing: f, Profile: mustISO87(t), Registerer: reg}, slowAuthorizer{})
	c, err := isoclient.Dial(context.Background(), isoclient.Config{
		Addr: srv.Addr().String(), Framing: f, Profile: mustISO87(t), SignOn: true, EchoInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The idle link carries the sign-on and then an echo test every
	// EchoInterval; the server's own idle probe waits its 60 s ReadTimeout,
	// so every 0800 it answers here came from the client.
	const want = 1 + 2 // sign-on and at least two echo tests
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := answered0800s(reg)
		if err != nil {
			t.Fatal(err)
		}
		if n >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server answered %v 0800s, want at least %d (sign-on and echo tests)", n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := c.Send(context.Background(), authRequest(c, ""))
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := resp.GetString(39); code != "00" {
		t.Errorf("DE39 %q, want 00", code)
	}
}

func TestDialFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	if _, err := isoclient.Dial(context.Background(), isoclient.Config{Addr: addr, ConnectTimeout: time.Second}); err == nil {
		t.Error("Dial to a closed port succeeded")
	}
}

// answered0800s sums antaca_iso_requests_total{mti="0800"} over action
// codes; the family is absent until the first message is counted.
func answered0800s(reg prometheus.Gatherer) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "antaca_iso_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "mti" && lp.GetValue() == "0800" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n, nil
}

func mustISO87(t *testing.T) *iso.Profile {
	t.Helper()
	p, err := iso.ProfileByName(iso.ProfileISO87)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
