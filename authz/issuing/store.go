package issuing

import (
	"context"
	"errors"
	"time"

	"github.com/antaca/antaca/authz"
)

// Store is what the service needs of the state it changes: card rows and
// the partner's program, each change one atomic step. Package ledger
// implements it; its Card, CardUpdate, Replacement and Partner are the
// types below.
type Store interface {
	// Partner reads a partner program (an error wrapping a not-found
	// sentinel when absent).
	Partner(ctx context.Context, partnerID string) (Partner, error)
	// Program reads a program (an error wrapping ErrProgramNotFound when
	// absent).
	Program(ctx context.Context, partnerID, programID string) (authz.Program, error)
	// BalanceCurrency is the currency of a user balance.
	BalanceCurrency(ctx context.Context, partnerID, balanceID string) (string, error)
	// Card reads a card row.
	Card(ctx context.Context, partnerID, id string) (CardRecord, error)
	// CardsOfBalance lists the cards issued under a user balance.
	CardsOfBalance(ctx context.Context, partnerID, balanceID string) ([]CardRecord, error)
	// CreateCard stores a new card; ErrPANExists when its PAN token is
	// taken (a copy, CopyOf set, shares its original's PAN).
	CreateCard(ctx context.Context, c CardRecord) error
	// UpdateCard moves a card through its life cycle and/or sets columns;
	// it returns the previous status.
	UpdateCard(ctx context.Context, partnerID, id string, u CardUpdate) (string, error)
	// ActivateCard activates a linked physical card, locking the card it
	// replaces when that was kept working (its id is returned).
	ActivateCard(ctx context.Context, partnerID, id, source string) (string, error)
	// LockCardFrom locks a card (reason 1-8) and returns the lock in force.
	LockCardFrom(ctx context.Context, partnerID, id string, reason int, source, reference string) (int, error)
	// UnlockCard removes a reversible lock (authz.ErrLockIrreversible
	// otherwise) and returns the lock in force.
	UnlockCard(ctx context.Context, partnerID, id string) (int, error)
	// RemoveCard removes a card for good.
	RemoveCard(ctx context.Context, partnerID, id string) error
	// ReplaceCard issues r.New and marks the old card replaced in one
	// step; it returns the old card's lock in force.
	ReplaceCard(ctx context.Context, partnerID string, r Replacement) (int, error)
}

// Errors a Store returns that the service branches on or passes on.
var (
	ErrCardRemoved     = errors.New("card is removed")
	ErrPANExists       = errors.New("PAN already issued")
	ErrCardReplaced    = errors.New("card already replaced")
	ErrProgramNotFound = errors.New("program not found")
)

// Partner is a card program: its BIN, currency and funding model.
type Partner struct {
	ID           string
	Name         string
	BIN          string
	Currency     string
	FundingModel string
	// DigitalFirst lets the program print digital-first plastic copies
	// of its virtual cards.
	DigitalFirst bool
	// CreatedAt is when the partner was created (zero for one not read
	// from the store).
	CreatedAt time.Time
}

// CardRecord is a card row as the store keeps it. It holds no PAN, CVV or
// PIN in clear: PANEnc and CVVEnc are ciphertexts, PANHash the lookup
// token, PINVerifier one-way.
type CardRecord struct {
	ID, PartnerID, CustomerID, BalanceID string
	Type, Status                         string
	LockReason                           int
	LockSource                           string
	PANEnc, PANHash, BIN, Last4, Expiry  string
	CVVEnc, PINVerifier                  string
	PINTries                             int
	CopyOf                               string
	Delivery                             string
	// DeliveryState is ORDERED while a digital-first plastic waits for
	// the bureau and PRODUCED once it is made ("" for other cards).
	DeliveryState string
	// LockRef is the requester's reference of a lock from outside.
	LockRef string
	// Replaces is the card this one replaces; ReplacedBy, on the old
	// card, its replacement.
	Replaces, ReplacedBy string
	// ProgramID is the card's program ("": the partner's default program,
	// authz.DefaultProgramID); Controls its own spend controls (JSON, "":
	// the program's).
	ProgramID, Controls string
	// BalanceCurrency is filled when the card is found by its PAN.
	BalanceCurrency string
	// Version is the row's version (v), bumped by every change.
	Version int64
}

// CardUpdate moves a card through its life cycle and/or sets columns
// (cvv_enc, pin_verifier, pin_tries, delivery, expiry, delivery_state).
type CardUpdate struct {
	From  []string // allowed current statuses; empty: any but REMOVED
	To    string   // new status; empty: unchanged
	Event string   // journal event type
	Set   map[string]string
}

// Replacement is a new card replacing an old one (Store.ReplaceCard). The
// new card's customer and balance are the old card's.
type Replacement struct {
	OldID string
	// New is the new card: ID, Type (the old card's), Status, PAN and
	// CVV2 ciphertexts and lookup token, BIN, Last4, Expiry, Delivery,
	// DeliveryState. Its other fields are ignored.
	New CardRecord
	// KeepOld leaves the old card working until the new one is activated
	// (ActivateCard locks it then); otherwise it is locked with reason 8
	// at once.
	KeepOld bool
	// Source is who ordered the replacement (CUSTOMER, PARTNER, ADMIN),
	// recorded as the old card's lock source.
	Source string
}
