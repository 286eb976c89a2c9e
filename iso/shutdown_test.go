package iso_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/iso/isoclient"
)

// TestShutdownUnderLoad drains a server while raw connections keep
// sending. Every request the Authorizer saw must come back to its sender
// before the connection closes; the server must then refuse connections.
func TestShutdownUnderLoad(t *testing.T) {
	const conns = 16
	var (
		mu         sync.Mutex
		authorized = map[string]bool{} // terminal/stan
	)
	auth := &fakeAuthorizer{authorize: func(ctx context.Context, req *authz.Request) authz.Decision {
		mu.Lock()
		authorized[req.TerminalID+"/"+req.STAN] = true
		mu.Unlock()
		select {
		case <-time.After(time.Duration(5+mrand.IntN(25)) * time.Millisecond):
		case <-ctx.Done():
		}
		return approve()
	}}
	ts := startServer(t, iso.Config{RequestTimeout: time.Second}, auth)
	p, f := ts.profile, ts.framing

	answered := make([]map[string]string, conns) // request -> DE39
	var readers, writers sync.WaitGroup
	for ci := range conns {
		conn, err := net.Dial("tcp", ts.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		terminal := fmt.Sprintf("TERM%04d", ci)
		answered[ci] = map[string]string{}
		writers.Add(1)
		go func() { // sends until the server stops taking requests
			defer writers.Done()
			for i := 1; ; i++ {
				msg, err := txn{mti: "0100", stan: stan(i), extra: map[int]string{41: terminal}}.tryBuild(p)
				if err != nil {
					t.Error(err)
					return
				}
				b, err := msg.Pack()
				if err != nil {
					t.Error(err)
					return
				}
				if err := f.WriteFrame(conn, b); err != nil {
					return
				}
				if i%4 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
		readers.Add(1)
		go func() { // reads answers until the server closes
			defer readers.Done()
			defer conn.Close()
			for {
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				frame, err := f.ReadFrame(conn)
				if err != nil {
					return
				}
				m := iso8583.NewMessage(p.Spec)
				if err := m.Unpack(frame); err != nil {
					t.Errorf("unpacking answer: %v", err)
					return
				}
				// Approved, or issuer unavailable when the load pushed a
				// request past its deadline: answered either way.
				code, _ := m.GetString(39)
				if code != "0000" && code != "9112" {
					t.Errorf("answer DE39 %q during drain, want 0000 or 9112", code)
				}
				s, _ := m.GetString(11)
				answered[ci][terminal+"/"+s] = code
			}
		}()
	}

	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	t.Logf("drained in %s", time.Since(start))
	readers.Wait()
	writers.Wait()

	select {
	case err := <-ts.served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		ts.served <- nil // for the cleanup's check
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}

	got := map[string]string{}
	for _, a := range answered {
		for k, code := range a {
			got[k] = code
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(authorized) < conns {
		t.Fatalf("only %d requests reached the Authorizer; load too light to test a drain", len(authorized))
	}
	for k := range authorized {
		if got[k] == "" {
			t.Errorf("request %s reached the Authorizer but its answer never arrived", k)
		}
	}
	shed := 0
	for k, code := range got {
		if !authorized[k] {
			// Admission control answers 9112 without asking the
			// Authorizer when the requests ahead would make it late.
			if code != "9112" {
				t.Errorf("answer %s (%s) without a request", k, code)
			}
			shed++
		}
	}
	t.Logf("%d answered without deciding (overload)", shed)
	t.Logf("%d requests answered during the drain test", len(got))

	if c, err := net.DialTimeout("tcp", ts.Addr().String(), time.Second); err == nil {
		_ = c.Close()
		t.Error("server still accepts connections after Shutdown")
	}
	if got := ts.metricValue(t, "antaca_iso_inflight_requests", nil); got != 0 {
		t.Errorf("inflight_requests = %v after drain", got)
	}
	if got := ts.metricValue(t, "antaca_iso_open_connections", nil); got != 0 {
		t.Errorf("open_connections = %v after drain", got)
	}
}

// TestShutdownDeadline: when the caller's ctx ends first, Shutdown closes
// the connections and reports it.
func TestShutdownDeadline(t *testing.T) {
	release := make(chan struct{})
	auth := &fakeAuthorizer{authorize: func(ctx context.Context, _ *authz.Request) authz.Decision {
		<-release
		return approve()
	}}
	ts := startServer(t, iso.Config{RequestTimeout: 500 * time.Millisecond}, auth)
	t.Cleanup(func() { close(release) })
	conn := ts.rawDial(t)
	writeRaw(t, conn, ts.framing, pack(t, txn{mti: "0100", stan: "000001"}.build(t, ts.profile)))
	waitFor(t, "the request in flight", func() bool {
		return ts.metricValue(t, "antaca_iso_inflight_requests", nil) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	expectClosed(t, conn, 2*time.Second)
}

func TestServeAfterShutdown(t *testing.T) {
	srv, err := iso.New(iso.Config{Addr: "127.0.0.1:0"}, (&recorder{}).authorizer(approve()))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.ListenAndServe(context.Background()); !errors.Is(err, iso.ErrServerClosed) {
		t.Errorf("ListenAndServe after Shutdown = %v, want ErrServerClosed", err)
	}
}

func TestServeStopsWhenContextEnds(t *testing.T) {
	srv, err := iso.New(iso.Config{Addr: "127.0.0.1:0"}, (&recorder{}).authorizer(approve()))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	c, err := isoclient.Dial(context.Background(), isoclient.Config{Addr: srv.Addr().String(), SignOn: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after a drain", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Error("client connection still open after the drain")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	auth := (&recorder{}).authorizer(approve())
	for name, cfg := range map[string]iso.Config{
		"negative request timeout": {RequestTimeout: -1},
		"negative limit":           {MaxConnections: -1},
		"unknown length header":    {Framing: iso.Framing{Header: 7}},
	} {
		if _, err := iso.New(cfg, auth); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := iso.New(iso.Config{}, nil); err == nil {
		t.Error("New without Authorizer succeeded")
	}
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	ts := startServer(t, iso.Config{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}},
		(&recorder{}).authorizer(approve()))

	c, err := isoclient.Dial(context.Background(), isoclient.Config{
		Addr:      ts.Addr().String(),
		TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		SignOn:    true,
	})
	if err != nil {
		t.Fatalf("Dial over TLS: %v", err)
	}
	defer c.Close()
	resp := send(t, c, txn{mti: "0200"}.build(t, ts.profile))
	if got := get(t, resp, 39); got != "0000" {
		t.Errorf("DE39 %q over TLS, want 0000", got)
	}

	// A plaintext peer fails the handshake and is closed; TLS peers are
	// unaffected.
	plain := ts.rawDial(t)
	writeRaw(t, plain, ts.framing, pack(t, txn{mti: "0100", stan: "000001"}.build(t, ts.profile)))
	expectClosed(t, plain, 2*time.Second)
	resp = send(t, c, txn{mti: "0100"}.build(t, ts.profile))
	if got := get(t, resp, 39); got != "0000" {
		t.Errorf("after a plaintext peer: DE39 %q", got)
	}
}

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "antaca test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
