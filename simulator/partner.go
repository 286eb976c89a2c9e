package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/antaca/antaca/api/signing"
)

// PartnerConfig are the knobs of a simulated decisioning backend: how long
// it takes, how often it fails and how, and what it decides.
type PartnerConfig struct {
	// Secret checks the Antaca-Signature of each request ("": not checked).
	Secret string
	// Latency is added before every answer; Jitter up to that much more.
	Latency, Jitter time.Duration
	// Fail answers HTTP 500 with this probability; Garbage a body that is
	// no answer; Hang never answers in time (sleeps 10 s).
	Fail, Garbage, Hang float64
	// DeclineOver declines amounts above it (0: none); Partial approves
	// at most this much (0: the whole amount); Fund funds each approval
	// with the amount (just-in-time funding).
	DeclineOver, Partial int64
	Fund                 bool
	// Seed makes the random choices repeatable (0: random).
	Seed uint64
}

// PartnerStats counts what a PartnerBackend answered.
type PartnerStats struct {
	Requests, Approved, Declined, Failed, Garbage, Hung, BadSignature atomic.Int64
}

func (s *PartnerStats) String() string {
	return fmt.Sprintf("requests %d: approved %d, declined %d, failed %d, garbage %d, hung %d, bad signature %d",
		s.Requests.Load(), s.Approved.Load(), s.Declined.Load(), s.Failed.Load(), s.Garbage.Load(), s.Hung.Load(), s.BadSignature.Load())
}

// PartnerBackend plays a program's decisioning backend (docs/decisioning.md).
type PartnerBackend struct {
	mu    sync.RWMutex
	cfg   PartnerConfig
	rnd   func() float64
	Stats PartnerStats
}

// SetKnobs changes how the backend answers from the next request on (its
// secret stays).
func (b *PartnerBackend) SetKnobs(cfg PartnerConfig) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cfg.Secret, cfg.Seed = b.cfg.Secret, b.cfg.Seed
	b.cfg = cfg
}

func (b *PartnerBackend) knobs() PartnerConfig {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.cfg
}

// NewPartnerBackend returns a backend with cfg's knobs.
func NewPartnerBackend(cfg PartnerConfig) *PartnerBackend {
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var mu = make(chan struct{}, 1)
	return &PartnerBackend{cfg: cfg, rnd: func() float64 {
		mu <- struct{}{}
		defer func() { <-mu }()
		return r.Float64()
	}}
}

// ServeHTTP answers one decision request.
func (b *PartnerBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.Stats.Requests.Add(1)
	cfg := b.knobs()
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if cfg.Secret != "" && !validSignature(cfg.Secret, r.Header.Get(signing.Header), body) {
		b.Stats.BadSignature.Add(1)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var txn struct {
		Amount int64 `json:"amount"`
	}
	_ = json.Unmarshal(body, &txn)
	wait := cfg.Latency
	if cfg.Jitter > 0 {
		wait += time.Duration(b.rnd() * float64(cfg.Jitter))
	}
	roll := b.rnd()
	switch {
	case roll < cfg.Hang:
		b.Stats.Hung.Add(1)
		wait = 10 * time.Second
	case roll < cfg.Hang+cfg.Fail:
		sleep(r.Context(), wait)
		b.Stats.Failed.Add(1)
		http.Error(w, "simulated failure", http.StatusInternalServerError)
		return
	case roll < cfg.Hang+cfg.Fail+cfg.Garbage:
		sleep(r.Context(), wait)
		b.Stats.Garbage.Add(1)
		_, _ = io.WriteString(w, "<html>simulated garbage</html>")
		return
	}
	if !sleep(r.Context(), wait) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if cfg.DeclineOver > 0 && txn.Amount > cfg.DeclineOver {
		b.Stats.Declined.Add(1)
		_, _ = io.WriteString(w, `{"approved": false, "reason": "over the simulated limit"}`)
		return
	}
	b.Stats.Approved.Add(1)
	ans := map[string]any{"approved": true}
	if cfg.Partial > 0 && txn.Amount > cfg.Partial {
		ans["amount"] = cfg.Partial
	}
	if cfg.Fund && txn.Amount > 0 {
		ans["fund"] = txn.Amount
	}
	_ = json.NewEncoder(w).Encode(ans)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func validSignature(secret, header string, body []byte) bool {
	ts, _, _ := strings.Cut(strings.TrimPrefix(header, "t="), ",")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	at := time.Unix(sec, 0)
	if d := time.Since(at); d > 5*time.Minute || d < -5*time.Minute {
		return false
	}
	return header == signing.Sign(secret, at, body)
}

// ServePartner serves b on ln until ctx ends.
func ServePartner(ctx context.Context, ln net.Listener, b *PartnerBackend) error {
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func partnerCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("antaca sim partner", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9099", "address to serve on (set the program's remoteUrl to http://<it>/)")
	var cfg PartnerConfig
	fs.StringVar(&cfg.Secret, "secret", "", "the program's remoteSecret: requests with another signature get 401 (empty: not checked)")
	fs.DurationVar(&cfg.Latency, "latency", 5*time.Millisecond, "time to answer")
	fs.DurationVar(&cfg.Jitter, "jitter", 0, "up to this much more, at random")
	fs.Float64Var(&cfg.Fail, "fail", 0, "share of requests answered HTTP 500")
	fs.Float64Var(&cfg.Garbage, "garbage", 0, "share of requests answered with a body that is no answer")
	fs.Float64Var(&cfg.Hang, "hang", 0, "share of requests never answered in time")
	fs.Int64Var(&cfg.DeclineOver, "decline-over", 0, "decline amounts above this (minor units; 0: none)")
	fs.Int64Var(&cfg.Partial, "partial", 0, "approve at most this much (0: the whole amount)")
	fs.BoolVar(&cfg.Fund, "fund", false, "fund every approval just in time with its amount")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the random choices (0: random)")
	report := fs.Duration("report", 10*time.Second, "how often to print the counts")
	return &ffcli.Command{
		Name:       "partner",
		ShortUsage: "antaca sim partner [flags]",
		ShortHelp:  "play a program's decisioning backend (remoteUrl) with latency and failure knobs",
		LongHelp: "Answers Antaca's decision requests (docs/decisioning.md) after --latency, failing,\n" +
			"garbling or hanging a share of them, so that a tester can watch stand-in happen.",
		FlagSet: fs,
		Options: envOptions,
		Exec: func(ctx context.Context, _ []string) error {
			if cfg.Fail < 0 || cfg.Garbage < 0 || cfg.Hang < 0 || cfg.Fail+cfg.Garbage+cfg.Hang > 1 {
				return fmt.Errorf("--fail, --garbage and --hang are shares from 0 to 1 that add up to at most 1")
			}
			ln, err := net.Listen("tcp", *listen)
			if err != nil {
				return fmt.Errorf("listening: %w", err)
			}
			b := NewPartnerBackend(cfg)
			fmt.Fprintf(stdout, "partner backend on http://%s/\n", ln.Addr())
			if *report > 0 {
				go func() {
					t := time.NewTicker(*report)
					defer t.Stop()
					for {
						select {
						case <-ctx.Done():
							return
						case <-t.C:
							fmt.Fprintln(stderr, "partner:", b.Stats.String())
						}
					}
				}()
			}
			err = ServePartner(ctx, ln, b)
			fmt.Fprintln(stdout, "partner:", b.Stats.String())
			return err
		},
	}
}
