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
// Only programs registered for digital first (the partner's digital_first
// flag) print copies; the plastic goes to the personalisation bureau blank
// (no data imprinted), and its delivery state is on the copy's row.
//
// A replacement is a new card of the same type under the same balance that
// takes the old card's place: the old card is locked with reason 8 in the
// same ledger step, or, for a physical replacement asked so, when the new
// plastic is activated.
package issuing

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/cardcrypto"
)

// Errors callers branch on (besides the ledger's).
var (
	ErrWrongCardType = errors.New("operation not available for this card type")
	ErrInvalidPIN    = errors.New("PIN must be 4 to 12 digits")
	ErrNoBIN         = errors.New("partner has no BIN")
	// ErrNotDigitalFirst: the program is not registered for digital
	// first, so its virtual cards get no plastic copy.
	ErrNotDigitalFirst = errors.New("partner program is not registered for digital first")
	// ErrCardTypeNotInProgram: the program does not issue that card type.
	ErrCardTypeNotInProgram = errors.New("the program does not issue this card type")
	// ErrProgramCurrency: the balance is not in the program's currency.
	ErrProgramCurrency = errors.New("the balance is not in the program's currency")
)

// Delivery states of a plastic, as the card view shows them.
const (
	DeliveryOrdered  = "ORDERED"  // waiting for the personalisation bureau
	DeliveryProduced = "PRODUCED" // made by the bureau and sent out
)

// Service issues and manages cards.
type Service struct {
	Store Store
	Keys  *cardcrypto.Keys
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
	ProgramID  string           `json:"programId,omitempty"`
	CustomerID string           `json:"customerId"`
	CopyOf     string           `json:"copyOf,omitempty"`
	PINSet     bool             `json:"pinSet"`
	// DeliveryState of a plastic (physical or digital-first): ORDERED
	// or PRODUCED. Absent for virtual cards.
	DeliveryState string `json:"deliveryState,omitempty"`
	// LockSource says who locked the card (CUSTOMER, PARTNER, ADMIN,
	// NETWORK, ACQUIRER) and LockReference the requester's reference of
	// a lock from outside; both absent when the card is not locked.
	LockSource    string `json:"lockSource,omitempty"`
	LockReference string `json:"lockReference,omitempty"`
	// Replaces is the card this one replaces; ReplacedBy its replacement.
	Replaces   string `json:"replaces,omitempty"`
	ReplacedBy string `json:"replacedBy,omitempty"`
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
func view(c, state CardRecord) Card {
	v := Card{
		ID: c.ID, Type: authz.CardType(c.Type), Status: authz.CardStatus(stateStatus(c, state)),
		LockReason: state.LockReason, Last4: c.Last4, Expiry: expiryMonth(c.Expiry),
		BalanceID: c.BalanceID, ProgramID: authz.ProgramOfCard(c.PartnerID, c.ProgramID), CustomerID: c.CustomerID, CopyOf: c.CopyOf, PINSet: state.PINVerifier != "",
		DeliveryState: deliveryState(c), Replaces: c.Replaces, ReplacedBy: c.ReplacedBy,
	}
	if state.LockReason != 0 {
		v.LockSource, v.LockReference = state.LockSource, state.LockRef
	}
	return v
}

// deliveryState is where a plastic is: a physical card's follows its life
// cycle, a digital-first copy's is on its row.
func deliveryState(c CardRecord) string {
	switch authz.CardType(c.Type) {
	case authz.CardPhysical:
		if c.Status == string(authz.StatusOrdered) {
			return DeliveryOrdered
		}
		return DeliveryProduced
	case authz.CardDigitalFirst:
		return c.DeliveryState
	}
	return ""
}

// WaitsForBureau reports whether a card's plastic is still to be made: an
// ordered physical card, or a digital-first copy not yet produced.
func WaitsForBureau(c CardRecord) bool {
	switch authz.CardType(c.Type) {
	case authz.CardPhysical:
		return c.Status == string(authz.StatusOrdered)
	case authz.CardDigitalFirst:
		return c.Status != string(authz.StatusRemoved) && c.DeliveryState == DeliveryOrdered
	}
	return false
}

func stateStatus(c, state CardRecord) string {
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
func (s *Service) View(ctx context.Context, c CardRecord) (Card, error) {
	state := c
	if c.CopyOf != "" {
		o, err := s.Store.Card(ctx, c.PartnerID, c.CopyOf)
		if err != nil {
			return Card{}, err
		}
		state = o
	}
	return view(c, state), nil
}

// load returns the card and the row that carries its state (itself, or the
// original of a digital-first copy).
func (s *Service) load(ctx context.Context, partnerID, cardID string) (card, state CardRecord, err error) {
	card, err = s.Store.Card(ctx, partnerID, cardID)
	if err != nil {
		return card, card, err
	}
	state = card
	if card.CopyOf != "" {
		state, err = s.Store.Card(ctx, partnerID, card.CopyOf)
		if err != nil {
			return card, state, fmt.Errorf("reading original of digital-first card: %w", err)
		}
	}
	return card, state, nil
}

// program resolves the program a card is issued under: the one named,
// else the partner's default program. ok is false for a partner that has
// no program at all (no BIN).
func (s *Service) program(ctx context.Context, partnerID, programID string) (p authz.Program, ok bool, err error) {
	named := programID != ""
	p, err = s.Store.Program(ctx, partnerID, authz.ProgramOfCard(partnerID, programID))
	if errors.Is(err, ErrProgramNotFound) && !named {
		return p, false, nil
	}
	if err != nil {
		return p, false, err
	}
	return p, true, nil
}

// newPAN draws a PAN from one of the program's ranges (a random range, a
// random prefix in it), or from the partner's BIN when it has no program.
func (s *Service) newPAN(ctx context.Context, partnerID, programID string) (pan, bin string, err error) {
	n := s.PANLength
	if n == 0 {
		n = 16
	}
	p, ok, err := s.program(ctx, partnerID, programID)
	if err != nil {
		return "", "", err
	}
	if ok && len(p.Ranges) > 0 {
		prefix, err := randomPrefix(s.rand(), p.Ranges)
		if err != nil {
			return "", "", fmt.Errorf("drawing a BIN: %w", err)
		}
		pan, err = cardcrypto.GeneratePAN(prefix, n, s.rand())
		if err != nil {
			return "", "", fmt.Errorf("generating PAN: %w", err)
		}
		return pan, prefix, nil
	}
	partner, err := s.Store.Partner(ctx, partnerID)
	if err != nil {
		return "", "", fmt.Errorf("reading partner: %w", err)
	}
	bin = partner.BIN
	if bin == "" {
		return "", "", ErrNoBIN
	}
	pan, err = cardcrypto.GeneratePAN(bin, n, s.rand())
	if err != nil {
		return "", "", fmt.Errorf("generating PAN: %w", err)
	}
	return pan, bin, nil
}

// randomPrefix picks a range, then a prefix within it, uniformly.
func randomPrefix(r io.Reader, ranges []authz.BINRange) (string, error) {
	i, err := rand.Int(r, big.NewInt(int64(len(ranges))))
	if err != nil {
		return "", err
	}
	rg := ranges[i.Int64()]
	from, _ := new(big.Int).SetString(rg.From, 10)
	to, _ := new(big.Int).SetString(rg.To, 10)
	if from == nil || to == nil {
		return "", fmt.Errorf("range %s-%s is not numeric", rg.From, rg.To)
	}
	off, err := rand.Int(r, new(big.Int).Add(new(big.Int).Sub(to, from), big.NewInt(1)))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%0*s", len(rg.From), new(big.Int).Add(from, off).String()), nil
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

// draw makes the card data of a new card: a fresh PAN under the partner's
// BIN, a CVV2, their ciphertexts and lookup token, and the expiry.
func (s *Service) draw(ctx context.Context, partnerID, programID string) (c CardRecord, pan, cvv string, err error) {
	pan, bin, err := s.newPAN(ctx, partnerID, programID)
	if err != nil {
		return c, "", "", err
	}
	if cvv, err = cardcrypto.NewCVV(s.rand()); err != nil {
		return c, "", "", fmt.Errorf("generating CVV2: %w", err)
	}
	panEnc, err := s.Keys.EncryptPAN(pan)
	if err != nil {
		return c, "", "", err
	}
	cvvEnc, err := s.Keys.EncryptCVV(cvv)
	if err != nil {
		return c, "", "", err
	}
	return CardRecord{PartnerID: partnerID, PANEnc: panEnc, PANHash: s.Keys.LookupToken(pan), BIN: bin,
		Last4: pan[len(pan)-4:], Expiry: s.expiry(), CVVEnc: cvvEnc, ProgramID: programID}, pan, cvv, nil
}

// issue creates a card row with a fresh, unique PAN and CVV2 under the id
// given (a new one when empty).
func (s *Service) issue(ctx context.Context, id, programID, partnerID, customerID, balanceID string, typ authz.CardType, status authz.CardStatus, delivery string) (CardRecord, FullData, error) {
	if id == "" {
		id = authz.NewID("crd")
	}
	if p, ok, err := s.program(ctx, partnerID, programID); err != nil {
		return CardRecord{}, FullData{}, err
	} else if ok && !p.Issues(typ) {
		return CardRecord{}, FullData{}, fmt.Errorf("program %s issues no %s cards: %w", p.ID, typ, ErrCardTypeNotInProgram)
	} else if ok && programID != "" {
		cur, err := s.Store.BalanceCurrency(ctx, partnerID, balanceID)
		if err != nil {
			return CardRecord{}, FullData{}, err
		}
		if cur != p.Currency {
			return CardRecord{}, FullData{}, fmt.Errorf("balance in %s, program in %s: %w", cur, p.Currency, ErrProgramCurrency)
		}
	}
	for attempt := 0; ; attempt++ {
		c, pan, cvv, err := s.draw(ctx, partnerID, programID)
		if err != nil {
			return CardRecord{}, FullData{}, err
		}
		c.ID, c.CustomerID, c.BalanceID = id, customerID, balanceID
		c.Type, c.Status, c.Delivery = string(typ), string(status), delivery
		err = s.Store.CreateCard(ctx, c)
		if errors.Is(err, ErrPANExists) && attempt < 5 {
			continue // a collision in the BIN's space: draw again
		}
		if err != nil {
			return CardRecord{}, FullData{}, err
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
	return s.CreateVirtualIn(ctx, id, "", partnerID, customerID, balanceID)
}

// CreateVirtualIn is CreateVirtualWithID under a program ("": the
// partner's default program).
func (s *Service) CreateVirtualIn(ctx context.Context, id, programID, partnerID, customerID, balanceID string) (Card, FullData, error) {
	c, full, err := s.issue(ctx, id, programID, partnerID, customerID, balanceID, authz.CardVirtual, authz.StatusActive, "")
	if err != nil {
		return Card{}, FullData{}, fmt.Errorf("creating virtual card: %w", err)
	}
	return view(c, c), full, nil
}

// OrderPhysical orders a plastic card: it exists from now on (its PAN
// declines as not activated) and waits for the bureau.
func (s *Service) OrderPhysical(ctx context.Context, partnerID, customerID, balanceID, deliveryJSON string) (Card, error) {
	return s.OrderPhysicalIn(ctx, "", partnerID, customerID, balanceID, deliveryJSON)
}

// OrderPhysicalIn is OrderPhysical under a program ("": the partner's
// default program).
func (s *Service) OrderPhysicalIn(ctx context.Context, programID, partnerID, customerID, balanceID, deliveryJSON string) (Card, error) {
	c, _, err := s.issue(ctx, "", programID, partnerID, customerID, balanceID, authz.CardPhysical, authz.StatusOrdered, deliveryJSON)
	if err != nil {
		return Card{}, fmt.Errorf("ordering physical card: %w", err)
	}
	return view(c, c), nil
}

func (s *Service) transition(ctx context.Context, partnerID, cardID string, from, to authz.CardStatus, event string) (Card, error) {
	c, err := s.Store.Card(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	if err := authz.CheckTransition(authz.CardType(c.Type), authz.CardStatus(c.Status), to); err != nil {
		if authz.CardStatus(c.Status) == authz.StatusRemoved {
			return Card{}, ErrCardRemoved
		}
		return Card{}, fmt.Errorf("%w: %w", authz.ErrInvalidTransition, err)
	}
	if _, err := s.Store.UpdateCard(ctx, partnerID, cardID, CardUpdate{From: []string{string(from)}, To: string(to), Event: event}); err != nil {
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
// cards are active from the start (ErrWrongCardType). When the card
// replaces one that was kept working until now, that card is locked with
// reason 8 in the same step, with source (who activates) as its lock source.
func (s *Service) Activate(ctx context.Context, partnerID, cardID, source string) (Card, error) {
	c, err := s.Store.Card(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	if c.Type != string(authz.CardPhysical) {
		return Card{}, fmt.Errorf("activating %s card: %w", c.Type, ErrWrongCardType)
	}
	if err := authz.CheckTransition(authz.CardType(c.Type), authz.CardStatus(c.Status), authz.StatusActive); err != nil {
		if authz.CardStatus(c.Status) == authz.StatusRemoved {
			return Card{}, ErrCardRemoved
		}
		return Card{}, fmt.Errorf("%w: %w", authz.ErrInvalidTransition, err)
	}
	if _, err := s.Store.ActivateCard(ctx, partnerID, cardID, source); err != nil {
		return Card{}, err
	}
	return s.Get(ctx, partnerID, cardID)
}

// Produced records the bureau's report that a digital-first plastic is
// made (delivery state PRODUCED). Reporting it again changes nothing.
func (s *Service) Produced(ctx context.Context, partnerID, cardID string) (Card, error) {
	c, err := s.Store.Card(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	if c.Type != string(authz.CardDigitalFirst) {
		return Card{}, fmt.Errorf("producing %s card as digital first: %w", c.Type, ErrWrongCardType)
	}
	if c.Status == string(authz.StatusRemoved) {
		return Card{}, ErrCardRemoved
	}
	if c.DeliveryState == DeliveryOrdered {
		if _, err := s.Store.UpdateCard(ctx, partnerID, cardID, CardUpdate{Event: "card_produce",
			Set: map[string]string{"delivery_state": DeliveryProduced}}); err != nil {
			return Card{}, err
		}
	}
	return s.Get(ctx, partnerID, cardID)
}

// DigitalFirst reports whether a partner's default program may print
// digital-first copies.
func (s *Service) DigitalFirst(ctx context.Context, partnerID string) (bool, error) {
	return s.digitalFirst(ctx, partnerID, "")
}

// digitalFirst reports whether a card's program may print digital-first
// copies (a partner without programs: its own flag).
func (s *Service) digitalFirst(ctx context.Context, partnerID, programID string) (bool, error) {
	if prg, ok, err := s.program(ctx, partnerID, programID); err != nil {
		return false, err
	} else if ok {
		return prg.DigitalFirst, nil
	}
	p, err := s.Store.Partner(ctx, partnerID)
	if err != nil {
		return false, fmt.Errorf("reading partner: %w", err)
	}
	return p.DigitalFirst, nil
}

// Print orders a digital-first plastic copy of a virtual card: same PAN,
// usable at once without activation, its plastic ordered blank from the
// bureau (delivery state ORDERED). ErrNotDigitalFirst outside a
// digital-first program.
func (s *Service) Print(ctx context.Context, partnerID, cardID, deliveryJSON string) (Card, error) {
	orig, err := s.Store.Card(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	df, err := s.digitalFirst(ctx, partnerID, orig.ProgramID)
	if err != nil {
		return Card{}, err
	}
	if !df {
		return Card{}, fmt.Errorf("printing card: %w", ErrNotDigitalFirst)
	}
	if orig.Type != string(authz.CardVirtual) {
		return Card{}, fmt.Errorf("printing %s card: %w", orig.Type, ErrWrongCardType)
	}
	if orig.Status == string(authz.StatusRemoved) {
		return Card{}, ErrCardRemoved
	}
	if authz.LockReason(orig.LockReason).Irreversible() {
		// A lost, stolen, inactive or replaced card gets no new plastic.
		return Card{}, fmt.Errorf("printing card locked with reason %d: %w", orig.LockReason, authz.ErrLockIrreversible)
	}
	c := CardRecord{
		ID: authz.NewID("crd"), PartnerID: partnerID, CustomerID: orig.CustomerID, BalanceID: orig.BalanceID,
		Type: string(authz.CardDigitalFirst), Status: string(authz.StatusActive), PANEnc: orig.PANEnc,
		PANHash: orig.PANHash, BIN: orig.BIN, Last4: orig.Last4, Expiry: orig.Expiry, CopyOf: orig.ID,
		Delivery: deliveryJSON, DeliveryState: DeliveryOrdered, ProgramID: orig.ProgramID,
	}
	if err := s.Store.CreateCard(ctx, c); err != nil {
		return Card{}, fmt.Errorf("printing virtual card: %w", err)
	}
	return view(c, orig), nil
}

// stateID is the card whose row carries the shared state.
func stateID(c CardRecord) string {
	if c.CopyOf != "" {
		return c.CopyOf
	}
	return c.ID
}

// Lock locks a card (reasons 1-8); source is CUSTOMER, PARTNER, ADMIN or NETWORK.
func (s *Service) Lock(ctx context.Context, partnerID, cardID string, reason authz.LockReason, source string) (Card, error) {
	return s.LockFrom(ctx, partnerID, cardID, reason, source, "")
}

// LockFrom is Lock recording the requester's reference, for a lock from
// outside (source NETWORK or ACQUIRER). A lock on a digital-first copy is
// a lock on its virtual card, and the other way round.
func (s *Service) LockFrom(ctx context.Context, partnerID, cardID string, reason authz.LockReason, source, reference string) (Card, error) {
	if !reason.Valid() {
		return Card{}, fmt.Errorf("locking card: reason %d not in 1-8", int(reason))
	}
	c, err := s.Store.Card(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	if c.Status == string(authz.StatusRemoved) {
		return Card{}, ErrCardRemoved
	}
	if _, err := s.Store.LockCardFrom(ctx, partnerID, stateID(c), int(reason), source, reference); err != nil {
		return Card{}, err
	}
	return s.Get(ctx, partnerID, cardID)
}

// Unlock removes a reversible lock (authz.ErrLockIrreversible for 1, 2, 5, 8).
func (s *Service) Unlock(ctx context.Context, partnerID, cardID string) (Card, error) {
	c, err := s.Store.Card(ctx, partnerID, cardID)
	if err != nil {
		return Card{}, err
	}
	if c.Status == string(authz.StatusRemoved) {
		return Card{}, ErrCardRemoved
	}
	if _, err := s.Store.UnlockCard(ctx, partnerID, stateID(c)); err != nil {
		return Card{}, err
	}
	return s.Get(ctx, partnerID, cardID)
}

// Remove removes a card for good. Removing a virtual card removes its
// digital-first copies too, since they share its PAN.
func (s *Service) Remove(ctx context.Context, partnerID, cardID string) error {
	c, err := s.Store.Card(ctx, partnerID, cardID)
	if err != nil {
		return err
	}
	if err := s.Store.RemoveCard(ctx, partnerID, cardID); err != nil {
		return err
	}
	if c.Type == string(authz.CardVirtual) {
		siblings, err := s.Store.CardsOfBalance(ctx, partnerID, c.BalanceID)
		if err != nil {
			return err
		}
		for _, sib := range siblings {
			if sib.CopyOf == c.ID && sib.Status != string(authz.StatusRemoved) {
				if err := s.Store.RemoveCard(ctx, partnerID, sib.ID); err != nil {
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
		return FullData{}, ErrCardRemoved
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
		return FullData{}, ErrCardRemoved
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
	if _, err := s.Store.UpdateCard(ctx, partnerID, stateID(c), CardUpdate{Event: "card_cvv_reset", Set: map[string]string{"cvv_enc": enc}}); err != nil {
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
	c, err := s.Store.Card(ctx, partnerID, cardID)
	if err != nil {
		return err
	}
	if c.Status == string(authz.StatusRemoved) {
		return ErrCardRemoved
	}
	if !authz.CardType(c.Type).CanSetPIN() {
		return fmt.Errorf("setting PIN of %s card: %w", c.Type, ErrWrongCardType)
	}
	pan, err := s.Keys.DecryptPAN(c.PANEnc)
	if err != nil {
		return fmt.Errorf("setting PIN: %w", err)
	}
	_, err = s.Store.UpdateCard(ctx, partnerID, stateID(c), CardUpdate{Event: "card_pin_set",
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

// Replaced is the answer to a replacement: the new card's view, its full
// data (only ever sent JWE-encrypted) and the old card's view after.
type Replaced struct {
	Card Card
	Full FullData
	Old  Card
}

// Replace issues a new card of the old card's type under the same balance
// and marks the old one replaced, in one ledger step: the old card is
// locked with reason 8 at once, or, for a physical card with keepOld,
// when the new plastic is activated. A physical replacement is ORDERED and
// goes through the bureau (deliveryJSON is its address; "" keeps the old
// card's). A digital-first copy is not replaced (ErrWrongCardType):
// replace its virtual card, whose copies share its PAN. Errors:
// ErrCardReplaced when the card was replaced before, ErrCardRemoved.
func (s *Service) Replace(ctx context.Context, partnerID, cardID string, keepOld bool, deliveryJSON, source string) (Replaced, error) {
	old, err := s.Store.Card(ctx, partnerID, cardID)
	if err != nil {
		return Replaced{}, err
	}
	switch {
	case old.Status == string(authz.StatusRemoved):
		return Replaced{}, ErrCardRemoved
	case old.CopyOf != "" || old.Type == string(authz.CardDigitalFirst):
		return Replaced{}, fmt.Errorf("replacing a digital-first copy (replace its virtual card): %w", ErrWrongCardType)
	case old.ReplacedBy != "":
		return Replaced{}, fmt.Errorf("replacing card: %w", ErrCardReplaced)
	}
	status := authz.StatusActive
	if old.Type == string(authz.CardPhysical) {
		status = authz.StatusOrdered
		if deliveryJSON == "" {
			deliveryJSON = old.Delivery
		}
	} else {
		deliveryJSON = ""
		keepOld = false // a virtual card is active at once: nothing to wait for
	}
	id := authz.NewID("crd")
	for attempt := 0; ; attempt++ {
		c, pan, cvv, err := s.draw(ctx, partnerID, old.ProgramID)
		if err != nil {
			return Replaced{}, err
		}
		c.ID, c.CustomerID, c.BalanceID = id, old.CustomerID, old.BalanceID
		c.Type, c.Status, c.Delivery = old.Type, string(status), deliveryJSON
		_, err = s.Store.ReplaceCard(ctx, partnerID, Replacement{OldID: old.ID, New: c, KeepOld: keepOld, Source: source})
		if errors.Is(err, ErrPANExists) && attempt < 5 {
			continue // a collision in the BIN's space: draw again
		}
		if err != nil {
			return Replaced{}, err
		}
		nv, err := s.Get(ctx, partnerID, id)
		if err != nil {
			return Replaced{}, err
		}
		ov, err := s.Get(ctx, partnerID, old.ID)
		if err != nil {
			return Replaced{}, err
		}
		return Replaced{Card: nv, Full: FullData{ID: id, Type: c.Type, CardNo: pan, Exp: expiryDate(c.Expiry), CVV: cvv}, Old: ov}, nil
	}
}
