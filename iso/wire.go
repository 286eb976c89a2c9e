package iso

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	iso8583errors "github.com/moov-io/iso8583/errors"
)

// charset is the character set a data element is declared with. moov-io
// checks a field's layout (length, length prefix, hex) but not its
// characters, so a terminal id of eight NUL bytes or an RRN with a control
// byte would unpack, be approved and then be refused by the journal. Every
// field is therefore checked against its set, on the wire bytes, before
// anything reads it.
type charset uint8

const (
	charsetNone charset = iota
	// charsetN: digits 0-9.
	charsetN
	// charsetAN: letters A-Z, a-z and digits 0-9.
	charsetAN
	// charsetANS: printable ASCII, space (0x20) to tilde (0x7E).
	charsetANS
	// charsetNS: digits and printable special characters, no letters.
	charsetNS
	// charsetXN: 'C' (credit) or 'D' (debit), then digits.
	charsetXN
	// charsetZ: magnetic track 2 and 3 data: 0x30-0x3F (digits and
	// ":;<=>?", '=' being the field separator) and 'D', which some
	// terminals send as the separator.
	charsetZ
	// charsetB: binary data, carried as hexadecimal characters 0-9 A-F a-f.
	charsetB
	charsetCount
)

func (c charset) String() string {
	switch c {
	case charsetN:
		return "n"
	case charsetAN:
		return "an"
	case charsetANS:
		return "ans"
	case charsetNS:
		return "ns"
	case charsetXN:
		return "x+n"
	case charsetZ:
		return "z"
	case charsetB:
		return "b"
	}
	return "none"
}

// fieldCharsets are the character sets of the data elements of both
// profiles, as ISO 8583:1987 declares them, with three choices the
// interface document states: tracks 2 and 3 (DE35, DE36) are z, and the
// free-text additional data elements DE44-DE48 are ans (the 1987 table
// says an, yet they carry spaces and punctuation in practice). DE39 is an
// in both dialects. A test checks that every field of the profiles has a
// set here.
var fieldCharsets = map[int]charset{
	2: charsetN, 3: charsetN, 4: charsetN, 5: charsetN, 6: charsetN, 7: charsetN,
	8: charsetN, 9: charsetN, 10: charsetN, 11: charsetN, 12: charsetN, 13: charsetN,
	14: charsetN, 15: charsetN, 16: charsetN, 17: charsetN, 18: charsetN, 19: charsetN,
	20: charsetN, 21: charsetN, 22: charsetN, 23: charsetN, 24: charsetN, 25: charsetN,
	26: charsetN, 27: charsetN,
	28: charsetXN, 29: charsetXN, 30: charsetXN, 31: charsetXN,
	32: charsetN, 33: charsetN, 34: charsetNS, 35: charsetZ, 36: charsetZ,
	37: charsetAN, 38: charsetAN, 39: charsetAN, 40: charsetAN,
	41: charsetANS, 42: charsetANS, 43: charsetANS,
	44: charsetANS, 45: charsetANS, 46: charsetANS, 47: charsetANS, 48: charsetANS,
	49: charsetAN, 50: charsetAN, 51: charsetAN,
	52: charsetB, 53: charsetN, 54: charsetAN,
	55: charsetANS, 56: charsetANS, 57: charsetANS, 58: charsetANS, 59: charsetANS,
	60: charsetANS, 61: charsetANS, 62: charsetANS, 63: charsetANS,
	64: charsetB,
	70: charsetN, 90: charsetN, 91: charsetAN, 95: charsetAN, 101: charsetANS, 120: charsetANS,
}

// allowed[c][b] reports whether byte b belongs to charset c.
var allowed = func() (t [charsetCount][256]bool) {
	for b := range 256 {
		digit := b >= '0' && b <= '9'
		letter := (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z')
		printable := b >= 0x20 && b <= 0x7e
		t[charsetN][b] = digit
		t[charsetAN][b] = digit || letter
		t[charsetANS][b] = printable
		t[charsetNS][b] = printable && !letter && b != ' '
		t[charsetXN][b] = digit // the sign is checked apart
		t[charsetZ][b] = (b >= 0x30 && b <= 0x3f) || b == 'D'
		t[charsetB][b] = digit || (b >= 'A' && b <= 'F') || (b >= 'a' && b <= 'f')
	}
	return t
}()

// checkCharset describes the first byte of raw, the wire bytes of field
// id, that is outside the field's set ("" when there is none): its
// position and, for fields that are not card data, its value.
func checkCharset(id int, raw []byte) string {
	cs := fieldCharsets[id]
	for i, b := range raw {
		ok := allowed[cs][b]
		if cs == charsetXN && i == 0 {
			ok = b == 'C' || b == 'D'
		}
		if ok {
			continue
		}
		if sensitiveFields[strconv.Itoa(id)] {
			return fmt.Sprintf("has a character outside its set (%s) at position %d", cs, i+1)
		}
		return fmt.Sprintf("has byte 0x%02X, outside its set (%s), at position %d", b, cs, i+1)
	}
	return ""
}

// ErrTrailingData: the frame goes on after the last field its bitmap
// announces. The length header and the fields disagree, so neither can be
// trusted: a format error.
var ErrTrailingData = errors.New("data after the last field")

// unpackFrame unpacks one message in profile p and checks what moov-io
// leaves unchecked: every present field's characters, at most two bitmaps,
// and nothing after the last field. On error the returned message keeps
// the fields before the one at fault (all of them for trailing data), so
// that the format-error answer can echo what the processor needs to match
// it; FaultField names the field at fault.
func unpackFrame(p *Profile, frame []byte) (*iso8583.Message, error) {
	msg := iso8583.NewMessage(p.Spec)
	if err := msg.Unpack(frame); err != nil {
		keepReadable(msg, err)
		// The fields read before the broken one are echoed: they must
		// pass their character sets too.
		if fault := FaultField(err); fault > 2 {
			var fe *FieldError
			if errors.As(checkWire(p.Spec, msg, frame, fault), &fe) && fe.intact {
				keepReadable(msg, fe)
			}
		}
		return msg, err
	}
	if err := checkWire(p.Spec, msg, frame, 0); err != nil {
		keepReadable(msg, err)
		return msg, err
	}
	return msg, nil
}

// checkWire walks frame field by field with the layout msg was unpacked
// with, which moov-io does not expose: it checks each field's wire bytes
// against the field's character set and that the last field ends the
// frame. Fields with bad characters come back in one FieldError, the
// first of them first, marked as leaving the layout intact. A positive
// before stops the walk at that field, which moov-io could not unpack,
// and skips the check for trailing data.
func checkWire(spec *iso8583.MessageSpec, msg *iso8583.Message, frame []byte, before int) error {
	if len(frame) < 4 || !isDigits(string(frame[:4])) {
		return fieldErr("is not four digits", 0)
	}
	bitmap := msg.Bitmap()
	if bitmap.Len() > 128 && before == 0 {
		return fieldErr("announces a third bitmap (bit 65 set); this interface has two at most", 1)
	}
	packedBitmap, err := bitmap.Pack()
	if err != nil {
		return fieldErr("does not pack", 1)
	}
	off := 4 + len(packedBitmap)
	last := 1
	// A character error leaves the layout intact: the walk goes on to
	// find every such field, none of which may be echoed. They are
	// reported before trailing data, which would echo every field.
	var bad *FieldError
	end := bitmap.Len()
	if before > 0 {
		end = min(end, before-1)
	}
	for id := 2; id <= end; id++ {
		if bitmap.IsBitmapPresenceBit(id) || !bitmap.IsSet(id) {
			continue
		}
		f, ok := spec.Fields[id]
		if !ok {
			return fieldErr("is not in this interface", id)
		}
		fs := f.Spec()
		n, prefLen, err := fs.Pref.DecodeLength(fs.Length, frame[off:])
		if err != nil {
			return fieldErr("has an unreadable length", id)
		}
		start := off + prefLen
		size, err := encodedSize(fs.Enc, n, frame[start:])
		if err != nil || start+size > len(frame) {
			return fieldErr("is shorter than its length", id)
		}
		if problem := checkCharset(id, frame[start:start+size]); problem != "" {
			if bad == nil {
				bad = &FieldError{Problem: problem, intact: true}
			}
			bad.Fields = append(bad.Fields, id)
		}
		off = start + size
		last = id
	}
	if bad != nil {
		if len(bad.Fields) > 1 {
			bad.Problem = fmt.Sprintf("have characters outside their sets; the first, DE%d, %s", bad.Fields[0], bad.Problem)
		}
		return bad
	}
	if before == 0 && off != len(frame) {
		return fmt.Errorf("%w: %w: %d bytes after DE%d", ErrFormat, ErrTrailingData, len(frame)-off, last)
	}
	return nil
}

// encodedSize is how many wire bytes a field value of n units takes in
// enc: one per character in ASCII, two per byte in hexadecimal; other
// encodings are decoded to find out.
func encodedSize(enc encoding.Encoder, n int, data []byte) (int, error) {
	switch enc {
	case encoding.ASCII:
		return n, nil
	case encoding.BytesToASCIIHex:
		return 2 * n, nil
	}
	_, read, err := enc.Decode(data, n)
	return read, err
}

// FaultField is the data element a format error names: 0 for the MTI, 1
// for the bitmap, 2-128 for a data element, -1 when it names none (data
// after the last field, or an error that is not a format error).
func FaultField(err error) int {
	var fe *FieldError
	if errors.As(err, &fe) && len(fe.Fields) > 0 {
		return fe.Fields[0]
	}
	var ue *iso8583errors.UnpackError
	if errors.As(err, &ue) {
		if n, convErr := strconv.Atoi(ue.FieldID); convErr == nil && n >= 0 {
			return n
		}
	}
	if errors.Is(err, ErrUnsupportedMTI) {
		return 0
	}
	return -1
}

// formatErrorLabel is the field label of antaca_iso_format_errors_total:
// the number of the element at fault when the profile has it ("0" the
// MTI, "1" the bitmap), "trailing" for data after the last field, "frame"
// for a length header that closes the connection, else "other". The set
// of values is bounded whatever a peer sends.
func formatErrorLabel(p *Profile, err error) string {
	if errors.Is(err, ErrTrailingData) {
		return "trailing"
	}
	n := FaultField(err)
	if n == 0 || n == 1 {
		return strconv.Itoa(n)
	}
	if _, ok := p.Spec.Fields[n]; ok && n > 1 {
		return strconv.Itoa(n)
	}
	return "other"
}
