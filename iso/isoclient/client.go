// Package isoclient is an ISO 8583 client for Antaca's listener: the
// acquirer side of a link, for tests, the simulator and the benchmarks.
//
// It is built on moov-io/iso8583-connection, which multiplexes concurrent
// requests over one connection and matches each response to its request by
// DE11 (STAN) alone. Two requests in flight on one connection with the same
// STAN would therefore steal each other's answers; the Client gives every
// request a STAN unique on its connection (a wrapping counter) unless the
// caller set one, and refuses a caller-chosen STAN that is still in flight.
// The server additionally echoes DE37, which callers can check.
package isoclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moov-io/iso8583"
	connection "github.com/moov-io/iso8583-connection"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/prefix"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
)

// Spec returns p's field layout as a client packs it: identical to p.Spec
// except DE52, which is defined as 16 ASCII characters holding the PIN
// block in hex. On the wire that is the same 16 hex digits p.Spec reads
// (Spec87ASCII's DE52 is 8 bytes encoded as ASCII hex), but moov-io can
// only unpack Spec87ASCII's definition, not pack it (its fixed hex prefix
// compares the 8-byte value with 16 digits). Set DE52 with
// msg.Field(52, "0412AC89ABCDEF67").
func Spec(p *iso.Profile) *iso8583.MessageSpec {
	specMu.Lock()
	defer specMu.Unlock()
	if s, ok := specs[p]; ok {
		return s
	}
	fields := maps.Clone(p.Spec.Fields)
	fields[52] = field.NewString(&field.Spec{
		Length:      16,
		Description: "PIN Data (hex)",
		Enc:         encoding.ASCII,
		Pref:        prefix.ASCII.Fixed,
	})
	s := &iso8583.MessageSpec{Name: p.Spec.Name + " (client)", Fields: fields}
	specs[p] = s
	return s
}

var (
	specMu sync.Mutex
	specs  = map[*iso.Profile]*iso8583.MessageSpec{}
)

// DefaultSendTimeout bounds a Send whose context has no deadline.
const DefaultSendTimeout = 5 * time.Second

// Config configures a Client. Zero values take defaults.
type Config struct {
	// Addr is the listener's host:port.
	Addr string
	// Profile is the wire dialect; nil means cmf.
	Profile *iso.Profile
	// Framing must match the server's.
	Framing iso.Framing
	// TLSConfig, when set, makes the client dial TLS.
	TLSConfig *tls.Config
	// ConnectTimeout bounds the dial (default 5s).
	ConnectTimeout time.Duration
	// SignOn sends an 0800 sign-on (DE70 001) right after connecting and
	// fails Dial when it is not accepted.
	SignOn bool
	// EchoInterval, when positive, sends an 0800 echo test after that long
	// without sending anything, as processors keep idle links alive.
	EchoInterval time.Duration
	// Logger receives connection errors; nil discards them.
	Logger *slog.Logger
}

// Client is one connection to the listener; safe for concurrent use.
type Client struct {
	conn    *connection.Connection
	profile *iso.Profile
	spec    *iso8583.MessageSpec
	log     *slog.Logger

	stan atomic.Uint32

	mu      sync.Mutex
	pending map[string]struct{} // STANs in flight
}

// ErrSTANInFlight is returned by Send for a message whose DE11 equals that
// of a request still awaiting its answer on the same connection.
var ErrSTANInFlight = errors.New("STAN already in flight on this connection")

// Dial connects to cfg.Addr and, with cfg.SignOn, signs on.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Profile == nil {
		p, err := iso.ProfileByName(iso.DefaultProfile)
		if err != nil {
			return nil, err
		}
		cfg.Profile = p
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		profile: cfg.Profile,
		spec:    Spec(cfg.Profile),
		log:     cfg.Logger.With("component", "isoclient", "addr", cfg.Addr),
		pending: map[string]struct{}{},
	}
	// Start somewhere random so that several links of one simulator do
	// not walk the same STAN sequence.
	c.stan.Store(rand.Uint32N(999_999))

	opts := []connection.Option{
		connection.ConnectTimeout(cfg.ConnectTimeout),
		connection.SendTimeout(DefaultSendTimeout),
		connection.InboundMessageHandler(c.handleInbound),
		connection.ErrorHandler(func(err error) { c.log.Debug("connection error", "err", err) }),
	}
	if cfg.TLSConfig != nil {
		tlsCfg := cfg.TLSConfig.Clone()
		opts = append(opts, func(o *connection.Options) error {
			o.TLSConfig = tlsCfg
			return nil
		})
	}
	if cfg.EchoInterval > 0 {
		opts = append(opts,
			connection.IdleTime(cfg.EchoInterval),
			connection.PingHandler(func(*connection.Connection) {
				ctx, cancel := context.WithTimeout(context.Background(), DefaultSendTimeout)
				defer cancel()
				if err := c.Echo(ctx); err != nil {
					c.log.Warn("echo test failed", "err", err)
				}
			}))
	}
	conn, err := connection.New(cfg.Addr, c.spec, cfg.Framing.LengthReader(), cfg.Framing.LengthWriter(), opts...)
	if err != nil {
		return nil, fmt.Errorf("creating ISO connection to %s: %w", cfg.Addr, err)
	}
	if err := conn.ConnectCtx(ctx); err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", cfg.Addr, err)
	}
	c.conn = conn
	if cfg.SignOn {
		if err := c.SignOn(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
	}
	return c, nil
}

// Profile is the client's wire dialect.
func (c *Client) Profile() *iso.Profile { return c.profile }

// NewMessage returns an empty message of type mti laid out by Spec.
func (c *Client) NewMessage(mti string) *iso8583.Message {
	m := iso8583.NewMessage(c.spec)
	m.MTI(mti)
	return m
}

// NextSTAN returns the next STAN of this connection (000001-999999).
func (c *Client) NextSTAN() string {
	return fmt.Sprintf("%06d", c.stan.Add(1)%999_999+1)
}

// Send sends msg and waits for its answer until ctx ends (or
// DefaultSendTimeout without a deadline). A missing DE11 is filled with
// NextSTAN; the STAN used is returned so callers can check the echo.
func (c *Client) Send(ctx context.Context, msg *iso8583.Message) (*iso8583.Message, error) {
	stan, _ := msg.GetString(11)
	if stan == "" {
		stan = c.NextSTAN()
		if err := msg.Field(11, stan); err != nil {
			return nil, fmt.Errorf("setting DE11: %w", err)
		}
	}
	c.mu.Lock()
	if _, busy := c.pending[stan]; busy {
		c.mu.Unlock()
		return nil, fmt.Errorf("sending STAN %s: %w", stan, ErrSTANInFlight)
	}
	c.pending[stan] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, stan)
		c.mu.Unlock()
	}()

	timeout := DefaultSendTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, fmt.Errorf("sending STAN %s: %w", stan, context.DeadlineExceeded)
		}
	}
	resp, err := c.conn.Send(msg, connection.SendTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("sending STAN %s: %w", stan, err)
	}
	return resp, nil
}

// SignOn sends an 0800 sign-on (DE70 001) and checks it was accepted.
func (c *Client) SignOn(ctx context.Context) error {
	return c.network(ctx, iso.NetworkSignOn)
}

// SignOff sends an 0800 sign-off (DE70 002) and checks it was accepted.
func (c *Client) SignOff(ctx context.Context) error {
	return c.network(ctx, iso.NetworkSignOff)
}

// Echo sends an 0800 echo test (DE70 301) and checks it was accepted.
func (c *Client) Echo(ctx context.Context) error {
	return c.network(ctx, iso.NetworkEcho)
}

func (c *Client) network(ctx context.Context, code string) error {
	msg, err := iso.NewNetworkRequest(c.profile, code, c.NextSTAN(), time.Now())
	if err != nil {
		return err
	}
	resp, err := c.Send(ctx, msg)
	if err != nil {
		return fmt.Errorf("network management %s: %w", code, err)
	}
	got, _ := resp.GetString(39)
	if want := c.profile.Codes[authz.ReasonNetworkAccepted]; got != want {
		return fmt.Errorf("network management %s: answered DE39 %q, want %q", code, got, want)
	}
	return nil
}

// handleInbound answers the server's own 0800s (its idle echo tests) and
// logs anything else that arrives unmatched, such as an answer after its
// Send gave up.
func (c *Client) handleInbound(conn *connection.Connection, msg *iso8583.Message) {
	mti, _ := msg.GetMTI()
	if mti != "0800" {
		c.log.Debug("unmatched message", "mti", mti)
		return
	}
	resp, err := iso.AnswerNetworkManagement(c.profile, msg)
	if resp == nil {
		c.log.Warn("cannot answer network management message", "err", err)
		return
	}
	if err := conn.Reply(resp); err != nil {
		c.log.Warn("answering network management message", "err", err)
	}
}

// Done is closed when the connection is closed, by either side.
func (c *Client) Done() <-chan struct{} { return c.conn.Done() }

// Close waits for requests in flight and closes the connection.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("closing ISO connection: %w", err)
	}
	return nil
}
