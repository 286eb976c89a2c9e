package iso

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/antaca/antaca/authz"
)

// FuzzParseFrame feeds arbitrary bytes through what the server does with
// them: frame reading (both headers), unpacking (both profiles),
// ParseRequest or network management, and BuildResponse with the fallbacks
// the server uses. It must never panic, every request MTI must get an
// answer, and that answer must unpack with the right MTI and code.
//
//	go test ./iso -run '^$' -fuzz FuzzParseFrame -fuzztime 60s
func FuzzParseFrame(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, fr := range []Framing{{Header: Binary2}, {Header: ASCII4}} {
			r := bytes.NewReader(data)
			for range 8 {
				frame, err := fr.ReadFrame(r)
				if err != nil {
					break
				}
				for _, p := range []*Profile{cmfProfile, iso87Profile} {
					checkFrame(t, p, frame)
				}
			}
		}
	})
}

func checkFrame(t *testing.T, p *Profile, frame []byte) {
	if len(frame) < 4 || !isDigits(string(frame[:4])) {
		return // the server closes the connection
	}
	mti := string(frame[:4])
	if isResponseMTI(mti) {
		return // not answered
	}
	var reason authz.Reason
	fault := -1
	msg, err := unpackFrame(p, frame)
	if err != nil {
		reason, fault = authz.ReasonFormatError, FaultField(err)
	} else if isNetworkRequest(mti) {
		reason, err = NetworkReason(msg)
		fault = FaultField(err)
	} else if req, err := ParseRequest(msg); err != nil {
		reason, fault = ReasonForError(err), FaultField(err)
		if reason != authz.ReasonFormatError && reason != authz.ReasonInvalidTransaction {
			t.Fatalf("ParseRequest error %v maps to %s", err, reason)
		}
	} else {
		if req.Amount < 0 || len(req.STAN) != 6 || !isDigits(req.PAN) || len(req.TxnType) != 2 || req.Kind == 0 ||
			!validDateTime(req.TransmissionTime) {
			t.Fatalf("ParseRequest accepted an invalid request: %+v", req)
		}
		for _, text := range []string{req.RRN, req.TerminalID, req.MerchantID, req.MerchantName} {
			for i := 0; i < len(text); i++ {
				if text[i] < 0x20 || text[i] > 0x7e {
					t.Fatalf("ParseRequest accepted byte 0x%02X in a text field: %+v", text[i], req)
				}
			}
		}
		reason = authz.ReasonApproved
	}

	resp, err := BuildResponse(p, msg, authz.Decision{Reason: reason, ApprovalCode: "123456"})
	if err == nil {
		err = setFaultField(resp, reason, fault)
	}
	var packed []byte
	if err == nil {
		packed, err = resp.Pack()
	}
	if err != nil {
		if packed, err = minimalResponse(p, mti, msg, reason); err != nil {
			t.Fatalf("MTI %s: no answer possible: %v", mti, err)
		}
	}
	back := iso8583.NewMessage(p.Spec)
	if err := back.Unpack(packed); err != nil {
		t.Fatalf("MTI %s: answer %q does not unpack: %v", mti, packed, err)
	}
	wantMTI, _ := ResponseMTI(mti)
	if got, _ := back.GetMTI(); got != wantMTI {
		t.Fatalf("answer MTI %s, want %s", got, wantMTI)
	}
	if got, _ := back.GetString(39); got != p.Codes[reason] {
		t.Fatalf("answer DE39 %q, want %q (%s)", got, p.Codes[reason], reason)
	}
	// The answer itself follows the wire rules it enforces.
	if err := checkWire(p.Spec, back, packed, 0); err != nil {
		t.Fatalf("MTI %s: answer %q breaks the wire rules: %v", mti, packed, err)
	}
}

var fixedTime = time.Date(2026, 6, 12, 10, 15, 30, 0, time.UTC)

type fuzzSeed struct {
	name string
	data []byte
}

// fuzzSeeds are the corpus in testdata/fuzz/FuzzParseFrame: valid
// messages of each kind, both framings, and the malformed shapes the
// server tests use.
func fuzzSeeds(tb testing.TB) []fuzzSeed {
	tb.Helper()
	frame := func(f Framing, payload []byte) []byte {
		b, err := f.AppendFrame(nil, payload)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	packed := func(mti string, fields map[int]*string) []byte {
		m := iso8583.NewMessage(packSpec(cmfProfile))
		m.MTI(mti)
		for id, v := range baseFields {
			if f, ok := fields[id]; ok && f == nil {
				continue
			}
			if err := m.Field(id, v); err != nil {
				tb.Fatal(err)
			}
		}
		for id, v := range fields {
			if v != nil {
				if err := m.Field(id, *v); err != nil {
					tb.Fatal(err)
				}
			}
		}
		b, err := m.Pack()
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	auth := packed("0100", nil)
	rev := packed("0420", map[int]*string{
		90: s("0100" + "000077" + "0612101500" + "00000123456" + "00000000000"),
		95: s("000000000500" + strings.Repeat("0", 30)),
	})
	echo, err := NewNetworkRequest(cmfProfile, NetworkEcho, "000001", fixedTime)
	if err != nil {
		tb.Fatal(err)
	}
	echoB, err := echo.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	bin, asc := Framing{}, Framing{Header: ASCII4}
	return []fuzzSeed{
		{"auth_0100", frame(bin, auth)},
		{"auth_0100_ascii4", frame(asc, auth)},
		{"financial_0200_balance", frame(bin, packed("0200", map[int]*string{3: s("301000"), 4: s("000000000000")}))},
		{"repeat_0101", frame(bin, packed("0101", nil))},
		{"advice_0120", frame(bin, packed("0120", nil))},
		{"reversal_advice_0420", frame(bin, rev)},
		{"echo_0800", frame(bin, echoB)},
		{"two_frames", append(frame(bin, auth), frame(bin, echoB)...)},
		{"missing_fields", frame(bin, packed("0100", map[int]*string{2: nil, 4: nil}))},
		{"truncated", frame(bin, auth[:len(auth)-20])},
		{"bad_bitmap", frame(bin, []byte("0100ZZZZZZZZZZZZZZZZ165412751234567890"))},
		{"negative_processing_code", frame(bin, bytes.Replace(auth, []byte(baseFields[2]+"000000"), []byte(baseFields[2]+"-00001"), 1))},
		{"unknown_field_100", frame(bin, []byte("0100"+"8000000000000000"+"0000000010000000"+"x"))},
		{"response_0110", frame(bin, []byte("01100000000000000000"))},
		{"oversize_header", []byte{0xff, 0xff, '0', '1', '0', '0'}},
		{"not_an_mti", frame(bin, []byte("ABCD"))},
		// Hostile input that once reached the ledger, and its kin.
		{"de41_nul_bytes", frame(bin, packed("0100", map[int]*string{41: s("\x00\x00\x00\x00\x00\x00\x00\x00")}))},
		{"de37_nul", frame(bin, packed("0100", map[int]*string{37: s("4159100\x000001")}))},
		{"de43_control_byte", frame(bin, packed("0100", map[int]*string{43: s("ANTACA TEST SHOP\x1b        BERLIN       DE")}))},
		{"de11_not_digits", frame(bin, packed("0100", map[int]*string{11: s("00A001")}))},
		{"de7_impossible", frame(bin, packed("0100", map[int]*string{7: s("9999999999")}))},
		{"de12_impossible", frame(bin, packed("0100", map[int]*string{12: s("256161")}))},
		{"de13_impossible", frame(bin, packed("0100", map[int]*string{13: s("1399")}))},
		{"de14_month_13", frame(bin, packed("0100", map[int]*string{14: s("2813")}))},
		{"trailing_data", frame(bin, append(append([]byte{}, auth...), "XYZ"...))},
		// Found by the fuzzer: a bad DE11 before a DE64 that does not
		// unpack was echoed.
		{"charset_before_broken_field", []byte("\x0000000001000000000000100000A0X000000000000000000000")},
		{"charset_before_field_88_of_a_third_bitmap", []byte("\x00A0000801000000000000080000100000000000000000000000000A000000000000000000")},
		{"third_bitmap", frame(bin, []byte("0800"+"8220000000000000"+"8400000000000000"+"0000000000000000"+"0612101530"+"000001"+"301"))},
	}
}

// TestFuzzSeedCorpus keeps testdata/fuzz/FuzzParseFrame in step with
// fuzzSeeds; go generate ./iso (or -update) rewrites it.
func TestFuzzSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseFrame")
	for _, seed := range fuzzSeeds(t) {
		path := filepath.Join(dir, seed.name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed.data)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go generate ./iso)", err)
		}
		if string(got) != want {
			t.Errorf("%s is stale; run go generate ./iso", path)
		}
	}
}
