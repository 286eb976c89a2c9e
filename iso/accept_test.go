package iso

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/antaca/antaca/authz"
)

// flakyListener fails its first Accept calls the way an exhausted process
// does (EMFILE), then behaves.
type flakyListener struct {
	net.Listener
	failures atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, errors.New("accept tcp: too many open files")
	}
	return l.Listener.Accept()
}

type approveAll struct{}

func (approveAll) Authorize(context.Context, *authz.Request) authz.Decision {
	return authz.Decision{Reason: authz.ReasonApproved, ApprovalCode: "000001"}
}

func TestAcceptErrorsAreRetried(t *testing.T) {
	srv, err := New(Config{Addr: "127.0.0.1:0"}, approveAll{})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: inner}
	fl.failures.Store(5)
	srv.ln = fl // Serve uses a listener already in place

	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	conn, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo, err := NewNetworkRequest(cmfProfile, NetworkEcho, "000001", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := echo.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if err := (Framing{}).WriteFrame(conn, b); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	frame, err := (Framing{}).ReadFrame(conn)
	if err != nil {
		t.Fatalf("no answer after accept errors: %v", err)
	}
	resp := iso8583.NewMessage(cmfProfile.Spec)
	if err := resp.Unpack(frame); err != nil {
		t.Fatal(err)
	}
	if code, _ := resp.GetString(39); code != "8000" {
		t.Errorf("DE39 %q, want 8000", code)
	}
	if n := fl.failures.Load(); n >= 0 {
		t.Errorf("listener still has %d failures to give; Accept was not retried", n+1)
	}
}
