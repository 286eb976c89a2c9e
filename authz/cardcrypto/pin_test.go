package cardcrypto

import (
	"bytes"
	"crypto/des"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestValidPIN(t *testing.T) {
	for _, p := range []string{"1234", "0000", "123456789012", "98765"} {
		if !ValidPIN(p) {
			t.Errorf("ValidPIN(%s) = false", p)
		}
	}
	for _, p := range []string{"", "123", "1234567890123", "12a4", "12 4", "１２３４"} {
		if ValidPIN(p) {
			t.Errorf("ValidPIN(%q) = true", p)
		}
	}
}

// xorHex XORs two equal-length hex strings, the way the standard describes
// the format 0 block.
func xorHex(t *testing.T, a, b string) string {
	t.Helper()
	x, y := mustHex(t, a), mustHex(t, b)
	for i := range x {
		x[i] ^= y[i]
	}
	return strings.ToUpper(hex.EncodeToString(x))
}

// tdesEncrypt encrypts one block under a double-length key expanded to
// K1 K2 K1, independently of the package's key handling.
func tdesEncrypt(t *testing.T, keyHex, blockHex string) string {
	t.Helper()
	k := mustHex(t, keyHex)
	c, err := des.NewTripleDESCipher(append(append([]byte{}, k...), k[:8]...))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 8)
	c.Encrypt(out, mustHex(t, blockHex))
	return strings.ToUpper(hex.EncodeToString(out))
}

// TestPINBlockFormat0KnownAnswers builds format 0 blocks from the standard's
// definition and checks EncodePINBlock and DecodePINBlock against them.
//
// ISO 9564-1 format 0: clear PIN block = 0 | N | PIN digits | F padding;
// PAN block = 0000 | 12 rightmost PAN digits excluding the check digit.
// For PAN 4123456789012345 the check digit is the final 5, so the 12 digits
// are 345678901234, not 456789012345 (those would include the check digit;
// they are the PAN block of PAN 1234567890123456, also tested).
//
// The encrypted values were computed outside Go with
// `openssl enc -des-ede -nopad -K 0123456789ABCDEFFEDCBA9876543210`
// (two-key 3DES-ECB), so they check the K1 K2 K1 expansion too.
func TestPINBlockFormat0KnownAnswers(t *testing.T) {
	k := testKeys(t)
	const clearPIN = "041234FFFFFFFFFF" // PIN 1234
	cases := []struct {
		pan, panBlock, xored, encrypted string
	}{
		{"4123456789012345", "0000345678901234", "041200A9876FEDCB", "DDDED427C7FC1DC9"},
		{"1234567890123456", "0000456789012345", "0412719876FEDCBA", "E5639CBC7EC0B4CA"},
		{"4111111111111111", "0000111111111111", "041225EEEEEEEEEE", "2A3D408A1977DDE9"},
	}
	for _, c := range cases {
		// PAN block straight from the definition.
		body := c.pan[:len(c.pan)-1]
		if got := "0000" + body[len(body)-12:]; got != c.panBlock {
			t.Fatalf("PAN block of %s = %s, want %s", c.pan, got, c.panBlock)
		}
		if got := xorHex(t, clearPIN, c.panBlock); got != c.xored {
			t.Fatalf("clear XOR PAN block = %s, want %s", got, c.xored)
		}
		if got := tdesEncrypt(t, testZPKHex, c.xored); got != c.encrypted {
			t.Fatalf("3DES(%s) = %s, want %s", c.xored, got, c.encrypted)
		}

		block, err := k.EncodePINBlock("1234", c.pan)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ToUpper(hex.EncodeToString(block)); got != c.encrypted {
			t.Errorf("EncodePINBlock(1234, %s) = %s, want %s", c.pan, got, c.encrypted)
		}
		pin, err := k.DecodePINBlock(mustHex(t, c.encrypted), c.pan)
		if err != nil || pin != "1234" {
			t.Errorf("DecodePINBlock(%s, %s) = %q, %v; want 1234", c.encrypted, c.pan, pin, err)
		}
	}
}

func TestZPKCheckValue(t *testing.T) {
	// KCV of the textbook key, also from openssl.
	if got := testKeys(t).ZPKCheckValue(); got != "08D7B4" {
		t.Errorf("ZPKCheckValue = %s, want 08D7B4", got)
	}
}

func TestPINBlockRoundTrip(t *testing.T) {
	k := testKeys(t)
	for n := MinPINLength; n <= MaxPINLength; n++ {
		for panLen := MinPANLength; panLen <= MaxPANLength; panLen++ {
			pan, err := GeneratePAN("412345", panLen, nil)
			if err != nil {
				t.Fatal(err)
			}
			pin := randomDigitString(t, n)
			block, err := k.EncodePINBlock(pin, pan)
			if err != nil {
				t.Fatal(err)
			}
			if len(block) != 8 {
				t.Fatalf("block is %d bytes", len(block))
			}
			got, err := k.DecodePINBlock(block, pan)
			if err != nil || got != pin {
				t.Fatalf("round trip (PIN length %d, PAN length %d): got %d digits, err %v", n, panLen, len(got), err)
			}
			ok, err := k.VerifyPINBlock(block, pan, k.PINVerifier(pan, pin))
			if err != nil || !ok {
				t.Fatalf("VerifyPINBlock = %v, %v", ok, err)
			}
		}
	}
}

func randomDigitString(t *testing.T, n int) string {
	b := make([]byte, n)
	if err := randomDigits(rand.Reader, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// encryptClear XORs a clear PIN block (hex, as the standard writes it) with
// pan's PAN block and encrypts it under the test ZPK, independently of
// EncodePINBlock, so malformed blocks can be made.
func encryptClear(t *testing.T, clearHex, pan string) []byte {
	t.Helper()
	body := pan[:len(pan)-1]
	return mustHex(t, tdesEncrypt(t, testZPKHex, xorHex(t, clearHex, "0000"+body[len(body)-12:])))
}

func TestBadPINBlocksRejected(t *testing.T) {
	k := testKeys(t)
	const pan = "4123456789012345"
	cases := map[string][]byte{
		"format 1":          encryptClear(t, "141234FFFFFFFFFF", pan),
		"format 3":          encryptClear(t, "341234FFFFFFFFFF", pan),
		"length 3":          encryptClear(t, "03123FFFFFFFFFFF", pan),
		"length 13":         encryptClear(t, "0D1234567890123F", pan),
		"length 15":         encryptClear(t, "0F12345678901234", pan),
		"non-decimal digit": encryptClear(t, "04123AFFFFFFFFFF", pan),
		"padding not F":     encryptClear(t, "041234FFFFFFFF0F", pan),
		"padding 0":         encryptClear(t, "0412340000000000", pan),
	}
	for name, block := range cases {
		pin, err := k.DecodePINBlock(block, pan)
		if !errors.Is(err, ErrBadPINBlock) || pin != "" {
			t.Errorf("%s: DecodePINBlock = %q, %v; want ErrBadPINBlock", name, pin, err)
		}
		assertNoSecret(t, err, "1234", "123")
		if ok, err := k.VerifyPINBlock(block, pan, k.PINVerifier(pan, "1234")); ok || !errors.Is(err, ErrBadPINBlock) {
			t.Errorf("%s: VerifyPINBlock = %v, %v", name, ok, err)
		}
	}

	good, _ := k.EncodePINBlock("1234", pan)
	for _, b := range [][]byte{nil, good[:7], append(bytes.Clone(good), 0)} {
		if _, err := k.DecodePINBlock(b, pan); !errors.Is(err, ErrBadPINBlock) {
			t.Errorf("DecodePINBlock(%d bytes): err = %v", len(b), err)
		}
	}
	// Under another ZPK the block decrypts to noise, which format 0's
	// structure rejects (a 4-digit PIN leaves 10 padding nibbles to check).
	if _, err := otherKeys(t).DecodePINBlock(good, pan); !errors.Is(err, ErrBadPINBlock) {
		t.Errorf("DecodePINBlock under another ZPK: err = %v", err)
	}
	// A block made for another PAN: the PAN block difference lands in the
	// padding.
	if _, err := k.DecodePINBlock(good, "4123456789099995"); !errors.Is(err, ErrBadPINBlock) {
		t.Errorf("DecodePINBlock for another PAN: err = %v", err)
	}
	if _, err := k.DecodePINBlock(good, "41234"); !errors.Is(err, ErrInvalidPAN) {
		t.Errorf("DecodePINBlock with a bad PAN: err = %v", err)
	}
}

func TestEncodePINBlockRejectsBadInput(t *testing.T) {
	k := testKeys(t)
	for _, pin := range []string{"", "123", "1234567890123", "12a4"} {
		_, err := k.EncodePINBlock(pin, "4123456789012345")
		if !errors.Is(err, ErrInvalidPIN) {
			t.Errorf("EncodePINBlock(bad PIN): err = %v", err)
		}
		assertNoSecret(t, err, pin)
	}
	_, err := k.EncodePINBlock("1234", "41234567890123x5")
	if !errors.Is(err, ErrInvalidPAN) {
		t.Errorf("EncodePINBlock(bad PAN): err = %v", err)
	}
	assertNoSecret(t, err, "41234567890123x5", "1234")
}

func TestPINVerifier(t *testing.T) {
	k := testKeys(t)
	const pan, pin = "4123456789012345", "1234"
	v := k.PINVerifier(pan, pin)

	mac := hmac.New(sha256.New, mustHex(t, testPINKeyHex))
	mac.Write([]byte("345678901234" + pin))
	if want := hex.EncodeToString(mac.Sum(nil)); v != want {
		t.Fatalf("PINVerifier = %s, want %s", v, want)
	}
	if k.PINVerifier(pan, "1235") == v {
		t.Error("verifier ignores the PIN")
	}
	if k.PINVerifier("4123456789012352", pin) == v {
		t.Error("verifier ignores the PAN digits")
	}
	// Only the 12 digits before the check digit count: a PAN that differs in
	// the BIN's leading digits or the check digit shares the verifier.
	if k.PINVerifier("9993456789012340", pin) != v {
		t.Error("verifier depends on digits outside the 12 ISO 9564 uses")
	}
	if otherKeys(t).PINVerifier(pan, pin) == v {
		t.Error("verifier ignores the key")
	}
	// Short PANs are left-padded with zeros like the PAN block.
	mac.Reset()
	mac.Write([]byte("000123456789" + pin)) // 9 digits before the check digit
	if got, want := k.PINVerifier("1234567899", pin), hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("PINVerifier(short PAN) = %s, want %s", got, want)
	}
	if got := k.PINVerifier("", pin); len(got) != 64 {
		t.Errorf("PINVerifier(empty PAN) = %q", got)
	}

	if !k.VerifyPIN(pan, pin, v) || k.VerifyPIN(pan, "4321", v) || k.VerifyPIN(pan, pin, "") ||
		k.VerifyPIN(pan, pin, v[:63]) {
		t.Error("VerifyPIN gives wrong answers")
	}

	block, _ := k.EncodePINBlock("4321", pan)
	if ok, err := k.VerifyPINBlock(block, pan, v); ok || err != nil {
		t.Errorf("VerifyPINBlock(wrong PIN) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := k.VerifyPINBlock(block, pan, ""); ok || err != nil {
		t.Errorf("VerifyPINBlock(no PIN set) = %v, %v; want false, nil", ok, err)
	}
}

func BenchmarkDecodePINBlock(b *testing.B) {
	k := testKeys(b)
	const pan = "4123456789012345"
	block, _ := k.EncodePINBlock("1234", pan)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.DecodePINBlock(block, pan); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyPINBlock(b *testing.B) {
	k := testKeys(b)
	const pan = "4123456789012345"
	block, _ := k.EncodePINBlock("1234", pan)
	v := k.PINVerifier(pan, "1234")
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := k.VerifyPINBlock(block, pan, v); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkLookupToken(b *testing.B) {
	k := testKeys(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = k.LookupToken("4123456789012345")
	}
}

func BenchmarkLookupTokenParallel(b *testing.B) {
	k := testKeys(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = k.LookupToken("4123456789012345")
		}
	})
}
