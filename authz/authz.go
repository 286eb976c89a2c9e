// Package authz is Antaca's domain: the authorization request and decision,
// the machine-readable reasons behind every answer, card types, states and
// lock reasons with their rules, and the Engine that orders the checks.
//
// It imports no transport and no store. The ISO listener (package iso) turns
// wire messages into a Request and a Decision back into an action code; the
// ledger (package ledger) implements the interfaces the engine consumes
// (Ledger, Velocity, CardLocks) and the Store of package authz/issuing.
package authz

import (
	"fmt"
	"time"
)

// Kind is the business meaning of an incoming network message.
type Kind int

const (
	KindAuthorization       Kind = iota + 1 // 0100: place a hold
	KindFinancial                           // 0200: place and post at once
	KindAuthorizationAdvice                 // 0120: stand-in approval or completion of a hold
	KindFinancialAdvice                     // 0220: completion of an earlier hold, or a forced post
	KindReversal                            // 0400
	KindReversalAdvice                      // 0420
)

func (k Kind) String() string {
	switch k {
	case KindAuthorization:
		return "authorization"
	case KindFinancial:
		return "financial"
	case KindAuthorizationAdvice:
		return "authorization_advice"
	case KindFinancialAdvice:
		return "financial_advice"
	case KindReversal:
		return "reversal"
	case KindReversalAdvice:
		return "reversal_advice"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// IsAdvice reports whether the network already decided and only informs us.
func (k Kind) IsAdvice() bool { return k == KindAuthorizationAdvice || k == KindFinancialAdvice }

// IsReversal reports whether the message undoes an earlier one.
func (k Kind) IsReversal() bool { return k == KindReversal || k == KindReversalAdvice }

// Transaction types: the first two digits of the processing code (DE3).
const (
	TxnPurchase       = "00"
	TxnCash           = "01"
	TxnRefund         = "20"
	TxnBalanceInquiry = "30"
)

// MaxAmount is the largest amount and the largest balance, in minor units,
// that Antaca accepts or keeps: 10^12 - 1, the most that the 12 digits of
// an ISO 8583 amount field (DE4, and each amount of DE54) can carry.
// Reloads above it are refused at the REST edge, and no balance may grow
// past it, so that every answer can state the balance it leaves.
const MaxAmount int64 = 999_999_999_999

// OriginalData identifies the message a reversal or completion refers to
// (DE90: original MTI, STAN, transmission date and time, acquirer).
type OriginalData struct {
	MTI              string
	STAN             string
	TransmissionTime string
	AcquirerID       string
}

// Request is one network message after field mapping, independent of the
// wire profile.
type Request struct {
	Kind   Kind
	Repeat bool   // 0101, 0121, 0221, 0401, 0421: a retransmission
	MTI    string // as received, for logs

	PAN             string
	TxnType         string // DE3 positions 1-2
	Amount          int64  // DE4, minor units
	Currency        string // DE49, numeric ISO 4217
	BillingAmount   int64  // DE6, when present
	BillingCurrency string // DE51, when present
	Expiry          string // DE14 YYMM, when present
	PINBlock        string // DE52 as hex, when present
	CVV2            string // DE48 subelement 92, when present (card-not-present)
	MCC             string // DE18
	POSEntryMode    string // DE22

	TransmissionTime string // DE7 MMDDhhmmss
	STAN             string // DE11
	AcquirerID       string // DE32
	RRN              string // DE37
	TerminalID       string // DE41
	MerchantID       string // DE42
	MerchantName     string // DE43
	// MerchantCountry is the alpha-2 country at the end of a full DE43
	// (CountryFromDE43), "" when DE43 carries none.
	MerchantCountry string
	AcquirerCountry string // DE19, numeric ISO 3166-1, when present

	Original          *OriginalData // DE90
	ReplacementAmount *int64        // DE95: the final amount after a partial reversal

	ReceivedAt time.Time
}

// TransactionKey is the identity used for duplicate detection: acquirer +
// STAN + transmission time + RRN (iso/README.md, "Transaction identity,
// duplicates and reversals").
func (r *Request) TransactionKey() string {
	return r.AcquirerID + "|" + r.STAN + "|" + r.TransmissionTime + "|" + r.RRN
}

// OriginalKey is the identity of the original transaction a reversal or an
// advice refers to, built from DE90 the same way TransactionKey is. The RRN
// is not part of DE90, so reversals carry the original's RRN in DE37.
func (r *Request) OriginalKey() string {
	if r.Original == nil {
		return ""
	}
	acq := r.Original.AcquirerID
	if acq == "" {
		acq = r.AcquirerID
	}
	return acq + "|" + r.Original.STAN + "|" + r.Original.TransmissionTime + "|" + r.RRN
}

// Decision is the engine's answer. The wire code is derived from Reason by
// the edge (package iso); Reason itself is kept in the journal and logs.
type Decision struct {
	Reason       Reason
	ApprovalCode string // DE38, on approvals
	// Amount is the amount approved, posted or released, in minor units.
	Amount int64
	// Available is the user balance's available amount after the decision,
	// answered in DE54 on approvals and balance inquiries.
	Available    int64
	HasAvailable bool
	Currency     string // numeric ISO 4217 of Available
	HoldID       string
	CardID       string
	PartnerID    string
}

// Approved reports whether the decision lets the transaction through.
func (d Decision) Approved() bool { return d.Reason.Approved() }

// Reason is the machine-readable cause of a decision.
type Reason string

const (
	ReasonApproved                 Reason = "APPROVED"
	ReasonApprovedPartial          Reason = "APPROVED_PARTIAL"
	ReasonReversalAccepted         Reason = "REVERSAL_ACCEPTED"
	ReasonAdviceAccepted           Reason = "ADVICE_ACCEPTED"
	ReasonNetworkAccepted          Reason = "NETWORK_ACCEPTED"
	ReasonDoNotHonour              Reason = "DO_NOT_HONOUR"
	ReasonExpiredCard              Reason = "EXPIRED_CARD"
	ReasonWrongExpiry              Reason = "WRONG_EXPIRY"
	ReasonRestrictedCard           Reason = "RESTRICTED_CARD"
	ReasonInvalidAmount            Reason = "INVALID_AMOUNT"
	ReasonUnknownCard              Reason = "UNKNOWN_CARD"
	ReasonCardRemoved              Reason = "CARD_REMOVED"
	ReasonInsufficientUserFunds    Reason = "INSUFFICIENT_USER_FUNDS"
	ReasonInsufficientPartnerFunds Reason = "INSUFFICIENT_PARTNER_FUNDS"
	ReasonIncorrectPIN             Reason = "INCORRECT_PIN"
	ReasonIncorrectCVV2            Reason = "INCORRECT_CVV2"
	ReasonNotPermitted             Reason = "NOT_PERMITTED"
	ReasonCurrencyMismatch         Reason = "CURRENCY_MISMATCH"
	ReasonExceedsAmountLimit       Reason = "EXCEEDS_AMOUNT_LIMIT"
	ReasonExceedsFrequencyLimit    Reason = "EXCEEDS_FREQUENCY_LIMIT"
	ReasonCardNotActivated         Reason = "CARD_NOT_ACTIVATED"
	ReasonLockedLost               Reason = "CARD_LOCKED_LOST"
	ReasonLockedStolen             Reason = "CARD_LOCKED_STOLEN"
	ReasonLockedPendingQuery       Reason = "CARD_LOCKED_PENDING_QUERY"
	ReasonLockedConsolidation      Reason = "CARD_LOCKED_CONSOLIDATION"
	ReasonLockedInactive           Reason = "CARD_LOCKED_INACTIVE"
	ReasonLockedPINTries           Reason = "CARD_LOCKED_PIN_TRIES"
	ReasonLockedFraud              Reason = "CARD_LOCKED_FRAUD"
	ReasonLockedReplaced           Reason = "CARD_LOCKED_REPLACED"
	ReasonOriginalNotFound         Reason = "ORIGINAL_NOT_FOUND"
	ReasonFormatError              Reason = "FORMAT_ERROR"
	ReasonInvalidTransaction       Reason = "INVALID_TRANSACTION"
	ReasonIssuerUnavailable        Reason = "ISSUER_UNAVAILABLE"
	ReasonSystemError              Reason = "SYSTEM_ERROR"

	// Spend controls (docs/controls.md): each its own reason, sharing the
	// action codes of the amount limit, the frequency limit and "not
	// permitted".
	ReasonControlTransactionMax Reason = "CONTROL_TRANSACTION_MAX"
	ReasonControlAmountLimit    Reason = "CONTROL_AMOUNT_LIMIT"
	ReasonControlCountLimit     Reason = "CONTROL_COUNT_LIMIT"
	ReasonControlMCC            Reason = "CONTROL_MCC_BLOCKED"
	ReasonControlCountry        Reason = "CONTROL_COUNTRY_BLOCKED"
	ReasonControlChannel        Reason = "CONTROL_CHANNEL_BLOCKED"
	// Real-time decisioning by the partner (docs/decisioning.md).
	ReasonPartnerDeclined Reason = "PARTNER_DECLINED"
	ReasonStandInDeclined Reason = "STAND_IN_DECLINED"
)

// Approved reports whether the reason lets the transaction through.
func (r Reason) Approved() bool {
	switch r {
	case ReasonApproved, ReasonApprovedPartial, ReasonReversalAccepted, ReasonAdviceAccepted, ReasonNetworkAccepted:
		return true
	}
	return false
}

// Reasons lists every reason, for tables and tests that must cover them all.
func Reasons() []Reason {
	return []Reason{
		ReasonApproved, ReasonApprovedPartial, ReasonReversalAccepted, ReasonAdviceAccepted,
		ReasonNetworkAccepted, ReasonDoNotHonour, ReasonExpiredCard, ReasonWrongExpiry,
		ReasonRestrictedCard, ReasonInvalidAmount, ReasonUnknownCard, ReasonCardRemoved,
		ReasonInsufficientUserFunds, ReasonInsufficientPartnerFunds, ReasonIncorrectPIN, ReasonIncorrectCVV2,
		ReasonNotPermitted, ReasonCurrencyMismatch, ReasonExceedsAmountLimit,
		ReasonExceedsFrequencyLimit, ReasonCardNotActivated, ReasonLockedLost,
		ReasonLockedStolen, ReasonLockedPendingQuery, ReasonLockedConsolidation,
		ReasonLockedInactive, ReasonLockedPINTries, ReasonLockedFraud, ReasonLockedReplaced,
		ReasonOriginalNotFound, ReasonFormatError, ReasonInvalidTransaction,
		ReasonIssuerUnavailable, ReasonSystemError,
		ReasonControlTransactionMax, ReasonControlAmountLimit, ReasonControlCountLimit,
		ReasonControlMCC, ReasonControlCountry, ReasonControlChannel,
		ReasonPartnerDeclined, ReasonStandInDeclined,
	}
}
