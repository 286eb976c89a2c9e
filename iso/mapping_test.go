package iso

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/prefix"

	"github.com/antaca/antaca/authz"
)

// packSpec is p.Spec with a packable DE52 (16 ASCII hex characters, the
// same bytes on the wire), as isoclient.Spec defines it.
func packSpec(p *Profile) *iso8583.MessageSpec {
	fields := maps.Clone(p.Spec.Fields)
	fields[52] = field.NewString(&field.Spec{Length: 16, Enc: encoding.ASCII, Pref: prefix.ASCII.Fixed})
	return &iso8583.MessageSpec{Name: "pack", Fields: fields}
}

var baseFields = map[int]string{
	2: "5412751234567890", 3: "000000", 4: "000000001050", 7: "0612101530", 11: "000123",
	12: "101530", 13: "0612", 14: "2812", 18: "5411", 22: "051", 32: "00123456",
	37: "415910000001", 41: "TERM0001", 42: "MERCHANT0000001",
	43: "SHOP                           BERLIN DE", 49: "978", 52: "0412AC89ABCDEF67",
}

// wireMessage builds a message with fields (nil values drop a base field),
// packs it and unpacks it with the profile's spec, as the server sees it.
func wireMessage(t testing.TB, p *Profile, mti string, fields map[int]*string) *iso8583.Message {
	t.Helper()
	m := iso8583.NewMessage(packSpec(p))
	m.MTI(mti)
	all := map[int]string{}
	maps.Copy(all, baseFields)
	for id, v := range fields {
		if v == nil {
			delete(all, id)
		} else {
			all[id] = *v
		}
	}
	for id, v := range all {
		if err := m.Field(id, v); err != nil {
			t.Fatalf("DE%d: %v", id, err)
		}
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := iso8583.NewMessage(p.Spec)
	if err := out.Unpack(b); err != nil {
		t.Fatal(err)
	}
	return out
}

func s(v string) *string { return &v }

func TestParseRequest(t *testing.T) {
	p := cmfProfile
	req, err := ParseRequest(wireMessage(t, p, "0100", nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"PAN":          {req.PAN, "5412751234567890"},
		"TxnType":      {req.TxnType, "00"},
		"Currency":     {req.Currency, "978"},
		"Expiry":       {req.Expiry, "2812"},
		"PINBlock":     {req.PINBlock, "0412AC89ABCDEF67"},
		"AcquirerID":   {req.AcquirerID, "123456"},
		"MerchantName": {req.MerchantName, "SHOP                           BERLIN DE"},
		"STAN":         {req.STAN, "000123"},
		"RRN":          {req.RRN, "415910000001"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if req.Amount != 1050 || req.Kind != authz.KindAuthorization || req.Repeat || req.Original != nil || req.ReplacementAmount != nil {
		t.Errorf("request %+v", req)
	}

	zero, err := ParseRequest(wireMessage(t, p, "0200", map[int]*string{4: s("000000000000"), 3: s("301000"), 6: s("000000000999"), 51: s("840")}))
	if err != nil {
		t.Fatal(err)
	}
	if zero.Amount != 0 || zero.TxnType != "30" || zero.BillingAmount != 999 || zero.BillingCurrency != "840" {
		t.Errorf("balance inquiry request %+v", zero)
	}
}

func TestParseRequestOriginalData(t *testing.T) {
	tests := []struct {
		name     string
		de90     string
		de95     string
		wantOrig *authz.OriginalData
		wantRepl int64
	}{
		{
			name:     "full",
			de90:     "0100" + "000077" + "0612101500" + "00000123456" + "00000000000",
			de95:     "000000000500" + strings.Repeat("0", 30),
			wantOrig: &authz.OriginalData{MTI: "0100", STAN: "000077", TransmissionTime: "0612101500", AcquirerID: "123456"},
			wantRepl: 500,
		},
		{
			name:     "all-zero DE90 reads as absent",
			de90:     strings.Repeat("0", 42),
			de95:     strings.Repeat("0", 42),
			wantRepl: 0,
		},
		{
			name:     "no acquirer in DE90",
			de90:     "0200" + "000001" + "0101000000" + strings.Repeat("0", 22),
			de95:     "000000001000" + strings.Repeat(" ", 30),
			wantOrig: &authz.OriginalData{MTI: "0200", STAN: "000001", TransmissionTime: "0101000000"},
			wantRepl: 1000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := ParseRequest(wireMessage(t, cmfProfile, "0420", map[int]*string{90: &tt.de90, 95: &tt.de95}))
			if err != nil {
				t.Fatal(err)
			}
			if req.Kind != authz.KindReversalAdvice {
				t.Errorf("kind %v", req.Kind)
			}
			if (req.Original == nil) != (tt.wantOrig == nil) || (req.Original != nil && *req.Original != *tt.wantOrig) {
				t.Errorf("Original = %+v, want %+v", req.Original, tt.wantOrig)
			}
			if req.ReplacementAmount == nil || *req.ReplacementAmount != tt.wantRepl {
				t.Errorf("ReplacementAmount = %v, want %d", req.ReplacementAmount, tt.wantRepl)
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	tests := []struct {
		name       string
		mti        string
		fields     map[int]*string
		wantReason authz.Reason
		wantFields []int
	}{
		{"missing PAN and amount", "0100", map[int]*string{2: nil, 4: nil}, authz.ReasonFormatError, []int{2, 4}},
		{"missing every identity field", "0400", map[int]*string{7: nil, 11: nil, 37: nil}, authz.ReasonFormatError, []int{7, 11, 37}},
		{"missing currency", "0220", map[int]*string{49: nil}, authz.ReasonFormatError, []int{49}},
		{"non-numeric amount", "0100", map[int]*string{4: s("0000000010A0")}, authz.ReasonFormatError, []int{4}},
		{"non-numeric billing amount", "0100", map[int]*string{6: s("00000000-100")}, authz.ReasonFormatError, []int{6}},
		{"short PAN", "0100", map[int]*string{2: s("41111111")}, authz.ReasonFormatError, []int{2}},
		{"PAN with letters", "0100", map[int]*string{2: s("4111111111111ABC")}, authz.ReasonFormatError, []int{2}},
		{"STAN with letters", "0100", map[int]*string{11: s("00012A")}, authz.ReasonFormatError, []int{11}},
		{"transmission time with letters", "0100", map[int]*string{7: s("06121015XX")}, authz.ReasonFormatError, []int{7}},
		{"expiry with letters", "0100", map[int]*string{14: s("28AB")}, authz.ReasonFormatError, []int{14}},
		{"blank RRN", "0100", map[int]*string{37: s("            ")}, authz.ReasonFormatError, []int{37}},
		{"currency alpha", "0100", map[int]*string{49: s("EUR")}, authz.ReasonFormatError, []int{49}},
		{"DE90 not numeric", "0400", map[int]*string{90: s(strings.Repeat("X", 42))}, authz.ReasonFormatError, []int{90}},
		{"DE95 amount not numeric", "0400", map[int]*string{95: s(strings.Repeat(" ", 42))}, authz.ReasonFormatError, []int{95}},
		{"unsupported processing code", "0100", map[int]*string{3: s("500000")}, authz.ReasonInvalidTransaction, nil},
		{"unsupported MTI", "0300", nil, authz.ReasonFormatError, nil},
		{"1993 MTI", "1100", nil, authz.ReasonFormatError, nil},
		{"issuer-originated MTI", "0102", nil, authz.ReasonFormatError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRequest(wireMessage(t, cmfProfile, tt.mti, tt.fields))
			if err == nil {
				t.Fatal("ParseRequest succeeded")
			}
			if got := ReasonForError(err); got != tt.wantReason {
				t.Errorf("ReasonForError(%v) = %s, want %s", err, got, tt.wantReason)
			}
			var fe *FieldError
			if tt.wantFields != nil {
				if !errors.As(err, &fe) {
					t.Fatalf("error %v is not a FieldError", err)
				}
				if !equalInts(fe.Fields, tt.wantFields) {
					t.Errorf("fields %v, want %v", fe.Fields, tt.wantFields)
				}
			}
			if strings.Contains(err.Error(), baseFields[2]) || strings.Contains(err.Error(), "2812") {
				t.Errorf("error text carries card data: %v", err)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMandatoryFields(t *testing.T) {
	for _, mti := range []string{"0100", "0101", "0200", "0201", "0120", "0121", "0220", "0221", "0400", "0401", "0420", "0421"} {
		if got := MandatoryFields(mti); !equalInts(got, []int{2, 3, 4, 7, 11, 37, 49}) {
			t.Errorf("MandatoryFields(%s) = %v", mti, got)
		}
	}
	for _, mti := range []string{"0800", "0801"} {
		if got := MandatoryFields(mti); !equalInts(got, []int{11, 70}) {
			t.Errorf("MandatoryFields(%s) = %v", mti, got)
		}
	}
	if got := MandatoryFields("0300"); got != nil {
		t.Errorf("MandatoryFields(0300) = %v, want nil", got)
	}
}

func TestResponseMTI(t *testing.T) {
	for in, want := range map[string]string{
		"0100": "0110", "0101": "0110", "0120": "0130", "0121": "0130", "0200": "0210", "0201": "0210",
		"0220": "0230", "0221": "0230", "0400": "0410", "0401": "0410", "0420": "0430", "0421": "0430",
		"0800": "0810", "0300": "0310",
	} {
		got, err := ResponseMTI(in)
		if err != nil || got != want {
			t.Errorf("ResponseMTI(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"0110", "0810", "01", "ABCD", "01000"} {
		if got, err := ResponseMTI(in); err == nil {
			t.Errorf("ResponseMTI(%q) = %s, want error", in, got)
		}
	}
}

func TestBuildResponse(t *testing.T) {
	for _, p := range []*Profile{cmfProfile, iso87Profile} {
		t.Run(p.Name, func(t *testing.T) {
			req := wireMessage(t, p, "0101", map[int]*string{3: s("001000")})
			resp, err := BuildResponse(p, req, authz.Decision{
				Reason: authz.ReasonApproved, ApprovalCode: "ABC123", Available: 123456, HasAvailable: true, Currency: "978",
			})
			if err != nil {
				t.Fatal(err)
			}
			b, err := resp.Pack()
			if err != nil {
				t.Fatal(err)
			}
			back := iso8583.NewMessage(p.Spec)
			if err := back.Unpack(b); err != nil {
				t.Fatal(err)
			}
			want := map[int]string{
				0: "0110", 2: baseFields[2], 3: "1000", 4: "1050", 7: baseFields[7], 11: baseFields[11],
				12: baseFields[12], 13: baseFields[13], 32: baseFields[32], 37: baseFields[37],
				41: baseFields[41], 42: baseFields[42], 49: "978",
				38: "ABC123", 39: p.Codes[authz.ReasonApproved], 54: "1002978C000000123456",
			}
			for id, w := range want {
				if got, _ := back.GetString(id); got != w {
					t.Errorf("DE%d = %q, want %q", id, got, w)
				}
			}
			for id := range back.GetFields() {
				if _, ok := want[id]; !ok && id != 1 {
					t.Errorf("unexpected DE%d in response", id)
				}
			}
		})
	}
}

func TestAdditionalAmount(t *testing.T) {
	got, err := AdditionalAmount("00", "02", "978", -1)
	if err != nil || got != "0002978D000000000001" || len(got) != 20 {
		t.Errorf("AdditionalAmount = %q, %v", got, err)
	}
	if _, err := AdditionalAmount("00", "02", "EUR", 1); err == nil {
		t.Error("alpha currency accepted")
	}
	if _, err := AdditionalAmount("00", "02", "978", 1_000_000_000_000); err == nil {
		t.Error("13-digit amount accepted")
	}
}

func TestNetworkReason(t *testing.T) {
	for code, want := range map[string]authz.Reason{"001": authz.ReasonNetworkAccepted, "002": authz.ReasonNetworkAccepted, "301": authz.ReasonNetworkAccepted, "161": authz.ReasonFormatError, "ABC": authz.ReasonFormatError} {
		m := iso8583.NewMessage(cmfProfile.Spec)
		m.MTI("0800")
		_ = m.Field(11, "000001")
		_ = m.Field(70, code)
		if got, _ := NetworkReason(m); got != want {
			t.Errorf("DE70 %s: %s, want %s", code, got, want)
		}
	}
}

func TestParseRequestCVV2(t *testing.T) {
	tests := []struct {
		name    string
		de48    string
		want    string
		wantErr bool
	}{
		{"with category code", "R9203123", "123", false},
		{"without category code", "9203123", "123", false},
		{"after another subelement", "T0102AB9204" + "1234", "1234", false},
		{"no subelement 92", "R0102AB", "", false},
		{"CVV2 of 2 digits", "R920212", "", true},
		{"letters in CVV2", "R9203A23", "", true},
		{"length past the end", "R9209123", "", true},
		{"not tag-length-value", "Rxx", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := ParseRequest(wireMessage(t, cmfProfile, "0100", map[int]*string{48: &tt.de48}))
			if tt.wantErr {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("err = %v, want a format error", err)
				}
				if err != nil && strings.Contains(err.Error(), tt.de48) {
					t.Fatalf("error %q quotes DE48", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.CVV2 != tt.want {
				t.Fatalf("CVV2 = %q, want %q", req.CVV2, tt.want)
			}
		})
	}
}
