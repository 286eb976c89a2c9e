package cardcrypto

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
)

// PAN lengths accepted for generation, encryption and PIN blocks. ISO/IEC
// 7812 allows 8 to 19 digits; issuers' PANs are 12 or longer, and the ISO
// 9564 PAN block takes 12 digits besides the check digit.
const (
	MinPANLength = 12
	MaxPANLength = 19
)

// Errors about card data. None of them, nor anything wrapping them in this
// package, includes the PAN, CVV2 or PIN.
var (
	ErrInvalidPAN = errors.New("cardcrypto: invalid PAN (want 12 to 19 digits)")
	ErrInvalidBIN = errors.New("cardcrypto: invalid BIN (want 6 to 8 digits)")
	ErrInvalidCVV = errors.New("cardcrypto: invalid CVV2 (want 3 or 4 digits)")
	// ErrDecrypt means a stored ciphertext is malformed, was made under
	// another key or for another purpose, or has been altered.
	ErrDecrypt = errors.New("cardcrypto: cannot decrypt card data")
)

// Purposes bound to ciphertexts as GCM additional data; the version in them
// is the ciphertext format's (see ctVersion).
const (
	purposePAN = "antaca/cardcrypto/pan/v1"
	purposeCVV = "antaca/cardcrypto/cvv/v1"
)

// ctVersion is the first byte of every ciphertext: the format and key
// generation, so a future key rotation can tell old ciphertexts from new.
const ctVersion byte = 1

// EncryptPAN encrypts a PAN for storage (AES-256-GCM under pan.key, random
// nonce, purpose "pan" as additional data) and returns it base64-encoded.
// The same PAN encrypts differently every time; look cards up with
// LookupToken.
func (k *Keys) EncryptPAN(pan string) (string, error) {
	if !validPAN(pan) {
		return "", ErrInvalidPAN
	}
	return k.seal(pan, purposePAN), nil
}

// DecryptPAN reverses EncryptPAN. It fails with ErrDecrypt on a ciphertext
// made under another key, made by EncryptCVV, or altered.
func (k *Keys) DecryptPAN(ciphertext string) (string, error) {
	return k.open(ciphertext, purposePAN)
}

// EncryptCVV encrypts a CVV2 for storage like EncryptPAN, with purpose
// "cvv", so its ciphertext never decrypts as a PAN and the reverse.
func (k *Keys) EncryptCVV(cvv string) (string, error) {
	if !validCVV(cvv) {
		return "", ErrInvalidCVV
	}
	return k.seal(cvv, purposeCVV), nil
}

// DecryptCVV reverses EncryptCVV.
func (k *Keys) DecryptCVV(ciphertext string) (string, error) {
	return k.open(ciphertext, purposeCVV)
}

func (k *Keys) seal(plaintext, purpose string) string {
	out := make([]byte, 1, 1+len(plaintext)+k.data.Overhead())
	out[0] = ctVersion
	out = k.data.Seal(out, nil, []byte(plaintext), additionalData(purpose))
	return base64.StdEncoding.EncodeToString(out)
}

func (k *Keys) open(ciphertext, purpose string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(ciphertext)
	if err != nil || len(raw) < 1+k.data.Overhead() {
		return "", fmt.Errorf("%w: malformed ciphertext", ErrDecrypt)
	}
	if raw[0] != ctVersion {
		return "", fmt.Errorf("%w: unknown ciphertext version %d", ErrDecrypt, raw[0])
	}
	pt, err := k.data.Open(nil, nil, raw[1:], additionalData(purpose))
	if err != nil {
		return "", fmt.Errorf("%w: authentication failed (wrong key, wrong purpose or altered)", ErrDecrypt)
	}
	return string(pt), nil
}

// additionalData binds the version byte and the purpose.
func additionalData(purpose string) []byte {
	return append([]byte{ctVersion}, purpose...)
}

// LookupToken returns the PAN's lookup token: hex HMAC-SHA256 under
// lookup.key. It is deterministic, so the store can index cards by it, and
// keyed, so the token of a PAN cannot be computed (or a token reversed by
// enumerating PANs) without the key. The PAN is hashed as given; it is on
// the authorization path and does not allocate beyond its result.
func (k *Keys) LookupToken(pan string) string {
	var out [macHexLen]byte
	macHex(k.lookup, &out, pan, "")
	return string(out[:])
}

// Mask returns the PAN for display and logs: first 6 digits, asterisks, last
// 4. Never more than 6 leading and 4 trailing characters are shown, and an
// input shorter than 13 characters (where 6+4 would leave fewer than three
// digits hidden) is masked entirely. Length is preserved.
func Mask(pan string) string {
	const first, last, minLen = 6, 4, 13
	n := len(pan)
	if n < minLen {
		return strings.Repeat("*", n)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(pan[:first])
	for range n - first - last {
		b.WriteByte('*')
	}
	b.WriteString(pan[n-last:])
	return b.String()
}

// GeneratePAN draws a PAN of the given length: the BIN (6 to 8 digits),
// uniformly random digits, and the Luhn check digit. rnd is the randomness
// source; nil means crypto/rand. It does not check uniqueness, which only
// the store can: the caller looks the new PAN up (by LookupToken) and draws
// again on a collision.
func GeneratePAN(bin string, length int, rnd io.Reader) (string, error) {
	if len(bin) < 6 || len(bin) > 8 || !allDigits(bin) {
		return "", ErrInvalidBIN
	}
	if length < MinPANLength || length > MaxPANLength {
		return "", fmt.Errorf("cardcrypto: invalid PAN length %d (want %d to %d)", length, MinPANLength, MaxPANLength)
	}
	var buf [MaxPANLength]byte
	pan := buf[:length]
	copy(pan, bin)
	if err := randomDigits(rnd, pan[len(bin):length-1]); err != nil {
		return "", err
	}
	pan[length-1] = luhnCheckDigit(pan[:length-1])
	return string(pan), nil
}

// LuhnValid reports whether s is all digits, at least two of them, and ends
// in a correct Luhn (mod 10) check digit. It does not check the length
// against PAN rules.
func LuhnValid(s string) bool {
	if len(s) < 2 || !allDigits(s) {
		return false
	}
	return luhnCheckDigit([]byte(s[:len(s)-1])) == s[len(s)-1]
}

// luhnCheckDigit returns the digit that makes payload||digit Luhn-valid.
// Counting from the check digit's position, every second digit (the
// payload's rightmost first) is doubled.
func luhnCheckDigit(payload []byte) byte {
	sum := 0
	double := true
	for i := len(payload) - 1; i >= 0; i-- {
		d := int(payload[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return byte('0' + (10-sum%10)%10)
}

// NewCVV draws a random three-digit CVV2. rnd nil means crypto/rand. The
// value is random rather than derived from CVV keys so that a reset gives a
// new one while PAN and expiry stay (see the package documentation).
func NewCVV(rnd io.Reader) (string, error) {
	var cvv [3]byte
	if err := randomDigits(rnd, cvv[:]); err != nil {
		return "", err
	}
	return string(cvv[:]), nil
}

// CVVEqual compares two CVV2s in constant time, so response timing does not
// tell how much of a guess was right. Empty values never match.
func CVVEqual(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// randomDigits fills dst with uniformly random ASCII digits, rejecting bytes
// of 250 and above so that no digit is more likely than another.
func randomDigits(rnd io.Reader, dst []byte) error {
	if rnd == nil {
		rnd = rand.Reader
	}
	var buf [MaxPANLength]byte
	for i := 0; i < len(dst); {
		// Read only what is still needed, so a deterministic source in
		// tests yields predictable digits.
		chunk := buf[:min(len(dst)-i, len(buf))]
		if _, err := io.ReadFull(rnd, chunk); err != nil {
			return fmt.Errorf("cardcrypto: read random: %w", err)
		}
		for _, b := range chunk {
			if b < 250 {
				dst[i] = '0' + b%10
				i++
			}
		}
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func validPAN(pan string) bool {
	return len(pan) >= MinPANLength && len(pan) <= MaxPANLength && allDigits(pan)
}

func validCVV(cvv string) bool {
	return (len(cvv) == 3 || len(cvv) == 4) && allDigits(cvv)
}

// CVVMatches reports whether cvv is the CVV2 sealed in cvvEnc, in constant
// time; a ciphertext that does not open never matches.
func (k *Keys) CVVMatches(cvvEnc, cvv string) bool {
	stored, err := k.DecryptCVV(cvvEnc)
	if err != nil {
		return false
	}
	return CVVEqual(stored, cvv)
}
