package iso

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// blockingConn is a net.Conn whose first Write waits until released, and
// which records every Write.
type blockingConn struct {
	net.Conn
	release chan struct{}
	mu      sync.Mutex
	writes  [][]byte
	first   chan struct{} // closed when the first Write started
	once    sync.Once
}

func (b *blockingConn) Write(p []byte) (int, error) {
	b.once.Do(func() {
		close(b.first)
		<-b.release
	})
	b.mu.Lock()
	b.writes = append(b.writes, append([]byte(nil), p...))
	b.mu.Unlock()
	return len(p), nil
}
func (b *blockingConn) SetWriteDeadline(time.Time) error { return nil }
func (b *blockingConn) Close() error                     { return nil }

// TestWritesCombine: answers that become ready while a write is in its
// system call leave together in the next one, framed, in order.
func TestWritesCombine(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{cfg: Config{Framing: Framing{Header: Binary2}, WriteTimeout: time.Second}, m: m}
	conn := &blockingConn{release: make(chan struct{}), first: make(chan struct{})}
	c := &serverConn{srv: srv, raw: conn, nc: conn}

	done := make(chan error, 1)
	go func() { done <- c.write([]byte("first")) }()
	<-conn.first // the first answer is in its system call
	for _, p := range []string{"second", "third", "fourth"} {
		if err := c.write([]byte(p)); err != nil { // taken by the writer in progress
			t.Fatal(err)
		}
	}
	close(conn.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	if len(conn.writes) != 2 {
		t.Fatalf("%d writes, want 2 (one, then the three that waited)", len(conn.writes))
	}
	want := "\x00\x06second\x00\x05third\x00\x06fourth"
	if string(conn.writes[0]) != "\x00\x05first" || string(conn.writes[1]) != want {
		t.Fatalf("writes = %q, want %q then %q", conn.writes, "\x00\x05first", want)
	}
}
