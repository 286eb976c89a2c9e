package simulator

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/issuing"
)

// BureauAPI is what the personalisation bureau needs from the platform:
// the ordered physical cards, and a way to report one personalised.
type BureauAPI interface {
	BureauOrders(ctx context.Context) ([]BureauOrder, error)
	Personalise(ctx context.Context, p Partner, cardID string) error
}

var (
	_ BureauAPI = (*RESTIssuer)(nil)
	_ BureauAPI = (*DirectIssuer)(nil)
)

// BureauConfig configures the bureau.
type BureauConfig struct {
	// Poll is how often the bureau asks for new orders (default 2s).
	Poll time.Duration
	// Delay is how long personalising one card takes (default 2s; the
	// real thing takes up to 48 hours).
	Delay time.Duration
	// Once handles the orders of one poll and returns.
	Once bool
	// Out receives a line per personalised card.
	Out io.Writer
}

// RunBureau plays the card personalisation bureau until ctx ends (or after
// one round with Once): it polls the ordered plastics, makes each after the
// configured delay and reports it, upon which the platform links a
// physical card to the user's balance; a digital-first copy is produced
// blank (no data imprinted) and was usable from the start. It returns how many cards it
// personalised.
func RunBureau(ctx context.Context, api BureauAPI, cfg BureauConfig) (int, error) {
	if cfg.Poll <= 0 {
		cfg.Poll = 2 * time.Second
	}
	if cfg.Delay < 0 {
		cfg.Delay = 0
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	var (
		mu      sync.Mutex
		seen    = map[string]bool{}
		done    int
		errs    []string
		wg      sync.WaitGroup
		outMu   sync.Mutex
		printf  = func(f string, a ...any) { outMu.Lock(); fmt.Fprintf(cfg.Out, f, a...); outMu.Unlock() }
		workCtx = context.WithoutCancel(ctx)
	)
	for {
		orders, err := api.BureauOrders(ctx)
		if err != nil && ctx.Err() == nil {
			printf("bureau: listing orders: %v\n", err)
		}
		for _, o := range orders {
			mu.Lock()
			if seen[o.CardID] {
				mu.Unlock()
				continue
			}
			seen[o.CardID] = true
			mu.Unlock()
			kind := "personalising"
			if o.Blank {
				kind = "producing a blank digital-first plastic" // no data imprinted
			}
			printf("bureau: card %s of partner %s ordered; %s (%s)\n", o.CardID, o.PartnerID, kind, cfg.Delay)
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-time.After(cfg.Delay):
				case <-ctx.Done():
					return
				}
				err := api.Personalise(workCtx, Partner{ID: o.PartnerID}, o.CardID)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Sprintf("card %s: %v", o.CardID, err))
					printf("bureau: card %s: report failed: %v\n", o.CardID, err)
					return
				}
				done++
				if o.Blank {
					printf("bureau: card %s produced blank and reported; the copy was usable already\n", o.CardID)
					return
				}
				printf("bureau: card %s personalised and reported; the platform links it\n", o.CardID)
			}()
		}
		if cfg.Once {
			wg.Wait()
			break
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return done, nil
		case <-time.After(cfg.Poll):
		}
	}
	if len(errs) > 0 {
		return done, fmt.Errorf("bureau: %d report(s) failed: %s", len(errs), strings.Join(errs, "; "))
	}
	return done, nil
}

// BureauOrders lists the plastics waiting for the bureau, of every partner,
// read from the ledger (the in-process counterpart of the API's bureau
// list): ordered physical cards, and digital-first copies not yet produced
// (blank plastics).
func (d *DirectIssuer) BureauOrders(ctx context.Context) ([]BureauOrder, error) {
	cards, err := d.Ledger.ScanCards(ctx, issuing.WaitsForBureau)
	if err != nil {
		return nil, fmt.Errorf("listing ordered cards: %w", err)
	}
	out := make([]BureauOrder, 0, len(cards))
	for _, c := range cards {
		out = append(out, BureauOrder{CardID: c.ID, PartnerID: c.PartnerID, CustomerID: c.CustomerID, Status: c.Status,
			Blank: c.Type == string(authz.CardDigitalFirst)})
	}
	return out, nil
}
