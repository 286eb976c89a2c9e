package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
)

// The card rules live in package authz; the scripts apply them again
// inside their atomic steps. These tests run both over every case and fail
// when they differ, so that authz stays the one source of the rules.

// TestCardGuardAgreesWithAuthz: the reservation script's card guard
// (card_refusal) declines exactly as authz.CheckCard does, for every
// status, lock reason and expiry, bar the expiry itself, which only the
// engine checks (on the card it read; the script guards the version).
func TestCardGuardAgreesWithAuthz(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	p := newProgram(t, l, ledger.FundingCredit, 10_000, 1_000)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	statuses := []authz.CardStatus{authz.StatusOrdered, authz.StatusPersonalised, authz.StatusLinked, authz.StatusActive, authz.StatusRemoved}
	expiries := map[string]string{"valid": "3012", "expired": "2510"}
	n := 0
	for _, status := range statuses {
		for lock := authz.LockNone; lock <= authz.LockReplaced; lock++ {
			for name, expiry := range expiries {
				n++
				card := ledger.Card{ID: fmt.Sprintf("crd_guard_%d", n), PartnerID: p.partner, CustomerID: p.customer, BalanceID: p.balances[0],
					Type: string(authz.CardPhysical), Status: string(status), PANHash: fmt.Sprintf("guard%d", n), Last4: "0000", Expiry: expiry}
				if status == authz.StatusRemoved {
					card.Status = string(authz.StatusActive) // removed below, after its lock
				}
				must(t, l.CreateCard(ctx, card))
				if lock != authz.LockNone {
					must(t, l.LockCard(ctx, p.partner, card.ID, int(lock), "ADMIN"))
				}
				if status == authz.StatusRemoved {
					must(t, l.RemoveCard(ctx, p.partner, card.ID))
				}
				info := authz.CardInfo{Status: status, Lock: lock, Expiry: expiry}
				want := authz.CheckCard(info, "", now)
				if want == authz.ReasonExpiredCard {
					info.Expiry = expiries["valid"]
					want = authz.CheckCard(info, "", now)
				}
				if want == "" {
					want = authz.ReasonApproved
				}
				res, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[0], CardID: card.ID,
					Amount: 1, IdempotencyKey: "guard-" + card.ID})
				must(t, err)
				if res.Reason != string(want) {
					t.Errorf("%s card, lock %d, %s expiry: the script answers %s, authz %s", status, lock, name, res.Reason, want)
				}
			}
		}
	}
	p.checkMoney(t)
}

// TestIrreversibleLocksAgreeWithAuthz: locking, unlocking, replacing and
// activating a replacement treat exactly authz's irreversible reasons as
// irreversible.
func TestIrreversibleLocksAgreeWithAuthz(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	p := newProgram(t, l, ledger.FundingCredit, 0, 0)
	n := 0
	newCard := func(typ authz.CardType, lock authz.LockReason) ledger.Card {
		t.Helper()
		n++
		c := ledger.Card{ID: fmt.Sprintf("crd_lock_%d", n), PartnerID: p.partner, CustomerID: p.customer, BalanceID: p.balances[0],
			Type: string(typ), Status: string(authz.StatusActive), PANHash: fmt.Sprintf("lock%d", n), Last4: "0000", Expiry: "3012"}
		must(t, l.CreateCard(ctx, c))
		must(t, l.LockCard(ctx, p.partner, c.ID, int(lock), "ADMIN"))
		return c
	}
	for lock := authz.LockLost; lock <= authz.LockReplaced; lock++ {
		irreversible := lock.Irreversible()
		if got := errors.Is(authz.CheckUnlock(lock), authz.ErrLockIrreversible); got != irreversible {
			t.Fatalf("authz disagrees with itself on reason %d", lock)
		}

		c := newCard(authz.CardVirtual, lock)
		_, err := l.UnlockCard(ctx, p.partner, c.ID)
		if got := errors.Is(err, ledger.ErrLockIrreversible); got != irreversible || !got && err != nil {
			t.Errorf("unlocking reason %d: %v; irreversible %t", lock, err, irreversible)
		}

		c = newCard(authz.CardVirtual, lock)
		other := authz.LockFraud
		if lock == authz.LockFraud {
			other = authz.LockPendingQuery
		}
		err = l.LockCard(ctx, p.partner, c.ID, int(other), "ADMIN")
		if got := errors.Is(err, ledger.ErrLockIrreversible); got != irreversible || !got && err != nil {
			t.Errorf("locking reason %d over reason %d: %v; irreversible %t", other, lock, err, irreversible)
		}

		// A replacement locks the old card with reason 8 unless its lock
		// is irreversible, at once or when the new plastic is activated.
		wantLock := int(authz.LockReplaced)
		if irreversible {
			wantLock = int(lock)
		}
		c = newCard(authz.CardVirtual, lock)
		n++
		got, err := l.ReplaceCard(ctx, p.partner, ledger.Replacement{OldID: c.ID, Source: "ADMIN", New: ledger.Card{
			ID: fmt.Sprintf("crd_lock_%d", n), Type: c.Type, Status: string(authz.StatusActive), PANHash: fmt.Sprintf("lock%d", n), Expiry: "3012"}})
		must(t, err)
		if got != wantLock {
			t.Errorf("replacing a card locked with reason %d: its lock is %d, want %d", lock, got, wantLock)
		}

		c = newCard(authz.CardPhysical, lock)
		n++
		newID := fmt.Sprintf("crd_lock_%d", n)
		_, err = l.ReplaceCard(ctx, p.partner, ledger.Replacement{OldID: c.ID, KeepOld: true, Source: "ADMIN", New: ledger.Card{
			ID: newID, Type: c.Type, Status: string(authz.StatusLinked), PANHash: fmt.Sprintf("lock%d", n), Expiry: "3012"}})
		must(t, err)
		locked, err := l.ActivateCard(ctx, p.partner, newID, "CUSTOMER")
		must(t, err)
		old, err := l.Card(ctx, p.partner, c.ID)
		must(t, err)
		if (locked == "") != irreversible || old.LockReason != wantLock {
			t.Errorf("activating the replacement of a card locked with reason %d: locked %q, its lock is %d, want %d",
				lock, locked, old.LockReason, wantLock)
		}
	}
}
