package simulator

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/antaca/antaca/authz/cardcrypto"
)

// SeedOptions say what `sim seed` provisions.
type SeedOptions struct {
	// PartnerID of the program to create ("sim-" + random when empty).
	PartnerID string
	// BIN of the program (a random 8-digit BIN starting with 9 when empty).
	BIN          string
	Currency     string // default EUR
	FundingModel string // DEPOSIT (default) or CREDIT
	// PartnerFunds is the partner balance's initial amount.
	PartnerFunds int64
	// Customers to register (KYC verified), each with one balance.
	Customers int
	// Funds loaded into each customer balance.
	Funds int64
	// Cards of each type per customer.
	Virtual, Physical, DigitalFirst int
	// ExternalBureau leaves personalisation of physical cards to a
	// separately running `sim bureau` and waits for the cards to be
	// linked; otherwise seed reports personalisation itself.
	ExternalBureau bool
	// BureauWait bounds the wait for an external bureau (default 2m).
	BureauWait time.Duration
	// Concurrency is how many customers are provisioned at once (default 4).
	Concurrency int
	Logger      *slog.Logger
}

func (o *SeedOptions) defaults() {
	if o.PartnerID == "" {
		o.PartnerID = "sim-" + randomDigits(8)
	}
	if o.BIN == "" {
		o.BIN = "9" + randomDigits(7)
	}
	if o.Currency == "" {
		o.Currency = "EUR"
	}
	if o.FundingModel == "" {
		o.FundingModel = "DEPOSIT"
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.BureauWait <= 0 {
		o.BureauWait = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Seed provisions a program through iss: the partner and its balance,
// customers with verified KYC and a funded balance each, and cards of each
// type (virtual; physical ordered -> personalised -> linked -> activated
// with a PIN; digital-first copies of virtual cards with a PIN).
func Seed(ctx context.Context, iss Issuer, o SeedOptions) (*CardsFile, error) {
	o.defaults()
	p, err := iss.CreatePartner(ctx, PartnerSpec{ID: o.PartnerID, Name: "Simulator " + o.PartnerID, BIN: o.BIN,
		Currency: o.Currency, FundingModel: o.FundingModel, Funds: o.PartnerFunds, DigitalFirst: true})
	if err != nil {
		return nil, err
	}
	o.Logger.Info("partner created", "partner", p.ID, "bin", p.BIN, "funding", p.FundingModel)
	f := &CardsFile{Version: 1, Note: cardsFileNote, GeneratedAt: time.Now().UTC(), Partners: []Partner{p}}

	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		sem      = make(chan struct{}, o.Concurrency)
	)
	for i := range o.Customers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cust, cards, err := seedCustomer(ctx, iss, p, o, i+1)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("seeding customer %d: %w", i+1, err)
				}
				return
			}
			f.Customers = append(f.Customers, cust)
			f.Cards = append(f.Cards, cards...)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	sortCards(f.Cards)
	return f, nil
}

func seedCustomer(ctx context.Context, iss Issuer, p Partner, o SeedOptions, n int) (SeededCustomer, []Card, error) {
	ext := fmt.Sprintf("%s-user-%04d", p.ID, n)
	c, err := iss.CreateCustomer(ctx, p, ext, "", true)
	if err != nil {
		return SeededCustomer{}, nil, err
	}
	b, err := iss.CreateBalance(ctx, p, c.ID, o.Currency)
	if err != nil {
		return SeededCustomer{}, nil, err
	}
	if o.Funds > 0 {
		if err := iss.Reload(ctx, p, c.ID, b.ID, o.Funds); err != nil {
			return SeededCustomer{}, nil, err
		}
		b.Available = o.Funds
	}
	sc := SeededCustomer{PartnerID: p.ID, ID: c.ID, ExternalID: ext, Balance: b}
	var cards []Card
	add := func(kind string, i int, card Card) {
		card.Name = fmt.Sprintf("%s-%04d-%d", kind, n, i)
		card.PartnerID, card.CustomerID, card.BalanceID, card.Currency = p.ID, c.ID, b.ID, o.Currency
		cards = append(cards, card)
		o.Logger.Debug("card provisioned", "name", card.Name, "type", card.Type, "pan", card.Masked())
	}
	var virtuals []Card
	for i := range o.Virtual {
		card, err := iss.IssueVirtual(ctx, p, c.ID, b.ID)
		if err != nil {
			return sc, nil, err
		}
		virtuals = append(virtuals, card)
		add("virtual", i+1, card)
	}
	for i := range o.Physical {
		card, err := provisionPhysical(ctx, iss, p, c.ID, b.ID, o)
		if err != nil {
			return sc, nil, err
		}
		add("physical", i+1, card)
	}
	for i := range o.DigitalFirst {
		var orig Card
		if i < len(virtuals) {
			orig = virtuals[i]
		} else {
			if orig, err = iss.IssueVirtual(ctx, p, c.ID, b.ID); err != nil {
				return sc, nil, err
			}
		}
		card, err := iss.Print(ctx, p, c.ID, orig.ID)
		if err != nil {
			return sc, nil, err
		}
		if card.PAN == "" {
			card.PAN, card.Expiry = orig.PAN, orig.Expiry
		}
		card.PIN = randomDigits(4)
		if err := iss.SetPIN(ctx, p, c.ID, card.ID, card.PIN); err != nil {
			return sc, nil, err
		}
		add("digital-first", i+1, card)
	}
	return sc, cards, nil
}

// provisionPhysical runs a plastic through its life: order, bureau
// (personalise + link), activation, PIN.
func provisionPhysical(ctx context.Context, iss Issuer, p Partner, customerID, balanceID string, o SeedOptions) (Card, error) {
	card, err := iss.OrderPhysical(ctx, p, customerID, balanceID)
	if err != nil {
		return Card{}, err
	}
	if o.ExternalBureau {
		if err := activateWhenLinked(ctx, iss, p, customerID, card.ID, o.BureauWait); err != nil {
			return Card{}, err
		}
	} else {
		if err := iss.Personalise(ctx, p, card.ID); err != nil {
			return Card{}, err
		}
		if err := iss.Activate(ctx, p, customerID, card.ID); err != nil {
			return Card{}, err
		}
	}
	card.Status = "ACTIVE"
	card.PIN = randomDigits(4)
	if err := iss.SetPIN(ctx, p, customerID, card.ID, card.PIN); err != nil {
		return Card{}, err
	}
	return card, nil
}

// activateWhenLinked retries the activation while the card still waits for
// the bureau (409: not yet linked).
func activateWhenLinked(ctx context.Context, iss Issuer, p Partner, customerID, cardID string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := iss.Activate(ctx, p, customerID, cardID)
		ae, isAPI := AsAPIError(err)
		if err == nil || !isAPI || ae.Status != http.StatusConflict {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("card %s not linked by the bureau within %s: %w", cardID, wait, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func sortCards(cards []Card) {
	slices.SortFunc(cards, func(a, b Card) int { return strings.Compare(a.Name, b.Name) })
}

// randomDigits returns n random decimal digits.
func randomDigits(n int) string {
	b := make([]byte, n)
	for i := range b {
		d, _ := rand.Int(rand.Reader, big.NewInt(10))
		b[i] = byte('0' + d.Int64())
	}
	return string(b)
}

// unissuedPAN returns a Luhn-valid PAN under bin that was (almost
// certainly) never issued: for deliberate "unknown card" declines.
func unissuedPAN(bin string) (string, error) {
	if bin == "" {
		return "", errors.New("no BIN to build a PAN from")
	}
	return cardcrypto.GeneratePAN(bin, 16, rand.Reader)
}
