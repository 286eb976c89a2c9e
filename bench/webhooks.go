package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
	"github.com/antaca/antaca/simulator"
)

// WebhookResult is what the run's webhook receiver got while the switch
// sent the seeded partner's events to it.
type WebhookResult struct {
	Endpoints int `json:"endpoints"`
	// Deliveries verified by the receiver (repeats included), distinct
	// events, and deliveries it refused (a bad signature: never expected).
	Deliveries int64 `json:"deliveries"`
	Events     int64 `json:"events"`
	Refused    int64 `json:"refused"`
	// Types counts the distinct events by type.
	Types map[string]int64 `json:"types"`
	// When the load ended: deliveries pending and journal entries not yet
	// turned into events; then how long the dispatcher took to catch up
	// (at most webhookDrainLimit), and what was left after that.
	PendingAtEnd int64   `json:"pending_at_end"`
	BehindAtEnd  int64   `json:"entries_behind_at_end"`
	DrainSeconds float64 `json:"drain_seconds"`
	Pending      int64   `json:"pending"`
	Behind       int64   `json:"entries_behind"`
}

// webhookReceiver is `sim webhooks`, a partner's endpoint, run as a child
// process so that the CPU it spends receiving is not counted as the
// switch's (measureCPU reports it apart).
type webhookReceiver struct {
	cmd     *exec.Cmd
	url     string
	report  string
	dir     string
	stopped bool
}

// startWebhookReceiver starts `sim webhooks` on a free loopback port.
func startWebhookReceiver(ctx context.Context, o Options, secret string) (*webhookReceiver, error) {
	gen, err := generatorCommand(o)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "antaca-bench-webhooks-")
	if err != nil {
		return nil, err
	}
	r := &webhookReceiver{dir: dir, report: filepath.Join(dir, "report.json")}
	args := append(slices.Clone(gen[1:]), "webhooks", "--webhook-addr", "127.0.0.1:0", "--webhook-secret", secret, "--report", r.report)
	r.cmd = exec.CommandContext(ctx, gen[0], args...)
	r.cmd.Cancel = func() error { return r.cmd.Process.Signal(syscall.SIGTERM) }
	r.cmd.WaitDelay = 10 * time.Second
	var stderr strings.Builder
	r.cmd.Stderr = &stderr
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := r.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting the webhook receiver: %w", err)
	}
	// The receiver stands for a partner's machine, which the switch does
	// not share: on this one it takes only the CPU that the switch, Redis,
	// Postgres and the generator leave (nice 19). Its CPU is still
	// measured and reported.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, r.cmd.Process.Pid, 19)
	line, err := bufio.NewReader(out).ReadString('\n')
	_, url, ok := strings.Cut(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting the webhook receiver: %q %v: %s", line, err, strings.TrimSpace(stderr.String()))
	}
	go func() { _, _ = bufio.NewReader(out).WriteTo(discard{}) }()
	r.url = strings.TrimSuffix(url, "/")
	return r, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// pid is the receiver's process id.
func (r *webhookReceiver) pid() int { return r.cmd.Process.Pid }

// stop ends the receiver and reads what it got.
func (r *webhookReceiver) stop() (simulator.WebhookSinkStats, error) {
	var st simulator.WebhookSinkStats
	if r.stopped {
		return st, errors.New("webhook receiver already stopped")
	}
	r.stopped = true
	defer os.RemoveAll(r.dir)
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	if err := r.cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return st, fmt.Errorf("webhook receiver: %w", err)
		}
	}
	b, err := os.ReadFile(r.report)
	if err != nil {
		return st, fmt.Errorf("webhook receiver's report: %w", err)
	}
	return st, json.Unmarshal(b, &st)
}

// subscribeWebhooks starts a receiver and subscribes n endpoints of the
// seeded partner to every event type, as a partner would over the API,
// each signing with the secret the receiver verifies.
func subscribeWebhooks(ctx context.Context, o Options, sw *Switch, cards *simulator.CardsFile, n int) (*webhookReceiver, error) {
	if len(cards.Cards) == 0 {
		return nil, fmt.Errorf("subscribing webhooks: no seeded card")
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	secret := "whsec_" + hex.EncodeToString(b)
	r, err := startWebhookReceiver(ctx, o, secret)
	if err != nil {
		return nil, err
	}
	out := pgstore.NewOutbox(pgstore.Postgres(sw.Pool))
	for i := range n {
		_, err := out.CreateEndpoint(ctx, pgstore.Endpoint{
			ID: ledger.NewID("whe"), PartnerID: cards.Cards[0].PartnerID,
			URL: fmt.Sprintf("%s/events/%d", r.url, i), Events: api.WebhookEventTypes, Secret: secret,
		}, n)
		if err != nil {
			_, _ = r.stop()
			return nil, fmt.Errorf("subscribing webhooks: %w", err)
		}
	}
	return r, nil
}

// webhookBacklog counts the deliveries not yet made and the journal
// entries the dispatcher has not yet turned into events.
func webhookBacklog(ctx context.Context, sw *Switch) (pending, behind int64, err error) {
	err = sw.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM webhook_deliveries WHERE state = 'PENDING'),
		(SELECT coalesce(sum((SELECT max(seq) FROM journal j WHERE j.partner_id = c.partner_id) - c.seq), 0) FROM webhook_cursors c)`).Scan(&pending, &behind)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the webhook backlog: %w", err)
	}
	return pending, behind, nil
}

// webhookDrainLimit bounds the wait for the dispatcher after the load.
const webhookDrainLimit = 2 * time.Minute

// drainWebhooks waits, after the load, until every journal entry is
// events and every delivery made (at most webhookDrainLimit), then stops
// the receiver and reports: how far behind the dispatcher was when the
// load ended, and how long it took to catch up.
func drainWebhooks(ctx context.Context, o Options, sw *Switch, r *webhookReceiver) (*WebhookResult, error) {
	wr := &WebhookResult{Endpoints: o.WebhookEndpoints}
	if err := sw.FlushJournal(ctx); err != nil {
		return nil, err
	}
	began := time.Now()
	var err error
	if wr.PendingAtEnd, wr.BehindAtEnd, err = webhookBacklog(ctx, sw); err != nil {
		return nil, err
	}
	o.Progress("webhooks: load over, %d deliveries pending and %d journal entries not yet events; waiting for the dispatcher",
		wr.PendingAtEnd, wr.BehindAtEnd)
	for {
		if wr.Pending, wr.Behind, err = webhookBacklog(ctx, sw); err != nil {
			return nil, err
		}
		if wr.Pending == 0 && wr.Behind == 0 || time.Since(began) > webhookDrainLimit {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	wr.DrainSeconds = time.Since(began).Seconds()
	st, err := r.stop()
	if err != nil {
		return nil, err
	}
	wr.Deliveries, wr.Events, wr.Refused, wr.Types = st.Deliveries, st.Events, st.Refused, st.Types
	return wr, nil
}
