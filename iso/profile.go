package iso

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/prefix"
	"github.com/moov-io/iso8583/specs"

	"github.com/antaca/antaca/authz"
)

//go:generate go test -run ^(TestSpecFilesMatchExport|TestFuzzSeedCorpus)$ -update .

// Profile names accepted by ProfileByName (and ANTACA_ISO_PROFILE).
const (
	ProfileCMF   = "cmf"
	ProfileISO87 = "iso87"
)

// DefaultProfile is the profile used when none is configured.
const DefaultProfile = ProfileCMF

// Profile is one wire dialect: the field layout and the action codes that go
// into DE39. The two profiles share every field but DE39, so a processor link
// changes dialect with one setting and nothing else in the switch notices.
type Profile struct {
	Name string
	Spec *iso8583.MessageSpec
	// Codes translates each decision reason into this profile's DE39.
	Codes map[authz.Reason]string
}

// Code returns the DE39 value for reason and whether the profile knows it.
func (p *Profile) Code(reason authz.Reason) (string, bool) {
	c, ok := p.Codes[reason]
	return c, ok
}

// ErrUnknownProfile is returned by ProfileByName for a name it does not know.
var ErrUnknownProfile = errors.New("unknown ISO profile")

// ProfileByName returns the profile called name ("cmf" or "iso87"). The
// returned profile is shared; callers must not modify it.
func ProfileByName(name string) (*Profile, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case ProfileCMF:
		return cmfProfile, nil
	case ProfileISO87:
		return iso87Profile, nil
	}
	return nil, fmt.Errorf("%w %q (want %q or %q)", ErrUnknownProfile, name, ProfileCMF, ProfileISO87)
}

// ProfileNames lists the profile names, for flag help and errors.
func ProfileNames() []string { return []string{ProfileCMF, ProfileISO87} }

// ExportSpec renders the profile's field layout as moov-io JSON
// (specs.ExportJSON). The files iso/spec_cmf.json and iso/spec_iso87.json
// are this output, committed so that a processor can review the layout
// without reading Go; a test keeps them equal to the code.
func ExportSpec(p *Profile) ([]byte, error) {
	if p == nil || p.Spec == nil {
		return nil, errors.New("exporting spec: no profile")
	}
	b, err := specs.ExportJSON(p.Spec)
	if err != nil {
		return nil, fmt.Errorf("exporting spec of profile %s: %w", p.Name, err)
	}
	return b, nil
}

var (
	cmfProfile   = newProfile(ProfileCMF, "Antaca cmf: ISO 8583:1987 ASCII with 4-digit action codes", 4, codeCMF)
	iso87Profile = newProfile(ProfileISO87, "Antaca iso87: ISO 8583:1987 ASCII", 2, codeISO87)
)

type codeColumn int

const (
	codeCMF codeColumn = iota
	codeISO87
)

// newProfile builds a profile from moov-io's Spec87ASCII, the standard
// bitmap, the 1987 fields it lacks (DE70, DE91, DE95, DE101) and DE120 for
// file updates, and the DE39 length of the dialect.
// The base spec's field map is copied, never modified: other code in the
// process may use it.
func newProfile(name, description string, de39Len int, column codeColumn) *Profile {
	fields := maps.Clone(specs.Spec87ASCII.Fields)
	// Spec87ASCII declares one 16-byte (32 hex characters) bitmap, so bit 1
	// would only announce fields past 128 and is never set. ISO 8583 has
	// 8-byte bitmaps: the primary one is 16 hex characters and bit 1 set
	// announces a secondary one (fields 65-128: DE70, DE90, DE95). moov-io's
	// Bitmap does exactly that with Length 8 and automatic expansion.
	fields[1] = field.NewBitmap(&field.Spec{
		Length:      8,
		Description: "Bitmap",
		Enc:         encoding.BytesToASCIIHex,
		Pref:        prefix.Hex.Fixed,
	})
	fields[39] = field.NewString(&field.Spec{
		Length:      de39Len,
		Description: "Response Code",
		Enc:         encoding.ASCII,
		Pref:        prefix.ASCII.Fixed,
	})
	fields[70] = field.NewString(&field.Spec{
		Length:      3,
		Description: "Network Management Information Code",
		Enc:         encoding.ASCII,
		Pref:        prefix.ASCII.Fixed,
	})
	fields[95] = field.NewString(&field.Spec{
		Length:      42,
		Description: "Replacement Amounts",
		Enc:         encoding.ASCII,
		Pref:        prefix.ASCII.Fixed,
	})
	// File updates (0302 / 0312, fileupdate.go): the 1987 file update
	// code and file name, and DE120, reserved for private use in 1987,
	// as the record data of the update (the lock reason), where
	// Mastercard's issuer file updates carry their record.
	fields[91] = field.NewString(&field.Spec{
		Length:      1,
		Description: "File Update Code",
		Enc:         encoding.ASCII,
		Pref:        prefix.ASCII.Fixed,
	})
	fields[101] = field.NewString(&field.Spec{
		Length:      17,
		Description: "File Name",
		Enc:         encoding.ASCII,
		Pref:        prefix.ASCII.LL,
	})
	fields[120] = field.NewString(&field.Spec{
		Length:      999,
		Description: "Record Data",
		Enc:         encoding.ASCII,
		Pref:        prefix.ASCII.LLL,
	})
	spec := &iso8583.MessageSpec{Name: description, Fields: fields}
	if err := spec.Validate(); err != nil {
		panic(fmt.Sprintf("iso: profile %s: %v", name, err))
	}

	codes := make(map[authz.Reason]string, len(authz.Reasons()))
	for _, row := range actionCodes {
		code := row.cmf
		if column == codeISO87 {
			code = row.iso87
		}
		if len(code) != de39Len {
			panic(fmt.Sprintf("iso: profile %s: code %q for %q is not %d characters", name, code, row.label, de39Len))
		}
		for _, r := range row.reasons {
			if _, dup := codes[r]; dup {
				panic(fmt.Sprintf("iso: profile %s: reason %s in two rows", name, r))
			}
			codes[r] = code
		}
	}
	return &Profile{Name: name, Spec: spec, Codes: codes}
}

// actionCodeRow is one row of the action-code table of README.md: its label
// as written there, the code in each profile, and the internal reasons that
// answer with it.
type actionCodeRow struct {
	label   string
	cmf     string
	iso87   string
	reasons []authz.Reason
}

// actionCodes is the translation from decision reasons to DE39: the table
// of README.md ("Action codes (DE39)") row for row, in its order, with its
// labels. Reasons the table does not name sit in the row whose label
// covers them (wrong expiry with expired card, removed card with unknown
// PAN, wrong CVV2 with do not honour, both insufficient balances with
// insufficient funds, currency mismatch with not permitted). Where two rows
// share a code, the reason still tells them apart in logs and metrics.
// TestREADMEActionCodeTable keeps README.md's table and this one identical.
var actionCodes = []actionCodeRow{
	{"approved", "0000", "00", rs(authz.ReasonApproved)},
	{"approved for partial amount", "0002", "10", rs(authz.ReasonApprovedPartial)},
	{"do not honour", "1000", "05", rs(authz.ReasonDoNotHonour, authz.ReasonIncorrectCVV2, authz.ReasonPartnerDeclined, authz.ReasonStandInDeclined)},
	{"expired card / wrong expiry", "1001", "54", rs(authz.ReasonExpiredCard, authz.ReasonWrongExpiry)},
	{"restricted card", "1004", "62", rs(authz.ReasonRestrictedCard)},
	{"invalid amount", "1010", "13", rs(authz.ReasonInvalidAmount)},
	{"unknown PAN / removed card", "1011", "14", rs(authz.ReasonUnknownCard, authz.ReasonCardRemoved)},
	{"insufficient funds (user or partner balance)", "1016", "51", rs(authz.ReasonInsufficientUserFunds, authz.ReasonInsufficientPartnerFunds)},
	{"incorrect PIN", "1017", "55", rs(authz.ReasonIncorrectPIN)},
	{"transaction not permitted to cardholder", "1019", "57", rs(authz.ReasonNotPermitted, authz.ReasonCurrencyMismatch, authz.ReasonControlMCC, authz.ReasonControlCountry, authz.ReasonControlChannel)},
	{"exceeds amount limit", "1021", "61", rs(authz.ReasonExceedsAmountLimit, authz.ReasonControlTransactionMax, authz.ReasonControlAmountLimit)},
	{"exceeds frequency limit", "1023", "65", rs(authz.ReasonExceedsFrequencyLimit, authz.ReasonControlCountLimit)},
	{"physical card not yet activated", "1806", "78", rs(authz.ReasonCardNotActivated)},
	{"card locked, reason 1 card lost", "2008", "41", rs(authz.ReasonLockedLost)},
	{"card locked, reason 2 card stolen", "2009", "43", rs(authz.ReasonLockedStolen)},
	{"card locked, reason 3 pending query", "1000", "05", rs(authz.ReasonLockedPendingQuery)},
	{"card locked, reason 4 card consolidation", "1016", "62", rs(authz.ReasonLockedConsolidation)},
	{"card locked, reason 5 card inactive", "1018", "78", rs(authz.ReasonLockedInactive)},
	{"card locked, reason 6 PIN tries exceeded", "1006", "75", rs(authz.ReasonLockedPINTries)},
	{"card locked, reason 7 suspected fraud", "1002", "59", rs(authz.ReasonLockedFraud)},
	{"card locked, reason 8 card replaced", "1011", "14", rs(authz.ReasonLockedReplaced)},
	{"reversal accepted", "4000", "00", rs(authz.ReasonReversalAccepted)},
	{"advice accepted", "9001", "00", rs(authz.ReasonAdviceAccepted)},
	{"network management accepted", "8000", "00", rs(authz.ReasonNetworkAccepted)},
	{"original not found (reversal)", "1816", "25", rs(authz.ReasonOriginalNotFound)},
	{"format error / missing field", "9100", "30", rs(authz.ReasonFormatError)},
	{"invalid transaction (unsupported processing code)", "9102", "12", rs(authz.ReasonInvalidTransaction)},
	{"issuer unavailable (dependency down, deadline passed)", "9112", "91", rs(authz.ReasonIssuerUnavailable)},
	{"system error", "9109", "96", rs(authz.ReasonSystemError)},
}

func rs(r ...authz.Reason) []authz.Reason { return r }
