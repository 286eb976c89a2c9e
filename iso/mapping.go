package iso

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/field"

	"github.com/antaca/antaca/authz"
)

// Errors of ParseRequest and BuildResponse. Callers branch on them with
// errors.Is; ReasonForError turns them into the decision reason answered.
var (
	// ErrFormat: the message breaks the layout or misses a mandatory
	// field. Answered as FORMAT_ERROR (9100 / 30).
	ErrFormat = errors.New("format error")
	// ErrUnsupportedMTI: a well-formed MTI this switch does not process
	// (0300, 1100, ...). It is a format error too.
	ErrUnsupportedMTI = errors.New("unsupported message type")
	// ErrUnsupportedProcessingCode: DE3 names a transaction type other
	// than purchase, cash, refund or balance inquiry. Answered as
	// INVALID_TRANSACTION (9102 / 12).
	ErrUnsupportedProcessingCode = errors.New("unsupported processing code")
	// ErrUnknownReason: the decision carries a reason the profile has no
	// code for, a programming error upstream. Answered as SYSTEM_ERROR.
	ErrUnknownReason = errors.New("reason without action code")
)

// FieldError is a format error tied to data elements. Its text names the
// elements and the problem but never their values: PANs, expiry dates and
// PIN blocks must not reach logs through an error string.
type FieldError struct {
	Fields  []int
	Problem string
	// intact: the message's layout is sound and only Fields are bad
	// (characters outside their set), so every other field may be
	// echoed in the answer.
	intact bool
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString("format error: ")
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString(", ")
		}
		switch f {
		case 0:
			b.WriteString("MTI")
		case 1:
			b.WriteString("bitmap")
		default:
			fmt.Fprintf(&b, "DE%d", f)
		}
	}
	b.WriteString(" ")
	b.WriteString(e.Problem)
	return b.String()
}

// Unwrap makes every FieldError an ErrFormat.
func (e *FieldError) Unwrap() error { return ErrFormat }

func fieldErr(problem string, fields ...int) error {
	return &FieldError{Fields: fields, Problem: problem}
}

// ReasonForError chooses the answer for a message that could not be turned
// into a decision request.
func ReasonForError(err error) authz.Reason {
	switch {
	case err == nil:
		return authz.ReasonApproved
	case errors.Is(err, ErrUnsupportedProcessingCode), errors.Is(err, ErrUnsupportedFileUpdate):
		return authz.ReasonInvalidTransaction
	case errors.Is(err, ErrFormat):
		return authz.ReasonFormatError
	}
	return authz.ReasonSystemError
}

// MTIs this switch answers. The fourth digit 1 marks a repeat
// (retransmission) of the message with 0.
const (
	mtiNetworkRequest  = "0800"
	mtiNetworkResponse = "0810"
)

// transactionKinds maps the first three MTI digits of a transaction message
// to its business meaning; the fourth digit (0 or 1) only marks repeats.
var transactionKinds = map[string]authz.Kind{
	"010": authz.KindAuthorization,
	"020": authz.KindFinancial,
	"012": authz.KindAuthorizationAdvice,
	"022": authz.KindFinancialAdvice,
	"040": authz.KindReversal,
	"042": authz.KindReversalAdvice,
}

// transactionMandatory are the data elements every transaction message
// (0100, 0120, 0200, 0220, 0400, 0420 and their repeats) must carry: the
// card, what and how much, and the four parts of the transaction identity
// less the acquirer (DE32), which single-acquirer links often omit and
// which then simply stays empty in the key. Reversals need no DE90: they
// may fall back to DE37 + DE2 (README.md, "Transaction identity").
var transactionMandatory = []int{2, 3, 4, 7, 11, 37, 49}

// networkMandatory: an 0800 needs its STAN (to be matched) and its code.
var networkMandatory = []int{11, 70}

// isNetworkRequest reports whether mti is an 0800 or its repeat 0801.
func isNetworkRequest(mti string) bool {
	return mti == mtiNetworkRequest || mti == "0801"
}

// MandatoryFields returns the data elements a message of type mti must
// carry, or nil for a type the switch does not answer.
func MandatoryFields(mti string) []int {
	if isNetworkRequest(mti) {
		return append([]int(nil), networkMandatory...)
	}
	if isFileUpdateRequest(mti) {
		return append([]int(nil), fileUpdateMandatory...)
	}
	if _, _, err := kindOf(mti); err == nil {
		return append([]int(nil), transactionMandatory...)
	}
	return nil
}

// kindOf maps an MTI to its Kind and repeat flag.
func kindOf(mti string) (authz.Kind, bool, error) {
	if !isDigits(mti) || len(mti) != 4 {
		return 0, false, fmt.Errorf("%w: MTI %q: %w", ErrFormat, mti, ErrUnsupportedMTI)
	}
	k, ok := transactionKinds[mti[:3]]
	if !ok || (mti[3] != '0' && mti[3] != '1') {
		return 0, false, fmt.Errorf("%w: MTI %s: %w", ErrFormat, mti, ErrUnsupportedMTI)
	}
	return k, mti[3] == '1', nil
}

// ResponseMTI is the MTI that answers mti: third digit plus one, repeat
// mark of the fourth digit dropped and its origin kept (0100 -> 0110,
// 0101 -> 0110, 0421 -> 0430, 0302 -> 0312, 0303 -> 0312). Responses,
// notifications and acknowledgements (odd third digit) have no answer.
func ResponseMTI(mti string) (string, error) {
	if len(mti) != 4 || !isDigits(mti) {
		return "", fmt.Errorf("%w: MTI %q is not four digits", ErrFormat, mti)
	}
	if (mti[2]-'0')%2 != 0 {
		return "", fmt.Errorf("%w: MTI %s is itself an answer", ErrUnsupportedMTI, mti)
	}
	origin := '0' + (mti[3]-'0')&^1
	return mti[:2] + string(mti[2]+1) + string(rune(origin)), nil
}

// isResponseMTI reports whether mti answers something (odd third digit).
func isResponseMTI(mti string) bool {
	return len(mti) == 4 && isDigits(mti) && (mti[2]-'0')%2 == 1
}

// supportedTxnTypes are the DE3 transaction types of README.md ("Fields
// read", processing code).
var supportedTxnTypes = map[string]bool{
	authz.TxnPurchase:       true,
	authz.TxnCash:           true,
	authz.TxnRefund:         true,
	authz.TxnBalanceInquiry: true,
}

// ParseRequest maps a transaction message to the decision request. It reads
// every field README.md lists under "Fields read"; DE12 and DE13 are
// checked and echoed but authz.Request has no place for them. Errors wrap
// ErrFormat (layout, missing or malformed field, unsupported MTI) or
// ErrUnsupportedProcessingCode; see ReasonForError.
func ParseRequest(msg *iso8583.Message) (*authz.Request, error) {
	mti, err := msg.GetMTI()
	if err != nil {
		return nil, fmt.Errorf("%w: reading MTI: %w", ErrFormat, err)
	}
	kind, repeat, err := kindOf(mti)
	if err != nil {
		return nil, err
	}
	f := fields{msg}
	if missing := f.missing(transactionMandatory); len(missing) > 0 {
		return nil, fieldErr("missing", missing...)
	}

	req := &authz.Request{Kind: kind, Repeat: repeat, MTI: mti, ReceivedAt: time.Now()}

	if req.PAN, err = f.digits(2, 12, 19); err != nil {
		return nil, err
	}
	pc, err := f.processingCode()
	if err != nil {
		return nil, err
	}
	req.TxnType = pc[:2]
	if req.Amount, err = f.amount(4); err != nil {
		return nil, err
	}
	if req.Currency, err = f.digits(49, 3, 3); err != nil {
		return nil, err
	}
	if f.has(6) {
		if req.BillingAmount, err = f.amount(6); err != nil {
			return nil, err
		}
	}
	if req.BillingCurrency, err = f.optionalDigits(51, 3, 3); err != nil {
		return nil, err
	}
	if req.TransmissionTime, err = f.transmissionTime(); err != nil {
		return nil, err
	}
	if req.STAN, err = f.digits(11, 6, 6); err != nil {
		return nil, err
	}
	if t, err := f.optionalDigits(12, 6, 6); err != nil {
		return nil, err
	} else if t != "" && !validHHMMSS(t) {
		return nil, fieldErr("is not a time hhmmss", 12)
	}
	if d, err := f.optionalDigits(13, 4, 4); err != nil {
		return nil, err
	} else if d != "" && !validMMDD(d) {
		return nil, fieldErr("is not a date MMDD", 13)
	}
	if req.Expiry, err = f.optionalDigits(14, 4, 4); err != nil {
		return nil, err
	}
	if req.Expiry != "" && !validMonth(req.Expiry[2:]) {
		return nil, fieldErr("is not a date YYMM", 14)
	}
	if req.MCC, err = f.optionalDigits(18, 4, 4); err != nil {
		return nil, err
	}
	if req.POSEntryMode, err = f.optionalDigits(22, 3, 3); err != nil {
		return nil, err
	}
	acq, err := f.optionalDigits(32, 1, 11)
	if err != nil {
		return nil, err
	}
	req.AcquirerID = normaliseInstitution(acq)
	if req.RRN = f.str(37); strings.TrimSpace(req.RRN) == "" {
		return nil, fieldErr("blank", 37)
	}
	req.TerminalID = f.str(41)
	req.MerchantID = f.str(42)
	req.MerchantName = strings.TrimRight(f.str(43), " ")
	req.MerchantCountry = authz.CountryFromDE43(f.str(43))
	if req.AcquirerCountry, err = f.optionalDigits(19, 3, 3); err != nil {
		return nil, err
	}
	if f.has(52) {
		b, err := msg.GetBytes(52)
		if err != nil {
			return nil, fmt.Errorf("%w: reading DE52: %w", ErrFormat, err)
		}
		req.PINBlock = strings.ToUpper(hex.EncodeToString(b))
	}
	if req.CVV2, err = f.cvv2(); err != nil {
		return nil, err
	}
	if req.Original, err = f.originalData(); err != nil {
		return nil, err
	}
	if req.ReplacementAmount, err = f.replacementAmount(); err != nil {
		return nil, err
	}
	return req, nil
}

// normaliseInstitution drops leading zeros from an institution id. DE32 is
// variable length ("12345") while DE90 carries the same id zero-filled to
// 11 digits ("00000012345"); comparing both as numbers is what lets a
// reversal's DE90 find its original's DE32.
func normaliseInstitution(id string) string {
	return strings.TrimLeft(id, "0")
}

// fields reads data elements of one message.
type fields struct{ msg *iso8583.Message }

func (f fields) has(id int) bool { return f.msg.GetField(id) != nil }

func (f fields) str(id int) string {
	s, _ := f.msg.GetString(id)
	return s
}

func (f fields) missing(ids []int) []int {
	var out []int
	for _, id := range ids {
		if !f.has(id) {
			out = append(out, id)
		}
	}
	return out
}

// digits returns field id, which must be present and be minLen..maxLen
// ASCII digits.
func (f fields) digits(id, minLen, maxLen int) (string, error) {
	if !f.has(id) {
		return "", fieldErr("missing", id)
	}
	s := f.str(id)
	if len(s) < minLen || len(s) > maxLen {
		return "", fieldErr(fmt.Sprintf("has %d digits, want %d to %d", len(s), minLen, maxLen), id)
	}
	if !isDigits(s) {
		return "", fieldErr("is not numeric", id)
	}
	return s, nil
}

// transmissionTime reads DE7, which must be a possible MMDDhhmmss.
func (f fields) transmissionTime() (string, error) {
	s, err := f.digits(7, 10, 10)
	if err != nil {
		return "", err
	}
	if !validDateTime(s) {
		return "", fieldErr("is not a date and time MMDDhhmmss", 7)
	}
	return s, nil
}

// validDateTime reports whether s (10 digits) is a possible MMDDhhmmss.
func validDateTime(s string) bool {
	return len(s) == 10 && validMMDD(s[:4]) && validHHMMSS(s[4:])
}

// daysInMonth allows 29 February: the year is not on the wire.
var daysInMonth = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

// validMMDD reports whether s (4 digits) is a possible month and day.
func validMMDD(s string) bool {
	if len(s) != 4 || !isDigits(s) || !validMonth(s[:2]) {
		return false
	}
	m, d := twoDigits(s[:2]), twoDigits(s[2:])
	return d >= 1 && d <= daysInMonth[m]
}

// validHHMMSS reports whether s (6 digits) is a possible time of day.
func validHHMMSS(s string) bool {
	return len(s) == 6 && isDigits(s) && twoDigits(s[:2]) <= 23 && twoDigits(s[2:4]) <= 59 && twoDigits(s[4:]) <= 59
}

// validMonth reports whether s (2 digits) is 01 to 12.
func validMonth(s string) bool {
	if len(s) != 2 || !isDigits(s) {
		return false
	}
	m := twoDigits(s)
	return m >= 1 && m <= 12
}

func twoDigits(s string) int { return int(s[0]-'0')*10 + int(s[1]-'0') }

// optionalDigits is digits for a conditional field: absent reads as "".
func (f fields) optionalDigits(id, minLen, maxLen int) (string, error) {
	if !f.has(id) {
		return "", nil
	}
	return f.digits(id, minLen, maxLen)
}

// amount reads a zero-filled 12-digit amount (DE4, DE6). moov-io strips the
// zero fill, so a zero amount reads as "".
func (f fields) amount(id int) (int64, error) {
	s := f.str(id)
	if s == "" {
		return 0, nil
	}
	if len(s) > 12 || !isDigits(s) {
		return 0, fieldErr("is not a 12-digit amount", id)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fieldErr("is not a 12-digit amount", id)
	}
	return n, nil
}

// processingCode returns DE3 as six digits. moov-io keeps DE3 as a number,
// so "003000" reads as 3000 and needs its zeros back.
func (f fields) processingCode() (string, error) {
	s := f.str(3)
	if len(s) > 6 || !isDigits(s) {
		return "", fieldErr("is not a 6-digit processing code", 3)
	}
	pc := strings.Repeat("0", 6-len(s)) + s
	if !supportedTxnTypes[pc[:2]] {
		return "", fmt.Errorf("DE3 transaction type %s: %w", pc[:2], ErrUnsupportedProcessingCode)
	}
	return pc, nil
}

// cvv2 reads the CVV2 from DE48 (additional data, private use), laid out
// as Mastercard's DE48: an optional one-letter transaction category code,
// then subelements of a 2-digit tag, a 2-digit length and the value; tag
// 92 carries the CVV2 (3 or 4 digits). Other subelements are skipped.
func (f fields) cvv2() (string, error) {
	if !f.has(48) {
		return "", nil
	}
	s := f.str(48)
	if s != "" && (s[0] < '0' || s[0] > '9') {
		s = s[1:]
	}
	for len(s) > 0 {
		if len(s) < 4 || !isDigits(s[:4]) {
			return "", fieldErr("is not a list of tag-length-value subelements", 48)
		}
		tag, n := s[:2], int(s[2]-'0')*10+int(s[3]-'0')
		if len(s) < 4+n {
			return "", fieldErr("has a subelement longer than the field", 48)
		}
		if v := s[4 : 4+n]; tag == "92" {
			if (n != 3 && n != 4) || !isDigits(v) {
				return "", fieldErr("subelement 92 is not a 3 or 4 digit CVV2", 48)
			}
			return v, nil
		}
		s = s[4+n:]
	}
	return "", nil
}

// originalData parses DE90: original MTI (4), STAN (6), transmission date
// and time (10), acquirer (11), forwarding institution (11, not used). An
// all-zero DE90, which some acquirers send when they do not know the
// original, reads as absent so the engine falls back to DE37 + DE2.
func (f fields) originalData() (*authz.OriginalData, error) {
	if !f.has(90) {
		return nil, nil
	}
	s := f.str(90)
	if len(s) != 42 || !isDigits(s) {
		return nil, fieldErr("is not 42 digits", 90)
	}
	if strings.Trim(s[:20], "0") == "" {
		return nil, nil
	}
	if !validDateTime(s[10:20]) {
		return nil, fieldErr("has an original transmission date and time that is not MMDDhhmmss", 90)
	}
	return &authz.OriginalData{
		MTI:              s[0:4],
		STAN:             s[4:10],
		TransmissionTime: s[10:20],
		AcquirerID:       normaliseInstitution(s[20:31]),
	}, nil
}

// replacementAmount reads the actual transaction amount, the first 12
// digits of DE95. The remaining 30 characters (settlement, billing amounts
// and fees) are not used.
func (f fields) replacementAmount() (*int64, error) {
	if !f.has(95) {
		return nil, nil
	}
	s := f.str(95)
	if len(s) != 42 || !isDigits(s[:12]) {
		return nil, fieldErr("does not start with a 12-digit amount", 95)
	}
	n, err := strconv.ParseInt(s[:12], 10, 64)
	if err != nil {
		return nil, fieldErr("does not start with a 12-digit amount", 95)
	}
	return &n, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// echoedFields are copied from request to response when present
// (README.md, "Fields written"), so the processor can match the answer
// without state.
var echoedFields = []int{2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49}

// echoedNetworkFields are copied into an 0810 (README.md, "Fields
// written"): the identity fields of the list above plus DE70, which tells
// the peer which management function is answered.
var echoedNetworkFields = []int{7, 11, 32, 37, 70}

// BuildResponse answers req with decision d in profile p: response MTI,
// echoed fields, DE39 from the profile's table, and on approvals DE38 and
// DE54. ApprovedPartial carries the approved amount (d.Amount) in DE4 as
// networks do for partial approvals. It fails only for an MTI that has no
// answer, a reason the profile lacks, or a decision that does not fit the
// layout (an approval code over 6 characters).
func BuildResponse(p *Profile, req *iso8583.Message, d authz.Decision) (*iso8583.Message, error) {
	mti, err := req.GetMTI()
	if err != nil {
		return nil, fmt.Errorf("building response: reading MTI: %w", err)
	}
	respMTI, err := ResponseMTI(mti)
	if err != nil {
		return nil, fmt.Errorf("building response: %w", err)
	}
	code, ok := p.Code(d.Reason)
	if !ok {
		return nil, fmt.Errorf("building response: %w: %q in profile %s", ErrUnknownReason, d.Reason, p.Name)
	}

	resp := iso8583.NewMessage(p.Spec)
	resp.MTI(respMTI)
	echo := echoedFields
	file := isFileUpdateRequest(mti)
	switch {
	case isNetworkRequest(mti):
		echo = echoedNetworkFields
	case file:
		echo = echoedFileFields
	}
	if err := copyFields(resp, req, echo); err != nil {
		return nil, fmt.Errorf("building response: %w", err)
	}
	if err := resp.Field(39, code); err != nil {
		return nil, fmt.Errorf("building response: setting DE39: %w", err)
	}

	if file {
		return resp, nil // an 0312 carries no approval code nor amounts
	}
	if d.Reason == authz.ReasonApproved || d.Reason == authz.ReasonApprovedPartial {
		ac, err := approvalCode(d.ApprovalCode)
		if err != nil {
			return nil, fmt.Errorf("building response: %w", err)
		}
		if err := resp.Field(38, ac); err != nil {
			return nil, fmt.Errorf("building response: setting DE38: %w", err)
		}
		if d.Reason == authz.ReasonApprovedPartial && d.Amount > 0 {
			if err := resp.Field(4, strconv.FormatInt(d.Amount, 10)); err != nil {
				return nil, fmt.Errorf("building response: setting DE4: %w", err)
			}
		}
	}
	if d.HasAvailable && (d.Reason == authz.ReasonApproved || d.Reason == authz.ReasonApprovedPartial) {
		pc := fields{req}.str(3)
		if len(pc) < 6 {
			pc = strings.Repeat("0", 6-len(pc)) + pc
		}
		cur := d.Currency
		if cur == "" {
			cur = fields{req}.str(49)
		}
		de54, err := AdditionalAmount(pc[2:4], "02", cur, d.Available)
		if err != nil {
			return nil, fmt.Errorf("building response: %w", err)
		}
		if err := resp.Field(54, de54); err != nil {
			return nil, fmt.Errorf("building response: setting DE54: %w", err)
		}
	}
	return resp, nil
}

// setFaultField names the data element at fault in a format-error answer:
// DE44 (additional response data) carries its number as three digits, e.g.
// "041". Nothing is added for other answers, nor when the fault is not a
// data element of the message (the MTI, data after the last field).
func setFaultField(resp *iso8583.Message, reason authz.Reason, fault int) error {
	if reason != authz.ReasonFormatError || fault < 1 || fault > 128 {
		return nil
	}
	if err := resp.Field(44, fmt.Sprintf("%03d", fault)); err != nil {
		return fmt.Errorf("building response: setting DE44: %w", err)
	}
	return nil
}

// approvalCode fits the engine's code into DE38 (an6): shorter codes are
// zero-filled on the left so an approval never goes out without one.
func approvalCode(c string) (string, error) {
	if len(c) > 6 {
		return "", fmt.Errorf("approval code of %d characters does not fit DE38", len(c))
	}
	return strings.Repeat("0", 6-len(c)) + c, nil
}

// AdditionalAmount formats one 20-character DE54 entry: account type (2),
// amount type (2, "02" available balance), numeric currency (3), sign (C
// for credit, D for debit) and 12-digit amount.
func AdditionalAmount(accountType, amountType, currency string, amount int64) (string, error) {
	if len(accountType) != 2 || len(amountType) != 2 || len(currency) != 3 || !isDigits(currency) {
		return "", fmt.Errorf("DE54 entry: malformed account type %q, amount type %q or currency %q", accountType, amountType, currency)
	}
	sign := byte('C')
	if amount < 0 {
		sign = 'D'
		amount = -amount
	}
	if amount > 999_999_999_999 {
		return "", fmt.Errorf("DE54 entry: amount %d exceeds 12 digits", amount)
	}
	return fmt.Sprintf("%s%s%s%c%012d", accountType, amountType, currency, sign, amount), nil
}

// copyFields copies the listed fields of src that are set into dst. A
// negative DE3 (moov-io reads "-00001" as the number -1) is left out: it
// would pack as "0000-1", which the peer could not unpack.
func copyFields(dst, src *iso8583.Message, ids []int) error {
	for _, id := range ids {
		f := src.GetField(id)
		if f == nil {
			continue
		}
		if n, ok := f.(*field.Numeric); ok && n.Value() < 0 {
			continue
		}
		b, err := src.GetBytes(id)
		if err != nil {
			return fmt.Errorf("reading DE%d: %w", id, err)
		}
		if err := dst.BinaryField(id, b); err != nil {
			return fmt.Errorf("echoing DE%d: %w", id, err)
		}
	}
	return nil
}
