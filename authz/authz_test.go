package authz

import (
	"errors"
	"testing"
	"time"
)

func TestLockRules(t *testing.T) {
	tests := []struct {
		reason       LockReason
		irreversible bool
		decline      Reason
	}{
		{LockLost, true, ReasonLockedLost},
		{LockStolen, true, ReasonLockedStolen},
		{LockPendingQuery, false, ReasonLockedPendingQuery},
		{LockConsolidation, false, ReasonLockedConsolidation},
		{LockInactive, true, ReasonLockedInactive},
		{LockPINTries, false, ReasonLockedPINTries},
		{LockFraud, false, ReasonLockedFraud},
		{LockReplaced, true, ReasonLockedReplaced},
	}
	for _, tc := range tests {
		t.Run(tc.reason.String(), func(t *testing.T) {
			if got := tc.reason.Irreversible(); got != tc.irreversible {
				t.Errorf("Irreversible() = %v, want %v", got, tc.irreversible)
			}
			if got := tc.reason.DeclineReason(); got != tc.decline {
				t.Errorf("DeclineReason() = %s, want %s", got, tc.decline)
			}
			err := CheckUnlock(tc.reason)
			if tc.irreversible != errors.Is(err, ErrLockIrreversible) {
				t.Errorf("CheckUnlock() = %v", err)
			}
		})
	}
	if LockReason(0).Valid() || LockReason(9).Valid() {
		t.Error("0 and 9 must not be valid lock reasons")
	}
}

func TestCardTransitions(t *testing.T) {
	tests := []struct {
		typ      CardType
		from, to CardStatus
		ok       bool
	}{
		{CardPhysical, StatusOrdered, StatusPersonalised, true},
		{CardPhysical, StatusPersonalised, StatusLinked, true},
		{CardPhysical, StatusLinked, StatusActive, true},
		{CardPhysical, StatusOrdered, StatusActive, false},
		{CardPhysical, StatusActive, StatusRemoved, true},
		{CardPhysical, StatusRemoved, StatusActive, false},
		{CardVirtual, StatusActive, StatusLinked, false},
		{CardDigitalFirst, StatusActive, StatusRemoved, true},
	}
	for _, tc := range tests {
		err := CheckTransition(tc.typ, tc.from, tc.to)
		if (err == nil) != tc.ok {
			t.Errorf("%s %s -> %s: err = %v, want ok=%v", tc.typ, tc.from, tc.to, err, tc.ok)
		}
	}
}

func TestCheckCardOrder(t *testing.T) {
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	active := CardInfo{Status: StatusActive, Expiry: "2911", Type: CardPhysical}
	tests := []struct {
		name string
		card func(c CardInfo) CardInfo
		de14 string
		want Reason
	}{
		{"ok", func(c CardInfo) CardInfo { return c }, "", ""},
		{"removed beats lock", func(c CardInfo) CardInfo { c.Status = StatusRemoved; c.Lock = LockFraud; return c }, "", ReasonCardRemoved},
		{"lock beats expiry", func(c CardInfo) CardInfo { c.Lock = LockStolen; c.Expiry = "2001"; return c }, "", ReasonLockedStolen},
		{"wrong DE14", func(c CardInfo) CardInfo { return c }, "2912", ReasonWrongExpiry},
		{"expired", func(c CardInfo) CardInfo { c.Expiry = "2610"; return c }, "", ReasonExpiredCard},
		{"this month still valid", func(c CardInfo) CardInfo { c.Expiry = "2611"; return c }, "", ""},
		{"not activated", func(c CardInfo) CardInfo { c.Status = StatusLinked; return c }, "", ReasonCardNotActivated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckCard(tc.card(active), tc.de14, now); got != tc.want {
				t.Fatalf("CheckCard = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAmountInCardCurrency(t *testing.T) {
	tests := []struct {
		name       string
		req        Request
		wantAmount int64
		wantReason Reason
	}{
		{"same currency", Request{Amount: 100, Currency: "978"}, 100, ""},
		{"billing amount used", Request{Amount: 100, Currency: "840", BillingAmount: 93, BillingCurrency: "978"}, 93, ""},
		{"mismatch", Request{Amount: 100, Currency: "840"}, 100, ReasonCurrencyMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, r := amountInCardCurrency(&tc.req, "EUR")
			if a != tc.wantAmount || r != tc.wantReason {
				t.Fatalf("got %d %q, want %d %q", a, r, tc.wantAmount, tc.wantReason)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Request{Kind: KindAuthorization, PAN: "4000001234567899", TxnType: TxnPurchase, Amount: 1, Currency: "978"}
	tests := []struct {
		name string
		mod  func(r *Request)
		want Reason
	}{
		{"ok", func(r *Request) {}, ""},
		{"short PAN", func(r *Request) { r.PAN = "4000" }, ReasonFormatError},
		{"letters in PAN", func(r *Request) { r.PAN = "40000012345678AB" }, ReasonFormatError},
		{"unknown processing code", func(r *Request) { r.TxnType = "40" }, ReasonInvalidTransaction},
		{"zero purchase", func(r *Request) { r.Amount = 0 }, ReasonInvalidAmount},
		{"zero balance inquiry is fine", func(r *Request) { r.Amount = 0; r.TxnType = TxnBalanceInquiry }, ""},
		{"bad currency", func(r *Request) { r.Currency = "EU1" }, ReasonFormatError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.mod(&r)
			if got := Validate(&r); got != tc.want {
				t.Fatalf("Validate = %q, want %q", got, tc.want)
			}
		})
	}
}
