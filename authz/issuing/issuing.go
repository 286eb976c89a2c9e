// Package issuing is the card issuance domain: virtual, physical and
// digital-first cards under one user balance, their PANs, expiry, CVV2 and
// PIN, and their life cycle (ordered -> personalised -> linked -> active,
// locks, removal). The REST API drives it; every state change is one ledger
// script, so the switch sees it at once.
//
// A digital-first card is a blank plastic copy of a virtual card: a card row
// of its own (type DIGITAL_FIRST, copy_of = the virtual card) sharing the
// virtual card's PAN. The PAN index points at the virtual card, which
// carries the state both share: lock, CVV2 and PIN. Operations on the copy
// are applied to the original, so the two always reflect one condition.
package issuing

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/ledger"
)

// Errors callers branch on (besides the ledger's).
var (
	ErrWrongCardType = errors.New("operation not available for this card type")
	ErrInvalidPIN    = errors.New("PIN must be 4 to 12 digits")
	ErrNoBIN         = errors.New("partner has no BIN")
)

// Service issues and manages cards.
type Service struct {
	Ledger *ledger.Ledger
	Keys   *cardcrypto.Keys
	// Rand is the randomness for PANs and CVV2s (crypto/rand when nil).
	Rand io.Reader
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// ValidityYears is how long a new card is valid (default 3).
	ValidityYears int
	// PANLength is the length of generated PANs (default 16).
	PANLength int
}

// Card is a card as the API shows it: never a PAN, CVV2 or PIN.
type Card struct {
	ID         string           `json:"id"`
	Type       authz.CardType   `json:"type"`
	Status     authz.CardStatus `json:"status"`
	LockReason int              `json:"lockReason"`
	Last4      string           `json:"last4"`
	Expiry     string           `json:"expiry"` // YYYY-MM
	BalanceID  string           `json:"balanceId"`
	CustomerID string           `json:"customerId"`
	CopyOf     string           `json:"copyOf,omitempty"`
	PINSet     bool             `json:"pinSet"`
}

// FullData is the sensitive view, only ever sent JWE-encrypted.
type FullData struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	CardNo string `json:"cardNo"`
	Exp    string `json:"exp"` // YYYY-MM-DD, last day of the month
	CVV    string `json:"cvv"`
}

func (s *Service) rand() io.Reader {
	if s.Rand != nil {
		return s.Rand
	}
	return rand.Reader
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// view builds the API view of a card row; for a copy, state comes from the original.
func view(c, state ledger.Card) Card {
	return Card{
		ID: c.ID, Type: authz.CardType(c.Type), Status: authz.CardStatus(stateStatus(c, state)),
		LockReason: state.LockReason, Last4: c.Last4, Expiry: expiryMonth(c.Expiry),
		BalanceID: c.BalanceID, CustomerID: c.CustomerID, CopyOf: c.CopyOf, PINSet: state.PINVerifier != "",
	}
}

func stateStatus(c, state ledger.Card) string {
	if c.Status == string(authz.StatusRemoved) || state.Status == string(authz.StatusRemoved) {
		return string(authz.StatusRemoved)
	}
	return c.Status
}

// expiryMonth turns YYMM into YYYY-MM.
func expiryMonth(yymm string) string {
	if len(yymm) != 4 {
		return ""
	}
	return "20" + yymm[:2] + "-" + yymm[2:]
}

// expiryDate turns YYMM into the last day of that month, YYYY-MM-DD.
func expiryDate(yymm string) string {
	if len(yymm) != 4 {
		return ""
	}
	var y, m int
	_, _ = fmt.Sscanf("20"+yymm[:2]+" "+yymm[2:], "%d %d", &y, &m)
	last := time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC)
	return last.Format("2006-01-02")
}

// Get returns a card's view.
func (s *Service) Get(ctx context.Context, partnerID, cardID string) (Card, error) {
	c, state, err := s.load(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	return view(c, state), nil
}

// View returns the view of a card row already read (e.g. listed under a balance).
func (s *Service) View(ctx context.Context, c ledger.Card) (Card, error) {
	state := c
	if c.CopyOf != "" {
		o, err := s.Ledger.Card(ctx, c.PartnerID, c.CopyOf)
		if err != nil {
			return Card{}, err
		}
		state = o
	}
	return view(c, state), nil
}

// load returns the card and the row that carries its state (itself, or the
// original of a digital-first copy).
func (s *Service) load(ctx context.Context, partnerID, cardID string) (card, state ledger.Card, err error) {
	card, err = s.Ledger.Card(ctx, partnerID, cardID)
	if err != nil {
		return card, card, err
	}
	state = card
	if card.CopyOf != "" {
		state, err = s.Ledger.Card(ctx, partnerID, card.CopyOf)
		if err != nil {
			return card, state, fmt.Errorf("reading original of digital-first card: %w", err)
		}
	}
	return card, state, nil
}

func (s *Service) newPAN(ctx context.Context, partnerID string) (pan, bin string, err error) {
	p, err := s.Ledger.Row(ctx, partnerID, "partners", partnerID)
	if err != nil {
		return "", "", fmt.Errorf("reading partner: %w", err)
	}
	bin = p["bin"]
	if bin == "" {
		return "", "", ErrNoBIN
	}
	n := s.PANLength
	if n == 0 {
		n = 16
	}
	pan, err = cardcrypto.GeneratePAN(bin, n, s.rand())
	if err != nil {
		return "", "", fmt.Errorf("generating PAN: %w", err)
	}
	return pan, bin, nil
}

func (s *Service) expiry() string {
	years := s.ValidityYears
	if years == 0 {
		years = 3
	}
	// The issue month, years later: AddDate would normalise 29 February
	// into March and give the card a month more.
	now := s.now().UTC()
	return time.Date(now.Year()+years, now.Month(), 1, 0, 0, 0, 0, time.UTC).Format("0601")
}

// issue creates a card row with a fresh, unique PAN and CVV2 under the id
// given (a new one when empty).
func (s *Service) issue(ctx context.Context, id, partnerID, customerID, balanceID string, typ authz.CardType, status authz.CardStatus, delivery string) (ledger.Card, FullData, error) {
	if id == "" {
		id = ledger.NewID("crd")
	}
	for attempt := 0; ; attempt++ {
		pan, bin, err := s.newPAN(ctx, partnerID)
		if err != nil {
			return ledger.Card{}, FullData{}, err
		}
		cvv, err := cardcrypto.NewCVV(s.rand())
		if err != nil {
			return ledger.Card{}, FullData{}, fmt.Errorf("generating CVV2: %w", err)
		}
		panEnc, err := s.Keys.EncryptPAN(pan)
		if err != nil {
			return ledger.Card{}, FullData{}, err
		}
		cvvEnc, err := s.Keys.EncryptCVV(cvv)
		if err != nil {
			return ledger.Card{}, FullData{}, err
		}
		c := ledger.Card{
			ID: id, PartnerID: partnerID, CustomerID: customerID, BalanceID: balanceID,
			Type: string(typ), Status: string(status), PANEnc: panEnc, PANHash: s.Keys.LookupToken(pan),
			BIN: bin, Last4: pan[len(pan)-4:], Expiry: s.expiry(), CVVEnc: cvvEnc, Delivery: delivery,
		}
		err = s.Ledger.CreateCard(ctx, c)
		if errors.Is(err, ledger.ErrPANExists) && attempt < 5 {
			continue // a collision in the BIN's space: draw again
		}
		if err != nil {
			return ledger.Card{}, FullData{}, err
		}
		return c, FullData{ID: c.ID, Type: c.Type, CardNo: pan, Exp: expiryDate(c.Expiry), CVV: cvv}, nil
	}
}

// CreateVirtual issues an active virtual card under a balance and returns
// its view and full data (for the JWE response).
func (s *Service) CreateVirtual(ctx context.Context, partnerID, customerID, balanceID string) (Card, FullData, error) {
	return s.CreateVirtualWithID(ctx, "", partnerID, customerID, balanceID)
}

// CreateVirtualWithID is CreateVirtual under an id chosen beforehand (the
// asynchronous route answers with the id before the card exists).
func (s *Service) CreateVirtualWithID(ctx context.Context, id, partnerID, customerID, balanceID string) (Card, FullData, error) {
	c, full, err := s.issue(ctx, id, partnerID, customerID, balanceID, authz.CardVirtual, authz.StatusActive, "")
	if err != nil {
		return Card{}, FullData{}, fmt.Errorf("creating virtual card: %w", err)
	}
	return view(c, c), full, nil
}

// OrderPhysical orders a plastic card: it exists from now on (its PAN
// declines as not activated) and waits for the bureau.
func (s *Service) OrderPhysical(ctx context.Context, partnerID, customerID, balanceID, deliveryJSON string) (Card, error) {
	c, _, err := s.issue(ctx, "", partnerID, customerID, balanceID, authz.CardPhysical, authz.StatusOrdered, deliveryJSON)
	if err != nil {
		return Card{}, fmt.Errorf("ordering physical card: %w", err)
	}
	return view(c, c), nil
}

func (s *Service) transition(ctx context.Context, partnerID, cardID string, from, to authz.CardStatus, event string) (Card, error) {
	c, err := s.Ledger.Card(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	if err := authz.CheckTransition(authz.CardType(c.Type), authz.CardStatus(c.Status), to); err != nil {
		if authz.CardStatus(c.Status) == authz.StatusRemoved {
			return Card{}, ledger.ErrCardRemoved
		}
		return Card{}, fmt.Errorf("%w: %w", ledger.ErrInvalidTransition, err)
	}
	if _, err := s.Ledger.UpdateCard(ctx, partnerID, cardID, ledger.CardUpdate{From: []string{string(from)}, To: string(to), Event: event}); err != nil {
		return Card{}, err
	}
	return s.Get(ctx, partnerID, cardID)
}

// Personalise records the bureau's report that the plastic is made.
func (s *Service) Personalise(ctx context.Context, partnerID, cardID string) (Card, error) {
	return s.transition(ctx, partnerID, cardID, authz.StatusOrdered, authz.StatusPersonalised, "card_personalise")
}

// Link connects a personalised card with the user and balance; from now on
// the user sees it and can activate it.
func (s *Service) Link(ctx context.Context, partnerID, cardID string) (Card, error) {
	return s.transition(ctx, partnerID, cardID, authz.StatusPersonalised, authz.StatusLinked, "card_link")
}

// Activate activates a linked physical card. Virtual and digital-first
// cards are active from the start (ErrWrongCardType).
func (s *Service) Activate(ctx context.Context, partnerID, cardID string) (Card, error) {
	c, err := s.Ledger.Card(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	if c.Type != string(authz.CardPhysical) {
		return Card{}, fmt.Errorf("activating %s card: %w", c.Type, ErrWrongCardType)
	}
	return s.transition(ctx, partnerID, cardID, authz.StatusLinked, authz.StatusActive, "card_activate")
}

// Print orders a digital-first plastic copy of a virtual card: same PAN,
// no activation needed.
func (s *Service) Print(ctx context.Context, partnerID, cardID, deliveryJSON string) (Card, error) {
	orig, err := s.Ledger.Card(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	if orig.Type != string(authz.CardVirtual) {
		return Card{}, fmt.Errorf("printing %s card: %w", orig.Type, ErrWrongCardType)
	}
	if orig.Status == string(authz.StatusRemoved) {
		return Card{}, ledger.ErrCardRemoved
	}
	if authz.LockReason(orig.LockReason).Irreversible() {
		// A lost, stolen, inactive or replaced card gets no new plastic.
		return Card{}, fmt.Errorf("printing card locked with reason %d: %w", orig.LockReason, ledger.ErrLockIrreversible)
	}
	c := ledger.Card{
		ID: ledger.NewID("crd"), PartnerID: partnerID, CustomerID: orig.CustomerID, BalanceID: orig.BalanceID,
		Type: string(authz.CardDigitalFirst), Status: string(authz.StatusActive), PANEnc: orig.PANEnc,
		PANHash: orig.PANHash, BIN: orig.BIN, Last4: orig.Last4, Expiry: orig.Expiry, CopyOf: orig.ID,
		Delivery: deliveryJSON,
	}
	if err := s.Ledger.CreateCard(ctx, c); err != nil {
		return Card{}, fmt.Errorf("printing virtual card: %w", err)
	}
	return view(c, orig), nil
}

// stateID is the card whose row carries the shared state.
func stateID(c ledger.Card) string {
	if c.CopyOf != "" {
		return c.CopyOf
	}
	return c.ID
}

// Lock locks a card (reasons 1-8); source is CUSTOMER, PARTNER, ADMIN or NETWORK.
func (s *Service) Lock(ctx context.Context, partnerID, cardID string, reason authz.LockReason, source string) (Card, error) {
	if !reason.Valid() {
		return Card{}, fmt.Errorf("locking card: reason %d not in 1-8", int(reason))
	}
	c, err := s.Ledger.Card(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	if c.Status == string(authz.StatusRemoved) {
		return Card{}, ledger.ErrCardRemoved
	}
	if err := s.Ledger.LockCard(ctx, partnerID, stateID(c), int(reason), source); err != nil {
		return Card{}, err
	}
	return s.Get(ctx, partnerID, cardID)
}

// Unlock removes a reversible lock (ledger.ErrLockIrreversible for 1, 2, 5, 8).
func (s *Service) Unlock(ctx context.Context, partnerID, cardID string) (Card, error) {
	c, err := s.Ledger.Card(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	if c.Status == string(authz.StatusRemoved) {
		return Card{}, ledger.ErrCardRemoved
	}
	if _, err := s.Ledger.UnlockCard(ctx, partnerID, stateID(c)); err != nil {
		return Card{}, err
	}
	return s.Get(ctx, partnerID, cardID)
}

// Remove removes a card for good. Removing a virtual card removes its
// digital-first copies too, since they share its PAN.
func (s *Service) Remove(ctx context.Context, partnerID, cardID string) error {
	c, err := s.Ledger.Card(ctx, partnerID, cardID)
	if err != nil {
		return err
	}
	if err := s.Ledger.RemoveCard(ctx, partnerID, cardID); err != nil {
		return err
	}
	if c.Type == string(authz.CardVirtual) {
		siblings, err := s.Ledger.CardsOfBalance(ctx, partnerID, c.BalanceID)
		if err != nil {
			return err
		}
		for _, sib := range siblings {
			if sib.CopyOf == c.ID && sib.Status != string(authz.StatusRemoved) {
				if err := s.Ledger.RemoveCard(ctx, partnerID, sib.ID); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// FullData decrypts a card's PAN and CVV2 for the JWE response.
func (s *Service) FullData(ctx context.Context, partnerID, cardID string) (FullData, error) {
	c, state, err := s.load(ctx, partnerID, cardID)
	if err != nil {
		return FullData{}, err
	}
	if c.Status == string(authz.StatusRemoved) {
		return FullData{}, ledger.ErrCardRemoved
	}
	pan, err := s.Keys.DecryptPAN(c.PANEnc)
	if err != nil {
		return FullData{}, fmt.Errorf("reading card data: %w", err)
	}
	cvv, err := s.Keys.DecryptCVV(state.CVVEnc)
	if err != nil {
		return FullData{}, fmt.Errorf("reading card data: %w", err)
	}
	return FullData{ID: c.ID, Type: c.Type, CardNo: pan, Exp: expiryDate(c.Expiry), CVV: cvv}, nil
}

// ResetCVV gives a virtual or digital-first card a new CVV2; the old one
// stops working at once.
func (s *Service) ResetCVV(ctx context.Context, partnerID, cardID string) (FullData, error) {
	c, state, err := s.load(ctx, partnerID, cardID)
	if err != nil {
		return FullData{}, err
	}
	if c.Status == string(authz.StatusRemoved) {
		return FullData{}, ledger.ErrCardRemoved
	}
	if !authz.CardType(c.Type).CanResetCVV() {
		return FullData{}, fmt.Errorf("resetting CVV of %s card: %w", c.Type, ErrWrongCardType)
	}
	old, err := s.Keys.DecryptCVV(state.CVVEnc)
	if err != nil {
		return FullData{}, fmt.Errorf("reading current CVV2: %w", err)
	}
	// A reset always changes the CVV2: the holder asks for one because the
	// old one may be known to someone else.
	var cvv string
	for cvv == "" || cardcrypto.CVVEqual(cvv, old) {
		if cvv, err = cardcrypto.NewCVV(s.rand()); err != nil {
			return FullData{}, fmt.Errorf("generating CVV2: %w", err)
		}
	}
	enc, err := s.Keys.EncryptCVV(cvv)
	if err != nil {
		return FullData{}, err
	}
	if _, err := s.Ledger.UpdateCard(ctx, partnerID, stateID(c), ledger.CardUpdate{Event: "card_cvv_reset", Set: map[string]string{"cvv_enc": enc}}); err != nil {
		return FullData{}, err
	}
	return s.FullData(ctx, partnerID, cardID)
}

// SetPIN sets the PIN of a physical or digital-first card; only its keyed
// verifier is stored, and the wrong-PIN count starts again.
func (s *Service) SetPIN(ctx context.Context, partnerID, cardID, pin string) error {
	if !cardcrypto.ValidPIN(pin) {
		return ErrInvalidPIN
	}
	c, err := s.Ledger.Card(ctx, partnerID, cardID)
	if err != nil {
		return err
	}
	if c.Status == string(authz.StatusRemoved) {
		return ledger.ErrCardRemoved
	}
	if !authz.CardType(c.Type).CanSetPIN() {
		return fmt.Errorf("setting PIN of %s card: %w", c.Type, ErrWrongCardType)
	}
	pan, err := s.Keys.DecryptPAN(c.PANEnc)
	if err != nil {
		return fmt.Errorf("setting PIN: %w", err)
	}
	_, err = s.Ledger.UpdateCard(ctx, partnerID, stateID(c), ledger.CardUpdate{Event: "card_pin_set",
		Set: map[string]string{"pin_verifier": s.Keys.PINVerifier(pan, pin), "pin_tries": "0"}})
	return err
}

// VerifyCVV reports whether cvv is the card's current CVV2 (used by the
// switch when a request carries one, and by tests of a CVV reset).
func (s *Service) VerifyCVV(ctx context.Context, partnerID, cardID, cvv string) (bool, error) {
	_, state, err := s.load(ctx, partnerID, cardID)
	if err != nil {
		return false, err
	}
	cur, err := s.Keys.DecryptCVV(state.CVVEnc)
	if err != nil {
		return false, err
	}
	return cardcrypto.CVVEqual(cur, cvv), nil
}
