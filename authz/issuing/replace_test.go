package issuing_test

import (
	"context"
	"errors"
	"testing"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
)

// TestPrintOnlyInDigitalFirstPrograms: a program without the flag gets no
// plastic copy, and nothing is created.
func TestPrintOnlyInDigitalFirstPrograms(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	l := f.ledger
	other := f.partner + "x"
	must(t, l.CreatePartner(ctx, ledger.Partner{ID: other, Name: "Q", BIN: "45678902", Currency: "EUR", FundingModel: ledger.FundingCredit}))
	must(t, l.CreateCustomer(ctx, ledger.Customer{ID: "cus_q", PartnerID: other}))
	must(t, l.SetKYC(ctx, other, "cus_q", "VERIFIED"))
	must(t, l.CreateUserBalance(ctx, other, "cus_q", "bal_q", "EUR"))
	v, _, err := f.svc.CreateVirtual(ctx, other, "cus_q", "bal_q")
	must(t, err)
	if _, err := f.svc.Print(ctx, other, v.ID, ""); !errors.Is(err, issuing.ErrNotDigitalFirst) {
		t.Fatalf("print outside digital first: %v, want ErrNotDigitalFirst", err)
	}
	cards, err := l.CardsOfBalance(ctx, other, "bal_q")
	must(t, err)
	if len(cards) != 1 {
		t.Fatalf("a refused print left %d cards, want the virtual card alone", len(cards))
	}
}

// TestDigitalFirstGoesToTheBureau: the copy is active at once, waits for
// the bureau (ORDERED) and is PRODUCED after its report; the report is
// idempotent and only for copies.
func TestDigitalFirstGoesToTheBureau(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	v, _, err := f.svc.CreateVirtual(ctx, f.partner, f.customer, f.balance)
	must(t, err)
	if v.DeliveryState != "" {
		t.Fatalf("virtual card delivery state %q, want none", v.DeliveryState)
	}
	df, err := f.svc.Print(ctx, f.partner, v.ID, "")
	must(t, err)
	if df.Status != authz.StatusActive || df.DeliveryState != issuing.DeliveryOrdered {
		t.Fatalf("copy %+v: want ACTIVE and ORDERED", df)
	}
	row, err := f.ledger.Card(ctx, f.partner, df.ID)
	must(t, err)
	if !issuing.WaitsForBureau(row) {
		t.Fatal("an ordered copy does not wait for the bureau")
	}
	for range 2 {
		got, err := f.svc.Produced(ctx, f.partner, df.ID)
		must(t, err)
		if got.DeliveryState != issuing.DeliveryProduced || got.Status != authz.StatusActive {
			t.Fatalf("after the bureau's report: %+v", got)
		}
	}
	row, err = f.ledger.Card(ctx, f.partner, df.ID)
	must(t, err)
	if issuing.WaitsForBureau(row) {
		t.Fatal("a produced copy still waits for the bureau")
	}
	if _, err := f.svc.Produced(ctx, f.partner, v.ID); !errors.Is(err, issuing.ErrWrongCardType) {
		t.Fatalf("producing a virtual card: %v", err)
	}
}

// TestLockFromOutsideRecordsSourceAndReference, on a copy: the state is the
// virtual card's, so both show the lock; unlocking clears the reference.
func TestLockFromOutsideRecordsSourceAndReference(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	v, _, err := f.svc.CreateVirtual(ctx, f.partner, f.customer, f.balance)
	must(t, err)
	df, err := f.svc.Print(ctx, f.partner, v.ID, "")
	must(t, err)
	before, err := f.ledger.Card(ctx, f.partner, v.ID)
	must(t, err)
	got, err := f.svc.LockFrom(ctx, f.partner, df.ID, authz.LockFraud, "ACQUIRER", "ACQ-REF-1")
	must(t, err)
	if got.LockReason != 7 || got.LockSource != "ACQUIRER" || got.LockReference != "ACQ-REF-1" {
		t.Fatalf("copy after the lock: %+v", got)
	}
	orig, err := f.svc.Get(ctx, f.partner, v.ID)
	must(t, err)
	if orig.LockReason != 7 || orig.LockSource != "ACQUIRER" || orig.LockReference != "ACQ-REF-1" {
		t.Fatalf("virtual card after its copy was locked: %+v", orig)
	}
	after, err := f.ledger.Card(ctx, f.partner, v.ID)
	must(t, err)
	if after.Version <= before.Version {
		t.Fatalf("the lock left the card's version at %d (was %d): cached reads would not see it", after.Version, before.Version)
	}
	// The same reason from another requester records the new one.
	got, err = f.svc.LockFrom(ctx, f.partner, v.ID, authz.LockFraud, "NETWORK", "NET-2")
	must(t, err)
	if got.LockSource != "NETWORK" || got.LockReference != "NET-2" {
		t.Fatalf("second lock: %+v", got)
	}
	got, err = f.svc.Unlock(ctx, f.partner, v.ID)
	must(t, err)
	if got.LockReason != 0 || got.LockSource != "" || got.LockReference != "" {
		t.Fatalf("after unlock: %+v", got)
	}
	row, err := f.ledger.Card(ctx, f.partner, v.ID)
	must(t, err)
	if row.LockRef != "" || row.LockSource != "" {
		t.Fatalf("unlock left lock_source %q lock_ref %q", row.LockSource, row.LockRef)
	}
}

func TestReplaceVirtual(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	v, full, err := f.svc.CreateVirtual(ctx, f.partner, f.customer, f.balance)
	must(t, err)
	r, err := f.svc.Replace(ctx, f.partner, v.ID, true, "", "CUSTOMER")
	must(t, err)
	if r.Card.Type != authz.CardVirtual || r.Card.Status != authz.StatusActive || r.Card.BalanceID != f.balance ||
		r.Card.CustomerID != f.customer || r.Card.Replaces != v.ID || r.Card.ID == v.ID {
		t.Fatalf("replacement %+v", r.Card)
	}
	if r.Full.CardNo == full.CardNo || r.Full.CardNo[12:] != r.Card.Last4 {
		t.Fatal("the replacement does not have a PAN of its own")
	}
	// keep_old means nothing for a virtual card: the old one is replaced at once.
	if r.Old.LockReason != 8 || r.Old.LockSource != "CUSTOMER" || r.Old.ReplacedBy != r.Card.ID {
		t.Fatalf("old card %+v: want locked 8 by CUSTOMER, replaced by the new one", r.Old)
	}
	if _, err := f.svc.Unlock(ctx, f.partner, v.ID); !errors.Is(err, ledger.ErrLockIrreversible) {
		t.Fatalf("unlocking a replaced card: %v", err)
	}
	if _, err := f.svc.Replace(ctx, f.partner, v.ID, false, "", "CUSTOMER"); !errors.Is(err, ledger.ErrCardReplaced) {
		t.Fatalf("replacing twice: %v", err)
	}
	cards, err := f.ledger.CardsOfBalance(ctx, f.partner, f.balance)
	must(t, err)
	if len(cards) != 2 {
		t.Fatalf("%d cards under the balance, want the old and its replacement", len(cards))
	}
}

// TestReplaceLostCardKeepsItsReason: a card reported lost (1) is replaced
// and stays locked as lost.
func TestReplaceLostCardKeepsItsReason(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	v, _, err := f.svc.CreateVirtual(ctx, f.partner, f.customer, f.balance)
	must(t, err)
	_, err = f.svc.Lock(ctx, f.partner, v.ID, authz.LockLost, "CUSTOMER")
	must(t, err)
	r, err := f.svc.Replace(ctx, f.partner, v.ID, false, "", "PARTNER")
	must(t, err)
	if r.Old.LockReason != 1 || r.Old.LockSource != "CUSTOMER" || r.Old.ReplacedBy != r.Card.ID {
		t.Fatalf("old card %+v: want still lost", r.Old)
	}
}

func TestReplaceDigitalFirstCopyRefused(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	v, _, err := f.svc.CreateVirtual(ctx, f.partner, f.customer, f.balance)
	must(t, err)
	df, err := f.svc.Print(ctx, f.partner, v.ID, "")
	must(t, err)
	if _, err := f.svc.Replace(ctx, f.partner, df.ID, false, "", "CUSTOMER"); !errors.Is(err, issuing.ErrWrongCardType) {
		t.Fatalf("replacing a copy: %v", err)
	}
	got, err := f.svc.Get(ctx, f.partner, v.ID)
	must(t, err)
	if got.LockReason != 0 || got.ReplacedBy != "" {
		t.Fatalf("a refused replacement changed the card: %+v", got)
	}
}

// TestReplacePhysicalKeepOld: the old plastic keeps working through the
// bureau and is locked with 8 when the new one is activated; without
// keep_old it is locked at once.
func TestReplacePhysicalKeepOld(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	old := activePhysical(t, f)
	r, err := f.svc.Replace(ctx, f.partner, old.ID, true, "", "PARTNER")
	must(t, err)
	if r.Card.Type != authz.CardPhysical || r.Card.Status != authz.StatusOrdered || r.Card.DeliveryState != issuing.DeliveryOrdered {
		t.Fatalf("physical replacement %+v: want ORDERED for the bureau", r.Card)
	}
	row, err := f.ledger.Card(ctx, f.partner, r.Card.ID)
	must(t, err)
	if row.Delivery != `{"city":"Warsaw"}` {
		t.Fatalf("replacement delivery %q, want the old card's address", row.Delivery)
	}
	if r.Old.LockReason != 0 || r.Old.Status != authz.StatusActive || r.Old.ReplacedBy != r.Card.ID {
		t.Fatalf("old card %+v: want still working", r.Old)
	}
	_, err = f.svc.Personalise(ctx, f.partner, r.Card.ID)
	must(t, err)
	_, err = f.svc.Link(ctx, f.partner, r.Card.ID)
	must(t, err)
	got, err := f.svc.Get(ctx, f.partner, old.ID)
	must(t, err)
	if got.LockReason != 0 {
		t.Fatalf("old card locked before the new one's activation: %+v", got)
	}
	_, err = f.svc.Activate(ctx, f.partner, r.Card.ID, "CUSTOMER")
	must(t, err)
	got, err = f.svc.Get(ctx, f.partner, old.ID)
	must(t, err)
	if got.LockReason != 8 || got.LockSource != "CUSTOMER" {
		t.Fatalf("old card after the activation: %+v, want locked 8", got)
	}

	// Without keep_old.
	old2 := activePhysical(t, f)
	r2, err := f.svc.Replace(ctx, f.partner, old2.ID, false, `{"city":"Krakow"}`, "ADMIN")
	must(t, err)
	if r2.Old.LockReason != 8 || r2.Old.LockSource != "ADMIN" {
		t.Fatalf("old card %+v: want locked 8 at once", r2.Old)
	}
	row, err = f.ledger.Card(ctx, f.partner, r2.Card.ID)
	must(t, err)
	if row.Delivery != `{"city":"Krakow"}` {
		t.Fatalf("replacement delivery %q, want the new address", row.Delivery)
	}
}

func activePhysical(t *testing.T, f fixture) issuing.Card {
	t.Helper()
	ctx := context.Background()
	c, err := f.svc.OrderPhysical(ctx, f.partner, f.customer, f.balance, `{"city":"Warsaw"}`)
	must(t, err)
	_, err = f.svc.Personalise(ctx, f.partner, c.ID)
	must(t, err)
	_, err = f.svc.Link(ctx, f.partner, c.ID)
	must(t, err)
	c, err = f.svc.Activate(ctx, f.partner, c.ID, "CUSTOMER")
	must(t, err)
	return c
}
