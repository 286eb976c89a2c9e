package cardcrypto

import (
	"crypto/subtle"
	"errors"
	"fmt"
)

// PIN lengths ISO 9564 allows.
const (
	MinPINLength = 4
	MaxPINLength = 12
)

// ErrInvalidPIN is returned when a PIN to encode is not 4 to 12 digits.
var ErrInvalidPIN = errors.New("cardcrypto: invalid PIN (want 4 to 12 digits)")

// ErrBadPINBlock is returned when DE52 does not decode to an ISO 9564
// format 0 block for the PAN: wrong size, encrypted under another key or
// for another PAN, or not format 0. The wrapped detail never includes a
// PIN digit.
var ErrBadPINBlock = errors.New("cardcrypto: bad PIN block")

// Preallocated so a bad block costs no allocation on the authorization path.
var (
	errPINBlockSize    = fmt.Errorf("%w: want 8 bytes", ErrBadPINBlock)
	errPINBlockFormat  = fmt.Errorf("%w: not ISO 9564 format 0", ErrBadPINBlock)
	errPINBlockLength  = fmt.Errorf("%w: PIN length outside 4 to 12", ErrBadPINBlock)
	errPINBlockDigit   = fmt.Errorf("%w: non-decimal PIN digit", ErrBadPINBlock)
	errPINBlockPadding = fmt.Errorf("%w: padding is not F", ErrBadPINBlock)
)

// ValidPIN reports whether pin is 4 to 12 decimal digits, the range ISO 9564
// PIN blocks carry.
func ValidPIN(pin string) bool {
	return len(pin) >= MinPINLength && len(pin) <= MaxPINLength && allDigits(pin)
}

// PINVerifier returns the value stored instead of the PIN: hex HMAC-SHA256
// under pin.key of the PAN's 12 rightmost digits excluding the check digit,
// then the PIN. Binding the PAN digits makes equal PINs on different cards
// store differently; the key makes the verifier useless to anyone who only
// has the database, where an unkeyed hash of a 4-digit PIN would fall to
// 10^4 guesses. The PIN is not validated here; call ValidPIN first.
func (k *Keys) PINVerifier(pan, pin string) string {
	var digits [12]byte
	panDigits(pan, &digits)
	var out [macHexLen]byte
	macHex(k.pin, &out, digits[:], pin)
	return string(out[:])
}

// VerifyPIN reports, in constant time, whether pin matches a verifier made
// by PINVerifier for pan. An empty verifier (no PIN set) never matches.
func (k *Keys) VerifyPIN(pan, pin, verifier string) bool {
	if verifier == "" {
		return false
	}
	got := k.PINVerifier(pan, pin)
	return subtle.ConstantTimeCompare([]byte(got), []byte(verifier)) == 1
}

// EncodePINBlock returns the ISO 9564-1 format 0 PIN block for pin and pan,
// encrypted under the ZPK (3DES-ECB), as DE52 carries it: the clear block
// 0 || len(PIN) || PIN digits || F padding, XOR the PAN block 0000 || 12
// rightmost PAN digits excluding the check digit. The server only decodes;
// this is for the simulator, which acts as the acquirer with the same keys
// directory, and for tests.
func (k *Keys) EncodePINBlock(pin, pan string) ([]byte, error) {
	if !ValidPIN(pin) {
		return nil, ErrInvalidPIN
	}
	if !validPAN(pan) {
		return nil, ErrInvalidPAN
	}
	var block [8]byte
	for i := range block {
		block[i] = 0xFF
	}
	block[0] = byte(len(pin)) // format 0 in the high nibble, length in the low
	for i := 0; i < len(pin); i++ {
		setNibble(&block, 2+i, pin[i]-'0')
	}
	xorPANBlock(&block, pan)
	out := make([]byte, 8)
	k.zpk.Encrypt(out, block[:])
	clear(block[:])
	return out, nil
}

// DecodePINBlock decrypts an ISO 9564 format 0 PIN block (DE52, 8 bytes)
// under the ZPK, removes the PAN block and returns the PIN. It fails with
// ErrBadPINBlock unless the result is format 0 with a length of 4 to 12,
// decimal digits and F padding. Passing these checks does not prove the
// block was made for this PAN; comparing the PIN with the verifier does.
func (k *Keys) DecodePINBlock(block []byte, pan string) (string, error) {
	var pin [MaxPINLength]byte
	n, err := k.decodePINBlock(block, pan, &pin)
	if err != nil {
		return "", err
	}
	s := string(pin[:n])
	clear(pin[:])
	return s, nil
}

// VerifyPINBlock decodes a PIN block and compares the PIN with the card's
// verifier, without the PIN ever becoming a string. ok is false with a nil
// error when the block is well formed but the PIN is wrong (INCORRECT_PIN);
// err is non-nil when the block itself is bad (a format error, or a key
// mismatch with the acquirer).
func (k *Keys) VerifyPINBlock(block []byte, pan, verifier string) (ok bool, err error) {
	var pin [MaxPINLength]byte
	n, err := k.decodePINBlock(block, pan, &pin)
	if err != nil {
		return false, err
	}
	if verifier == "" {
		clear(pin[:])
		return false, nil
	}
	var digits [12]byte
	panDigits(pan, &digits)
	var got [macHexLen]byte
	macHex(k.pin, &got, digits[:], pin[:n])
	clear(pin[:])
	return subtle.ConstantTimeCompare(got[:], []byte(verifier)) == 1, nil
}

func (k *Keys) decodePINBlock(block []byte, pan string, pin *[MaxPINLength]byte) (int, error) {
	if len(block) != 8 {
		return 0, errPINBlockSize
	}
	if !validPAN(pan) {
		return 0, ErrInvalidPAN
	}
	var clearBlock [8]byte
	k.zpk.Decrypt(clearBlock[:], block)
	xorPANBlock(&clearBlock, pan)
	defer clear(clearBlock[:])

	if clearBlock[0]>>4 != 0 {
		return 0, errPINBlockFormat
	}
	n := int(clearBlock[0] & 0x0F)
	if n < MinPINLength || n > MaxPINLength {
		return 0, errPINBlockLength
	}
	for i := range n {
		d := nibble(&clearBlock, 2+i)
		if d > 9 {
			clear(pin[:])
			return 0, errPINBlockDigit
		}
		pin[i] = '0' + d
	}
	for j := 2 + n; j < 16; j++ {
		if nibble(&clearBlock, j) != 0xF {
			clear(pin[:])
			return 0, errPINBlockPadding
		}
	}
	return n, nil
}

// panDigits writes the 12 rightmost digits of pan excluding the check digit,
// left-padded with '0' when the PAN is shorter: the digits ISO 9564 format 0
// binds a PIN block to.
func panDigits(pan string, dst *[12]byte) {
	for i := range dst {
		dst[i] = '0'
	}
	if len(pan) == 0 {
		return
	}
	body := pan[:len(pan)-1]
	if len(body) > 12 {
		body = body[len(body)-12:]
	}
	copy(dst[12-len(body):], body)
}

// xorPANBlock XORs the format 0 PAN block (0000 then the 12 PAN digits, one
// per nibble) into b. The PAN must be all digits.
func xorPANBlock(b *[8]byte, pan string) {
	var digits [12]byte
	panDigits(pan, &digits)
	for i, c := range digits {
		j := 4 + i
		setNibble(b, j, nibble(b, j)^(c-'0'))
	}
}

// nibble returns the j-th 4-bit nibble of b, counting from the left.
func nibble(b *[8]byte, j int) byte {
	if j%2 == 0 {
		return b[j/2] >> 4
	}
	return b[j/2] & 0x0F
}

func setNibble(b *[8]byte, j int, v byte) {
	if j%2 == 0 {
		b[j/2] = b[j/2]&0x0F | v<<4
	} else {
		b[j/2] = b[j/2]&0xF0 | v&0x0F
	}
}
