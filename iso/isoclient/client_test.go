package isoclient_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

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

func TestClientRefusesSTANInFlight(t *testing.T) {
	srv := start(t, iso.Config{}, slowAuthorizer{delay: 200 * time.Millisecond})
	c, err := isoclient.Dial(context.Background(), isoclient.Config{Addr: srv.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := make(chan error, 1)
	go func() {
		_, err := c.Send(context.Background(), authRequest(c, "000042"))
		first <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if _, err := c.Send(context.Background(), authRequest(c, "000042")); !errors.Is(err, isoclient.ErrSTANInFlight) {
		t.Errorf("second Send with the same STAN = %v, want ErrSTANInFlight", err)
	}
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
	srv := start(t, iso.Config{Framing: f, Profile: mustISO87(t)}, slowAuthorizer{})
	c, err := isoclient.Dial(context.Background(), isoclient.Config{
		Addr: srv.Addr().String(), Framing: f, Profile: mustISO87(t), SignOn: true, EchoInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(100 * time.Millisecond) // several echo tests go out meanwhile
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

func mustISO87(t *testing.T) *iso.Profile {
	t.Helper()
	p, err := iso.ProfileByName(iso.ProfileISO87)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
