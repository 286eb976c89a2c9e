package iso

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/antaca/antaca/authz"
)

// Abandoner is implemented by Authorizers that can undo a decision the
// server could not deliver: when the deadline passed, the processor was
// answered issuer unavailable, and an approval that arrives afterwards is
// handed to Abandon (with a fresh context) so its hold does not keep funds.
type Abandoner interface {
	Abandon(ctx context.Context, req *authz.Request, d authz.Decision)
}

// Authorizer decides one network message. It must honour ctx's deadline.
//
// The server calls it for every transaction message (never for network
// management) and answers "issuer unavailable" itself when the deadline
// passes first, so an Authorizer that overruns costs a decline, not a hung
// request. A decision that arrives after the deadline is discarded.
type Authorizer interface {
	Authorize(ctx context.Context, req *authz.Request) authz.Decision
}

// Defaults for zero Config fields.
const (
	DefaultRequestTimeout     = 300 * time.Millisecond
	DefaultReadTimeout        = 60 * time.Second
	DefaultEchoTimeout        = 10 * time.Second
	DefaultWriteTimeout       = 5 * time.Second
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultMaxConnections     = 1024
	DefaultMaxConnsPerAddr    = 64
	DefaultMaxInFlightPerConn = 128
)

// Config configures a Server. Zero values take the defaults above.
type Config struct {
	// Addr is the TCP address to listen on, e.g. ":8583" or "127.0.0.1:0".
	Addr string
	// Profile is the wire dialect; nil means the default profile (cmf).
	Profile *Profile
	// Framing is the length header and frame size limit.
	Framing Framing
	// MaxConnections bounds open connections; one more is closed at
	// accept and counted. Processors hold a handful of long-lived links,
	// so the limit only guards against a misbehaving peer or a scan.
	MaxConnections int
	// MaxConnsPerAddr bounds the open connections of one source IP
	// address, so that one peer cannot take every connection the switch
	// allows; one more is closed at accept and counted. Zero means
	// DefaultMaxConnsPerAddr; a negative value disables the bound.
	MaxConnsPerAddr int
	// Allow, when not empty, lists the networks processors connect from
	// (a single address is a /32 or /128 prefix); a connection from any
	// other address is closed at accept and counted. Empty admits any
	// address. ParseAllowList reads the configuration form.
	Allow []netip.Prefix
	// TLSConfig, when set, makes the listener speak TLS.
	TLSConfig *tls.Config
	// ReadTimeout is how long a connection may stay silent before the
	// server probes it with an 0800 echo (DE70 301). Negative disables
	// the probe.
	ReadTimeout time.Duration
	// EchoTimeout is how long the server then waits for any message
	// before it closes the connection as dead. It also bounds how long
	// the rest of a frame may take once its first byte arrived.
	EchoTimeout time.Duration
	// RequestTimeout is the deadline of one request, counted from the
	// moment its frame was read. When it passes the server answers
	// issuer unavailable (9112 / 91).
	RequestTimeout time.Duration
	// QueueTarget is the longest wait admission control lets a new
	// authorization expect before deciding it: past it (or past what is
	// left of RequestTimeout, whichever is shorter) the request is
	// answered issuer unavailable at once, so that under overload the
	// queue stays short and drains within moments once the load drops.
	// Zero: half of RequestTimeout. Negative: only the deadline counts.
	QueueTarget time.Duration
	// WriteTimeout bounds one response write; a peer that stops reading
	// has its connection closed instead of stalling every answer.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake.
	HandshakeTimeout time.Duration
	// MaxInFlightPerConn bounds requests handled at once on one
	// connection. When reached, the server stops reading that connection
	// until a request completes, so TCP flow control pushes back on the
	// peer instead of the server queueing without bound.
	MaxInFlightPerConn int
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil uses a private
	// registry. The global default registry is never used implicitly.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	if c.Profile == nil {
		p, err := ProfileByName(DefaultProfile)
		if err != nil {
			return c, err
		}
		c.Profile = p
	}
	if err := c.Framing.validate(); err != nil {
		return c, fmt.Errorf("framing: %w", err)
	}
	for name, d := range map[string]*time.Duration{
		"RequestTimeout":   &c.RequestTimeout,
		"EchoTimeout":      &c.EchoTimeout,
		"WriteTimeout":     &c.WriteTimeout,
		"HandshakeTimeout": &c.HandshakeTimeout,
	} {
		if *d < 0 {
			return c, fmt.Errorf("%s is negative (%s)", name, *d)
		}
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.QueueTarget == 0 {
		c.QueueTarget = c.RequestTimeout / 2
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.EchoTimeout == 0 {
		c.EchoTimeout = DefaultEchoTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxConnections < 0 || c.MaxInFlightPerConn < 0 {
		return c, errors.New("connection and in-flight limits must not be negative")
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxConnsPerAddr == 0 {
		c.MaxConnsPerAddr = DefaultMaxConnsPerAddr
	}
	for _, p := range c.Allow {
		if !p.IsValid() {
			return c, fmt.Errorf("allow-list entry %s is not a valid network", p)
		}
	}
	c.Allow = slices.Clone(c.Allow)
	if c.MaxInFlightPerConn == 0 {
		c.MaxInFlightPerConn = DefaultMaxInFlightPerConn
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.TLSConfig != nil {
		c.TLSConfig = c.TLSConfig.Clone()
	}
	return c, nil
}

// ErrServerClosed is returned by Serve and Listen after Shutdown.
var ErrServerClosed = errors.New("iso: server closed")

// Server is the ISO 8583 listener: it accepts processor connections, reads
// frames, answers network management itself, hands transactions to the
// Authorizer under a deadline, and writes each answer as soon as it is
// ready (answers may leave in a different order than requests came in;
// processors match them by DE11 and DE37).
//
// It is written directly on net.Conn rather than on moov-io's connection
// package so that the three guarantees the switch lives by stay in this
// file: every request read gets an answer by its deadline, a malformed
// message is answered rather than silently dropped, and a drain stops
// reading before it stops answering.
type Server struct {
	cfg  Config
	auth Authorizer
	log  *slog.Logger
	m    *metrics

	// Per-request warnings are sampled so that an outage or a broken
	// peer cannot flood the logs.
	timeoutLog      *logSampler
	rejectedLog     *logSampler
	rejectedConnLog *logSampler

	adm admission

	mu       sync.Mutex
	ln       net.Listener
	serving  bool
	draining bool
	conns    map[*serverConn]struct{}
	perAddr  map[netip.Addr]int // open connections by source address
	baseCtx  context.Context
	// wg counts the accept loop and every connection goroutine.
	wg         sync.WaitGroup
	stopAccept chan struct{}
}

// New validates cfg, registers the metrics and returns a server ready to
// Listen. It does not touch the network.
func New(cfg Config, auth Authorizer) (*Server, error) {
	if auth == nil {
		return nil, errors.New("creating ISO server: nil Authorizer")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("creating ISO server: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("creating ISO server: %w", err)
	}
	return &Server{
		cfg:             cfg,
		auth:            auth,
		log:             cfg.Logger.With("component", "iso", "profile", cfg.Profile.Name),
		m:               m,
		timeoutLog:      newLogSampler(time.Second),
		rejectedLog:     newLogSampler(time.Second),
		rejectedConnLog: newLogSampler(time.Second),
		conns:           map[*serverConn]struct{}{},
		perAddr:         map[netip.Addr]int{},
		baseCtx:         context.Background(),
		stopAccept:      make(chan struct{}),
		adm:             admission{target: cfg.QueueTarget},
	}, nil
}

// Listen binds Config.Addr. After it returns, Addr reports the bound
// address, which lets tests listen on 127.0.0.1:0 and learn the port.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listenLocked()
}

func (s *Server) listenLocked() error {
	if s.draining {
		return ErrServerClosed
	}
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening for ISO 8583 on %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// ListenAndServe is Listen followed by Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve accepts connections until ctx ends or Shutdown is called, then
// returns once every connection has drained. Cancelling ctx starts the same
// graceful drain as Shutdown; it is bounded by RequestTimeout plus
// WriteTimeout because every in-flight request is answered by then. Serve
// listens first if Listen was not called. It returns nil after a drain.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return errors.New("iso: Serve called twice")
	}
	if err := s.listenLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.serving = true
	s.baseCtx = context.WithoutCancel(ctx)
	ln := s.ln
	s.wg.Add(1)
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { _ = s.Shutdown(context.Background()) })
	defer stop()

	s.log.Info("ISO 8583 listener started", "addr", ln.Addr().String(), "framing", s.cfg.Framing.String(), "tls", s.cfg.TLSConfig != nil)
	err := s.acceptLoop(ln)
	s.wg.Done()
	if err != nil {
		// The listener went away under us: drain what is open rather
		// than leave connections without a server.
		s.log.Error("ISO 8583 listener failed", "err", err)
		_ = s.Shutdown(context.Background())
	}
	s.wg.Wait()
	s.log.Info("ISO 8583 listener stopped")
	return err
}

// acceptLoop accepts until the listener is closed by Shutdown. Any other
// Accept error (descriptor exhaustion, a connection aborted before accept)
// is retried with backoff: one bad moment must not take the switch off the
// network.
func (s *Server) acceptLoop(ln net.Listener) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isDraining() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accepting ISO 8583 connections: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed, retrying", "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.stopAccept:
				t.Stop()
				return nil
			}
			continue
		}
		backoff = 0
		s.admit(nc)
	}
}

// admit starts serving nc, or closes it at once when draining, when its
// source address is not allowed, or at a connection limit. The limit per
// source address is checked before the global one, so that a peer that
// opens connections without end uses up its own share and never the
// others'.
func (s *Server) admit(nc net.Conn) {
	addr := remoteIP(nc)
	if !s.allowed(addr) {
		_ = nc.Close()
		s.m.rejectedConns.WithLabelValues(rejectNotAllowed).Inc()
		if ok, suppressed := s.rejectedConnLog.allow(time.Now()); ok {
			s.log.Warn("connection rejected: address not in the allow-list", "remote", nc.RemoteAddr().String(), "suppressed", suppressed)
		}
		return
	}
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	reason, limit := "", 0
	switch {
	case s.cfg.MaxConnsPerAddr > 0 && s.perAddr[addr] >= s.cfg.MaxConnsPerAddr:
		reason, limit = rejectPerAddress, s.cfg.MaxConnsPerAddr
	case len(s.conns) >= s.cfg.MaxConnections:
		reason, limit = rejectLimit, s.cfg.MaxConnections
	}
	if reason != "" {
		s.mu.Unlock()
		_ = nc.Close()
		s.m.rejectedConns.WithLabelValues(reason).Inc()
		if ok, suppressed := s.rejectedConnLog.allow(time.Now()); ok {
			s.log.Warn("connection rejected: limit reached", "remote", nc.RemoteAddr().String(), "reason", reason, "limit", limit, "suppressed", suppressed)
		}
		return
	}
	c := newServerConn(s, nc)
	c.addr = addr
	s.conns[c] = struct{}{}
	s.perAddr[addr]++
	s.wg.Add(1)
	s.mu.Unlock()

	s.m.openConns.Inc()
	go c.serve()
}

func (s *Server) removeConn(c *serverConn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.perAddr[c.addr]--; s.perAddr[c.addr] <= 0 {
		delete(s.perAddr, c.addr)
	}
	s.mu.Unlock()
	s.m.openConns.Dec()
	s.wg.Done()
}

// allowed reports whether addr may connect: any address when the
// allow-list is empty, else one inside a listed network.
func (s *Server) allowed(addr netip.Addr) bool {
	if len(s.cfg.Allow) == 0 {
		return true
	}
	for _, p := range s.cfg.Allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// remoteIP is the source address of nc, IPv4-mapped IPv6 addresses read
// as IPv4 so that one peer counts once. A connection whose address cannot
// be read (not TCP) counts as the zero address.
func remoteIP(nc net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	return netip.Addr{}
}

// ParseAllowList reads an allow-list as configured: addresses and CIDR
// networks separated by commas or spaces ("10.1.0.0/16, 192.0.2.7").
// An address alone is a network of one. Empty input is an empty list,
// which admits every address.
func ParseAllowList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("allow-list entry %q: %w", item, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("allow-list entry %q: %w", item, err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Shutdown drains the server: it stops accepting, stops reading new
// messages, answers every request already read, then closes the
// connections. It returns when all connections are closed, or with ctx's
// error after closing them forcibly when ctx ends first (requests still
// waiting on the Authorizer then go unanswered; with a ctx longer than
// RequestTimeout + WriteTimeout that cannot happen).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.draining {
		s.draining = true
		close(s.stopAccept)
		if s.ln != nil {
			_ = s.ln.Close()
		}
		s.log.Info("draining ISO 8583 connections", "open", len(s.conns))
	}
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	for _, c := range conns {
		c.stopReading()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.closeNow()
		}
		s.mu.Unlock()
		return fmt.Errorf("draining ISO 8583 connections: %w", ctx.Err())
	}
}
