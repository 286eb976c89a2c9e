package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
	"github.com/antaca/antaca/simulator"
)

// WebhookResult is what the run's webhook receiver got while the switch
// sent the seeded partner's events to it.
type WebhookResult struct {
	Endpoints  int   `json:"endpoints"`
	Deliveries int64 `json:"deliveries"`
}

// webhookReceiver accepts every delivery at once and counts it.
type webhookReceiver struct {
	*httptest.Server
	deliveries atomic.Int64
}

// subscribeWebhooks starts a receiver and subscribes n endpoints of the
// seeded partner to every event type, as a partner would over the API.
func subscribeWebhooks(ctx context.Context, sw *Switch, cards *simulator.CardsFile, n int) (*webhookReceiver, error) {
	if len(cards.Cards) == 0 {
		return nil, fmt.Errorf("subscribing webhooks: no seeded card")
	}
	r := &webhookReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.deliveries.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	out := pgstore.NewOutbox(pgstore.Postgres(sw.Pool))
	for i := range n {
		_ = i
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		_, err := out.CreateEndpoint(ctx, pgstore.Endpoint{
			ID: ledger.NewID("whe"), PartnerID: cards.Cards[0].PartnerID,
			URL: fmt.Sprintf("%s/events/%d", r.URL, i), Events: api.WebhookEventTypes, Secret: hex.EncodeToString(secret),
		}, n)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("subscribing webhooks: %w", err)
		}
	}
	return r, nil
}
