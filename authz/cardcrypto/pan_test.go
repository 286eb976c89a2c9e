package cardcrypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLuhnKnownAnswers(t *testing.T) {
	valid := []string{
		"4111111111111111", // Visa test card
		"5555555555554444", // Mastercard test card
		"5555444433331111", // Mastercard test card
		"4012888888881881",
		"378282246310005", // Amex test card
		"6011111111111117",
		"79927398713", // the classic Luhn example
		"00",
	}
	for _, s := range valid {
		if !LuhnValid(s) {
			t.Errorf("LuhnValid(%s) = false, want true", s)
		}
	}
	invalid := []string{
		// 5555444455554444 is sometimes quoted as a Mastercard test card,
		// but its Luhn sum is 72: 5555444455554442 would be valid.
		"5555444455554444",
		"4111111111111112", "79927398710", "378282246310006",
		"", "0", "4111-1111-1111-1111", "411111111111111a", " 4111111111111111",
	}
	for _, s := range invalid {
		if LuhnValid(s) {
			t.Errorf("LuhnValid(%q) = true, want false", s)
		}
	}
}

func TestLuhnCheckDigitDetectsSingleDigitErrors(t *testing.T) {
	const pan = "4111111111111111"
	for i := range len(pan) {
		for d := byte('0'); d <= '9'; d++ {
			if d == pan[i] {
				continue
			}
			b := []byte(pan)
			b[i] = d
			if LuhnValid(string(b)) {
				t.Fatalf("Luhn accepted a single-digit change at position %d", i)
			}
		}
	}
}

func TestGeneratePAN(t *testing.T) {
	cases := []struct {
		bin    string
		length int
	}{
		{"412345", 16}, {"52345678", 16}, {"5234567", 16}, {"412345", 19}, {"41234567", 12}, {"371234", 15},
	}
	for _, c := range cases {
		seen := make(map[string]bool)
		var digitCount [10]int
		for range 1000 {
			pan, err := GeneratePAN(c.bin, c.length, nil)
			if err != nil {
				t.Fatalf("GeneratePAN(%s, %d): %v", c.bin, c.length, err)
			}
			if len(pan) != c.length || !strings.HasPrefix(pan, c.bin) || !LuhnValid(pan) {
				t.Fatalf("GeneratePAN(%s, %d) gave a PAN of length %d, prefix ok %v, Luhn ok %v",
					c.bin, c.length, len(pan), strings.HasPrefix(pan, c.bin), LuhnValid(pan))
			}
			seen[pan] = true
			for _, d := range pan[len(c.bin) : len(pan)-1] {
				digitCount[d-'0']++
			}
		}
		if randomDigits := c.length - len(c.bin) - 1; randomDigits >= 6 && len(seen) < 990 {
			t.Errorf("GeneratePAN(%s, %d): only %d distinct PANs of 1000", c.bin, c.length, len(seen))
		}
		for d, n := range digitCount {
			if n == 0 {
				t.Errorf("GeneratePAN(%s, %d): digit %d never drawn", c.bin, c.length, d)
			}
		}
	}
}

func TestGeneratePANDeterministicSource(t *testing.T) {
	// Bytes >= 250 are rejected; the rest map to b%10.
	src := []byte{250, 255, 1, 12, 23, 34, 45, 56, 67, 78, 89}
	pan, err := GeneratePAN("411111", 16, bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	want := "411111" + "123456789"
	want += string(luhnCheckDigit([]byte(want)))
	if pan != want {
		t.Fatalf("GeneratePAN = %s, want %s", pan, want)
	}
}

func TestGeneratePANErrors(t *testing.T) {
	for _, bin := range []string{"", "41234", "412345678", "41234a", "4 2345"} {
		if _, err := GeneratePAN(bin, 16, nil); !errors.Is(err, ErrInvalidBIN) {
			t.Errorf("GeneratePAN(%q): err = %v, want ErrInvalidBIN", bin, err)
		}
	}
	for _, n := range []int{0, 11, 20, -1} {
		if _, err := GeneratePAN("412345", n, nil); err == nil {
			t.Errorf("GeneratePAN(length %d): no error", n)
		}
	}
	boom := errors.New("entropy gone")
	if _, err := GeneratePAN("412345", 16, iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("GeneratePAN with a failing source: err = %v", err)
	}
	if _, err := GeneratePAN("412345", 16, bytes.NewReader([]byte{1, 2})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("GeneratePAN with a short source: err = %v", err)
	}
}

func TestNewCVVAndEqual(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		cvv, err := NewCVV(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(cvv) != 3 || !allDigits(cvv) {
			t.Fatalf("NewCVV gave %d characters, digits %v", len(cvv), allDigits(cvv))
		}
		seen[cvv] = true
	}
	if len(seen) < 500 {
		t.Errorf("NewCVV: only %d distinct values in 1000", len(seen))
	}
	if cvv, _ := NewCVV(bytes.NewReader([]byte{255, 7, 18, 29})); cvv != "789" {
		t.Errorf("NewCVV(deterministic) = %s, want 789", cvv)
	}
	if !CVVEqual("123", "123") || CVVEqual("123", "124") || CVVEqual("123", "1234") ||
		CVVEqual("", "") || CVVEqual("123", "") {
		t.Error("CVVEqual gives wrong answers")
	}
}

func TestPANAndCVVRoundTrip(t *testing.T) {
	k := testKeys(t)
	pan := "4123456789012345"
	ct1, err := k.EncryptPAN(pan)
	if err != nil {
		t.Fatal(err)
	}
	ct2, _ := k.EncryptPAN(pan)
	if ct1 == ct2 {
		t.Error("two encryptions of the same PAN are equal: nonce not random")
	}
	if strings.Contains(ct1, pan) {
		t.Error("ciphertext contains the PAN")
	}
	for _, ct := range []string{ct1, ct2} {
		got, err := k.DecryptPAN(ct)
		if err != nil || got != pan {
			t.Fatalf("DecryptPAN = %q, %v", got, err)
		}
	}
	raw, _ := base64.StdEncoding.DecodeString(ct1)
	if raw[0] != ctVersion || len(raw) != 1+12+len(pan)+16 {
		t.Errorf("ciphertext layout: version %d, %d bytes", raw[0], len(raw))
	}

	ctCVV, err := k.EncryptCVV("042")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.DecryptCVV(ctCVV); err != nil || got != "042" {
		t.Fatalf("DecryptCVV = %q, %v", got, err)
	}
}

func TestCiphertextTamperingDetected(t *testing.T) {
	k := testKeys(t)
	ct, _ := k.EncryptPAN("4123456789012345")
	raw, _ := base64.StdEncoding.DecodeString(ct)
	for i := range raw {
		for _, bit := range []byte{0x01, 0x80} {
			b := bytes.Clone(raw)
			b[i] ^= bit
			_, err := k.DecryptPAN(base64.StdEncoding.EncodeToString(b))
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("flipping bit %#x of byte %d: err = %v, want ErrDecrypt", bit, i, err)
			}
		}
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(raw[:20]),
		base64.StdEncoding.EncodeToString(raw[:len(raw)-1]), ct + "AAAA"} {
		if _, err := k.DecryptPAN(bad); !errors.Is(err, ErrDecrypt) {
			t.Errorf("DecryptPAN(malformed): err = %v, want ErrDecrypt", err)
		}
	}
	if _, err := otherKeys(t).DecryptPAN(ct); !errors.Is(err, ErrDecrypt) {
		t.Errorf("decrypting under another key: err = %v, want ErrDecrypt", err)
	}
}

func TestPurposeSeparation(t *testing.T) {
	k := testKeys(t)
	ctCVV, err := k.EncryptCVV("123")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.DecryptPAN(ctCVV); !errors.Is(err, ErrDecrypt) {
		t.Errorf("CVV ciphertext decrypted as PAN: err = %v", err)
	}
	ctPAN, err := k.EncryptPAN("4123456789012345")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.DecryptCVV(ctPAN); !errors.Is(err, ErrDecrypt) {
		t.Errorf("PAN ciphertext decrypted as CVV: err = %v", err)
	}
}

func TestEncryptRejectsBadInputWithoutEchoingIt(t *testing.T) {
	k := testKeys(t)
	for _, pan := range []string{"", "41234567890", "41234567890123456789", "4123 4567 8901 2345", "412345678901234x"} {
		_, err := k.EncryptPAN(pan)
		if !errors.Is(err, ErrInvalidPAN) {
			t.Errorf("EncryptPAN(bad): err = %v", err)
		}
		assertNoSecret(t, err, pan)
	}
	for _, cvv := range []string{"", "12", "12345", "12a"} {
		_, err := k.EncryptCVV(cvv)
		if !errors.Is(err, ErrInvalidCVV) {
			t.Errorf("EncryptCVV(bad): err = %v", err)
		}
		assertNoSecret(t, err, cvv)
	}
	if _, err := k.EncryptCVV("1234"); err != nil {
		t.Errorf("EncryptCVV(4 digits): %v", err)
	}
}

func TestLookupToken(t *testing.T) {
	k := testKeys(t)
	pan := "4123456789012345"
	tok := k.LookupToken(pan)

	mac := hmac.New(sha256.New, mustHex(t, testLookupHex))
	mac.Write([]byte(pan))
	if want := hex.EncodeToString(mac.Sum(nil)); tok != want {
		t.Fatalf("LookupToken = %s, want %s", tok, want)
	}
	if k.LookupToken(pan) != tok {
		t.Error("LookupToken is not deterministic")
	}
	if k.LookupToken("4123456789012346") == tok {
		t.Error("different PANs share a token")
	}
	if otherKeys(t).LookupToken(pan) == tok {
		t.Error("token does not depend on the key")
	}
	// Inputs longer than the staging buffer still hash correctly.
	long := strings.Repeat("9", 100)
	mac.Reset()
	mac.Write([]byte(long))
	if got, want := k.LookupToken(long), hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("LookupToken(long) = %s, want %s", got, want)
	}
}

func TestMask(t *testing.T) {
	cases := map[string]string{
		"4123456789012345":    "412345******2345",
		"4123456789012345678": "412345*********5678",
		"4123456789012":       "412345***9012",
		"412345678901":        "************",
		"41234":               "*****",
		"":                    "",
	}
	for in, want := range cases {
		if got := Mask(in); got != want {
			t.Errorf("Mask(%s) = %s, want %s", in, got, want)
		}
	}
	// Property: whatever the input, at most the first 6 and the last 4
	// characters survive, in place, and the length is kept.
	digits := "9876543210987654321098765432109876543210"
	for n := 0; n <= len(digits); n++ {
		in := digits[:n]
		got := Mask(in)
		if len(got) != n {
			t.Fatalf("Mask of %d chars has %d", n, len(got))
		}
		shown := 0
		for i := range got {
			if got[i] == '*' {
				continue
			}
			shown++
			if got[i] != in[i] || (i >= 6 && i < n-4) {
				t.Fatalf("Mask of %d chars shows position %d", n, i)
			}
		}
		if shown > 10 {
			t.Fatalf("Mask of %d chars shows %d", n, shown)
		}
	}
}
