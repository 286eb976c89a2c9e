package issuing_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

type fixture struct {
	svc               *issuing.Service
	ledger            *ledger.Ledger
	partner, customer string
	balance           string
}

func setup(t *testing.T) fixture {
	t.Helper()
	rdb, prefix := ledgertest.MustRedis(t)
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix})
	must(t, err)
	keys, err := cardcrypto.LoadOrCreate(t.TempDir())
	must(t, err)
	ctx := context.Background()
	f := fixture{
		svc:     &issuing.Service{Store: l, Keys: keys, Now: func() time.Time { return time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC) }},
		ledger:  l,
		partner: ledgertest.UniqueName("prt"), customer: "cus_1", balance: "bal_1",
	}
	must(t, l.CreatePartner(ctx, ledger.Partner{ID: f.partner, Name: "P", BIN: "45678901", Currency: "EUR", FundingModel: ledger.FundingCredit, DigitalFirst: true}))
	must(t, l.CreateCustomer(ctx, ledger.Customer{ID: f.customer, PartnerID: f.partner}))
	must(t, l.SetKYC(ctx, f.partner, f.customer, "VERIFIED"))
	must(t, l.CreateUserBalance(ctx, f.partner, f.customer, f.balance, "EUR"))
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestVirtualCardData(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	c, full, err := f.svc.CreateVirtual(ctx, f.partner, f.customer, f.balance)
	must(t, err)
	if !strings.HasPrefix(full.CardNo, "45678901") || len(full.CardNo) != 16 || !cardcrypto.LuhnValid(full.CardNo) {
		t.Fatalf("PAN not in the BIN with a valid Luhn digit")
	}
	if full.Exp != "2029-11-30" || c.Expiry != "2029-11" {
		t.Fatalf("expiry %s / %s, want the last day of the month three years on", full.Exp, c.Expiry)
	}
	if c.Status != authz.StatusActive || c.Last4 != full.CardNo[12:] {
		t.Fatalf("card %+v", c)
	}
	row, err := f.ledger.Card(ctx, f.partner, c.ID)
	must(t, err)
	if strings.Contains(row.PANEnc+row.PANHash+row.CVVEnc, full.CardNo) || cvvInClear(t, row.CVVEnc, full.CVV) {
		t.Fatal("the stored card holds its PAN or CVV in clear")
	}
	again, err := f.svc.FullData(ctx, f.partner, c.ID)
	must(t, err)
	if again != full {
		t.Fatalf("full data %+v, issued %+v", again, full)
	}
	if err := f.svc.SetPIN(ctx, f.partner, c.ID, "1234"); !errors.Is(err, issuing.ErrWrongCardType) {
		t.Fatalf("PIN on a virtual card: %v", err)
	}
}

func TestDigitalFirstSharesTheVirtualCard(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	v, full, err := f.svc.CreateVirtual(ctx, f.partner, f.customer, f.balance)
	must(t, err)
	df, err := f.svc.Print(ctx, f.partner, v.ID, `{"city":"Gdansk"}`)
	must(t, err)
	if df.Type != authz.CardDigitalFirst || df.Status != authz.StatusActive || df.CopyOf != v.ID {
		t.Fatalf("copy %+v: digital first, active without activation, copy of the virtual card", df)
	}
	dfFull, err := f.svc.FullData(ctx, f.partner, df.ID)
	must(t, err)
	if dfFull.CardNo != full.CardNo || dfFull.CVV != full.CVV {
		t.Fatal("the copy does not share the virtual card's PAN and CVV")
	}
	// A lock on the copy locks the PAN the network sees (the original's state).
	_, err = f.svc.Lock(ctx, f.partner, df.ID, authz.LockFraud, "CUSTOMER")
	must(t, err)
	got, err := f.svc.Get(ctx, f.partner, v.ID)
	must(t, err)
	if got.LockReason != int(authz.LockFraud) {
		t.Fatalf("virtual card lock %d after locking its copy", got.LockReason)
	}
	_, err = f.svc.Unlock(ctx, f.partner, v.ID)
	must(t, err)
	// PIN on the copy, CVV reset on either.
	must(t, f.svc.SetPIN(ctx, f.partner, df.ID, "4321"))
	reset, err := f.svc.ResetCVV(ctx, f.partner, df.ID)
	must(t, err)
	ok, err := f.svc.VerifyCVV(ctx, f.partner, v.ID, reset.CVV)
	must(t, err)
	if !ok {
		t.Fatal("the virtual card does not see its copy's new CVV")
	}
	if reset.CVV == full.CVV {
		t.Fatal("a CVV reset kept the CVV")
	}
	if ok, err := f.svc.VerifyCVV(ctx, f.partner, v.ID, full.CVV); err != nil || ok {
		t.Fatalf("the old CVV still verifies after a reset: %v, %v", ok, err)
	}
	// A reset draws again while the draw equals the current CVV2: a
	// source giving "000" three times, then real randomness.
	cur := reset.CVV
	f.svc.Rand = &zerosThen{n: 3}
	reset, err = f.svc.ResetCVV(ctx, f.partner, v.ID)
	must(t, err)
	if cur != "000" && reset.CVV != "000" {
		t.Fatalf("reset from a zero source gave %s", reset.CVV)
	}
	prev := reset.CVV
	f.svc.Rand = &zerosThen{n: 9}
	reset, err = f.svc.ResetCVV(ctx, f.partner, v.ID)
	must(t, err)
	if reset.CVV == prev {
		t.Fatalf("reset kept CVV %s", prev)
	}
	// Removing the virtual card removes its copy; a removed copy changes nothing.
	must(t, f.svc.Remove(ctx, f.partner, v.ID))
	if _, err := f.svc.ResetCVV(ctx, f.partner, df.ID); !errors.Is(err, ledger.ErrCardRemoved) {
		t.Fatalf("CVV reset of a removed copy: %v", err)
	}
	if err := f.svc.SetPIN(ctx, f.partner, df.ID, "1111"); !errors.Is(err, ledger.ErrCardRemoved) {
		t.Fatalf("PIN of a removed copy: %v", err)
	}
}

func TestPhysicalLifeCycle(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	c, err := f.svc.OrderPhysical(ctx, f.partner, f.customer, f.balance, `{"city":"Warsaw"}`)
	must(t, err)
	if _, err := f.svc.Activate(ctx, f.partner, c.ID, "ADMIN"); !errors.Is(err, ledger.ErrInvalidTransition) {
		t.Fatalf("activating an ordered card: %v", err)
	}
	activate := func(ctx context.Context, p, id string) (issuing.Card, error) {
		return f.svc.Activate(ctx, p, id, "CUSTOMER")
	}
	for _, step := range []func(context.Context, string, string) (issuing.Card, error){f.svc.Personalise, f.svc.Link, activate} {
		_, err := step(ctx, f.partner, c.ID)
		must(t, err)
	}
	got, err := f.svc.Get(ctx, f.partner, c.ID)
	must(t, err)
	if got.Status != authz.StatusActive {
		t.Fatalf("status %s, want ACTIVE", got.Status)
	}
	if _, err := f.svc.ResetCVV(ctx, f.partner, c.ID); !errors.Is(err, issuing.ErrWrongCardType) {
		t.Fatalf("CVV reset of a physical card: %v", err)
	}
	if _, err := f.svc.Print(ctx, f.partner, c.ID, ""); !errors.Is(err, issuing.ErrWrongCardType) {
		t.Fatalf("printing a physical card: %v", err)
	}
	v, _, err := f.svc.CreateVirtual(ctx, f.partner, f.customer, f.balance)
	must(t, err)
	_, err = f.svc.Lock(ctx, f.partner, v.ID, authz.LockStolen, "CUSTOMER")
	must(t, err)
	if _, err := f.svc.Print(ctx, f.partner, v.ID, ""); !errors.Is(err, ledger.ErrLockIrreversible) {
		t.Fatalf("printing a stolen card: %v", err)
	}
}

// zerosThen reads n zero bytes, then crypto/rand.
type zerosThen struct{ n int }

func (z *zerosThen) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return rand.Read(p)
	}
	k := min(len(p), z.n)
	clear(p[:k])
	z.n -= k
	return k, nil
}

// TestExpiryFromLeapDay: a card issued on 29 February expires in February.
func TestExpiryFromLeapDay(t *testing.T) {
	f := setup(t)
	f.svc.Now = func() time.Time { return time.Date(2028, 2, 29, 23, 59, 0, 0, time.UTC) }
	c, full, err := f.svc.CreateVirtual(context.Background(), f.partner, f.customer, f.balance)
	must(t, err)
	if c.Expiry != "2031-02" || full.Exp != "2031-02-28" {
		t.Fatalf("expiry %s / %s, want 2031-02 / 2031-02-28", c.Expiry, full.Exp)
	}
}

// cvvInClear reports whether a stored CVV2 ciphertext carries the CVV2.
// The base64 text can hold three given digits by chance, so the check
// looks at the decoded bytes, where a clear CVV2 would sit as ASCII.
func cvvInClear(t *testing.T, enc, cvv string) bool {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatalf("stored CVV2 is not base64 ciphertext: %v", err)
	}
	return bytes.Contains(raw, []byte(cvv))
}
