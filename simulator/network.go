package simulator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moov-io/iso8583"
	connection "github.com/moov-io/iso8583-connection"

	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/iso/isoclient"
)

// NetworkConfig describes the processor side of the links to the switch.
type NetworkConfig struct {
	// Addr is the switch's ISO 8583 address.
	Addr string
	// Profile is the wire dialect ("cmf" or "iso87"); empty means cmf.
	Profile string
	// Framing is the length header ("binary2" or "ascii4"); empty means binary2.
	Framing string
	// Links is how many connections to keep open (default 1).
	Links int
	// TLS, when set, makes every link speak TLS.
	TLS *tls.Config
	// EchoInterval sends an 0800 echo on a link idle that long (0: never).
	EchoInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts (defaults 100ms and 5s); the wait doubles after each failure.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives link events; nil discards them.
	Logger *slog.Logger
}

// ErrNoLink is returned by Send while no link is up.
var ErrNoLink = errors.New("no ISO link is up")

// Network is a set of signed-on links to the switch. Each link reconnects
// with exponential backoff when it drops; Send spreads messages over the
// links that are up.
type Network struct {
	cfg     NetworkConfig
	profile *iso.Profile
	framing iso.Framing
	log     *slog.Logger

	links []*link
	next  atomic.Uint64
	stan  atomic.Uint32

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Reconnects counts links re-established after a drop.
	Reconnects atomic.Int64
}

type link struct {
	mu     sync.RWMutex
	client *isoclient.Client
}

func (l *link) get() *isoclient.Client {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.client
}

func (l *link) set(c *isoclient.Client) {
	l.mu.Lock()
	l.client = c
	l.mu.Unlock()
}

// Connect dials every link and signs on. It fails when the first link
// cannot be established; further links that fail keep retrying in the
// background.
func Connect(ctx context.Context, cfg NetworkConfig) (*Network, error) {
	if cfg.Profile == "" {
		cfg.Profile = iso.DefaultProfile
	}
	profile, err := iso.ProfileByName(cfg.Profile)
	if err != nil {
		return nil, err
	}
	framing, err := iso.ParseFraming(cfg.Framing)
	if err != nil {
		return nil, err
	}
	if cfg.Links <= 0 {
		cfg.Links = 1
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Network{cfg: cfg, profile: profile, framing: framing, log: cfg.Logger.With("component", "sim-network")}
	n.ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	n.stan.Store(rand.Uint32N(999_999))
	n.links = make([]*link, cfg.Links)
	for i := range n.links {
		n.links[i] = &link{}
	}
	first, err := n.dial(ctx)
	if err != nil {
		n.cancel()
		return nil, err
	}
	n.links[0].set(first)
	n.wg.Add(len(n.links))
	go n.keep(0, first)
	for i := 1; i < len(n.links); i++ {
		go n.keep(i, nil)
	}
	return n, nil
}

// Profile is the wire dialect of the links.
func (n *Network) Profile() *iso.Profile { return n.profile }

func (n *Network) dial(ctx context.Context) (*isoclient.Client, error) {
	return isoclient.Dial(ctx, isoclient.Config{
		Addr: n.cfg.Addr, Profile: n.profile, Framing: n.framing, TLSConfig: n.cfg.TLS,
		SignOn: true, EchoInterval: n.cfg.EchoInterval, Logger: n.cfg.Logger,
	})
}

// keep holds link i up until Close: it waits for the connection to drop,
// then redials with exponential backoff and jitter, signing on each time.
func (n *Network) keep(i int, c *isoclient.Client) {
	defer n.wg.Done()
	backoff := n.cfg.MinBackoff
	for {
		if c == nil {
			var err error
			c, err = n.dial(n.ctx)
			if err != nil {
				if n.ctx.Err() != nil {
					return
				}
				wait := backoff/2 + rand.N(backoff/2+1)
				n.log.Warn("ISO link down, retrying", "link", i, "err", err, "wait", wait)
				select {
				case <-n.ctx.Done():
					return
				case <-time.After(wait):
				}
				backoff = min(2*backoff, n.cfg.MaxBackoff)
				continue
			}
			backoff = n.cfg.MinBackoff
			n.links[i].set(c)
			n.Reconnects.Add(1)
			n.log.Info("ISO link up", "link", i)
		}
		select {
		case <-n.ctx.Done():
			n.links[i].set(nil)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = c.SignOff(ctx)
			cancel()
			_ = c.Close()
			return
		case <-c.Done():
			n.links[i].set(nil)
			n.log.Warn("ISO link dropped", "link", i)
			c = nil
		}
	}
}

// Up returns how many links are connected.
func (n *Network) Up() int {
	up := 0
	for _, l := range n.links {
		if l.get() != nil {
			up++
		}
	}
	return up
}

// WaitUp waits until want links are connected or ctx ends.
func (n *Network) WaitUp(ctx context.Context, want int) error {
	for n.Up() < want {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d ISO links (%d up): %w", want, n.Up(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// pick returns a connected link, round robin.
func (n *Network) pick() *isoclient.Client {
	start := n.next.Add(1)
	for i := range uint64(len(n.links)) {
		if c := n.links[(start+i)%uint64(len(n.links))].get(); c != nil {
			return c
		}
	}
	return nil
}

// Exchange is one request and its answer on a link.
type Exchange struct {
	Request  *iso8583.Message
	Response *iso8583.Message
	// Client is the link the request went out on; a retransmission or a
	// reversal should use NewMessage of the same profile.
	Client *isoclient.Client
}

// NewMessage returns an empty message of type mti in the links' layout.
func (n *Network) NewMessage(mti string) *iso8583.Message {
	m := iso8583.NewMessage(isoclient.Spec(n.profile))
	m.MTI(mti)
	return m
}

// NextSTAN draws a STAN for a message that must carry it before sending
// (so that a reversal can name it in DE90). STANs come from one counter for
// all links, so two messages in flight never share one.
func (n *Network) NextSTAN() string {
	return fmt.Sprintf("%06d", n.stan.Add(1)%999_999+1)
}

// Send sends msg on one of the links and waits for its answer until ctx
// ends. A STAN still in flight on the chosen link is retried on another.
func (n *Network) Send(ctx context.Context, msg *iso8583.Message) (*iso8583.Message, error) {
	for attempt := 0; ; attempt++ {
		c := n.pick()
		if c == nil {
			return nil, ErrNoLink
		}
		resp, err := c.Send(ctx, msg)
		if errors.Is(err, isoclient.ErrSTANInFlight) && attempt < len(n.links) {
			continue
		}
		return resp, err
	}
}

// IsTimeout reports whether a Send error means no answer came in time.
func IsTimeout(err error) bool {
	return errors.Is(err, connection.ErrSendTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// Close signs off and closes every link.
func (n *Network) Close() error {
	n.cancel()
	n.wg.Wait()
	return nil
}
