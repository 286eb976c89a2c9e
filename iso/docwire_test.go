package iso_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
)

// This file speaks to the server the way a processor's developer would
// after reading iso/README.md, without moov-io: messages are built by
// string concatenation and answers are taken apart byte by byte. If the
// document and the wire ever disagree, these tests fail.

// docField is a field layout as the document states it: a fixed number of
// characters, or a variable length with a prefix of lenDigits digits.
type docField struct {
	fixed     int
	lenDigits int
	max       int
}

// docLayout is the "Field layout" table of iso/README.md for the fields a
// request or an answer of these tests carries; DE39's length depends on the
// profile.
func docLayout(de39 int) map[int]docField {
	return map[int]docField{
		2: {lenDigits: 2, max: 19}, 3: {fixed: 6}, 4: {fixed: 12}, 7: {fixed: 10},
		11: {fixed: 6}, 12: {fixed: 6}, 13: {fixed: 4}, 14: {fixed: 4}, 18: {fixed: 4},
		22: {fixed: 3}, 32: {lenDigits: 2, max: 11}, 37: {fixed: 12}, 38: {fixed: 6},
		39: {fixed: de39}, 41: {fixed: 8}, 42: {fixed: 15}, 43: {fixed: 40},
		44: {lenDigits: 2, max: 99}, 49: {fixed: 3}, 52: {fixed: 16}, 54: {lenDigits: 3, max: 120},
		70: {fixed: 3}, 90: {fixed: 42}, 91: {fixed: 1}, 95: {fixed: 42},
		101: {lenDigits: 2, max: 17}, 120: {lenDigits: 3, max: 999},
	}
}

// docBuild lays out a message as the document says: MTI, primary bitmap
// (16 hexadecimal characters, bit 1 set when a field 65-128 is present),
// the secondary bitmap (16 more) in that case, then the fields in
// ascending order.
func docBuild(t *testing.T, mti string, fields map[int]string) []byte {
	t.Helper()
	layout := docLayout(4)
	var bitmap [16]byte
	ids := make([]int, 0, len(fields))
	for id := range fields {
		ids = append(ids, id)
		bitmap[(id-1)/8] |= 0x80 >> ((id - 1) % 8)
	}
	slices.Sort(ids)
	secondary := ids[len(ids)-1] > 64
	if secondary {
		bitmap[0] |= 0x80
	}
	var b strings.Builder
	b.WriteString(mti)
	b.WriteString(strings.ToUpper(hex.EncodeToString(bitmap[:8])))
	if secondary {
		b.WriteString(strings.ToUpper(hex.EncodeToString(bitmap[8:])))
	}
	for _, id := range ids {
		v, l := fields[id], layout[id]
		switch {
		case l.fixed > 0:
			if len(v) != l.fixed {
				t.Fatalf("DE%d %q is not %d characters", id, v, l.fixed)
			}
		case l.lenDigits > 0:
			fmt.Fprintf(&b, "%0*d", l.lenDigits, len(v))
		default:
			t.Fatalf("DE%d is not in the test's layout", id)
		}
		b.WriteString(v)
	}
	return []byte(b.String())
}

// docParse takes an answer apart byte by byte. It fails on anything the
// document does not allow: a bitmap that is not hexadecimal, a field
// outside the layout, a length prefix that is not digits, a field that
// runs past the end, or bytes left over after the last field.
func docParse(frame []byte, de39 int) (mti string, secondary bool, fields map[int]string, err error) {
	layout := docLayout(de39)
	if len(frame) < 20 {
		return "", false, nil, fmt.Errorf("%d bytes: shorter than MTI and primary bitmap", len(frame))
	}
	mti = string(frame[:4])
	bitmap, err := hex.DecodeString(string(frame[4:20]))
	if err != nil {
		return "", false, nil, fmt.Errorf("primary bitmap %q: %v", frame[4:20], err)
	}
	off := 20
	if bitmap[0]&0x80 != 0 {
		secondary = true
		if len(frame) < 36 {
			return "", false, nil, fmt.Errorf("bit 1 set but no secondary bitmap")
		}
		sec, err := hex.DecodeString(string(frame[20:36]))
		if err != nil {
			return "", false, nil, fmt.Errorf("secondary bitmap %q: %v", frame[20:36], err)
		}
		if sec[0]&0x80 != 0 {
			return "", false, nil, fmt.Errorf("bit 65 set: a third bitmap")
		}
		bitmap = append(bitmap, sec...)
		off = 36
	}
	fields = map[int]string{}
	for id := 2; id <= len(bitmap)*8; id++ {
		if bitmap[(id-1)/8]&(0x80>>((id-1)%8)) == 0 {
			continue
		}
		l, ok := layout[id]
		if !ok {
			return "", false, nil, fmt.Errorf("DE%d is set but not in the layout", id)
		}
		n := l.fixed
		if l.lenDigits > 0 {
			if off+l.lenDigits > len(frame) {
				return "", false, nil, fmt.Errorf("DE%d: length prefix past the end", id)
			}
			n, err = strconv.Atoi(string(frame[off : off+l.lenDigits]))
			if err != nil || n < 0 || n > l.max {
				return "", false, nil, fmt.Errorf("DE%d: length prefix %q", id, frame[off:off+l.lenDigits])
			}
			off += l.lenDigits
		}
		if off+n > len(frame) {
			return "", false, nil, fmt.Errorf("DE%d: %d characters past the end", id, n)
		}
		fields[id] = string(frame[off : off+n])
		off += n
	}
	if off != len(frame) {
		return "", false, nil, fmt.Errorf("%d bytes left over after the last field: %q", len(frame)-off, frame[off:])
	}
	return mti, secondary, fields, nil
}

// docExchange sends payload with a 2-byte big-endian length header and
// reads one answer the same way, without the iso package's framing code.
func docExchange(t *testing.T, conn net.Conn, payload []byte) []byte {
	t.Helper()
	hdr := binary.BigEndian.AppendUint16(nil, uint16(len(payload)))
	if _, err := conn.Write(append(hdr, payload...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var lh [2]byte
	if _, err := io.ReadFull(conn, lh[:]); err != nil {
		t.Fatalf("reading length header: %v", err)
	}
	answer := make([]byte, binary.BigEndian.Uint16(lh[:]))
	if _, err := io.ReadFull(conn, answer); err != nil {
		t.Fatalf("reading answer: %v", err)
	}
	return answer
}

func docRequest() map[int]string {
	return map[int]string{
		2: "5412751234567890", 3: "000000", 4: "000000001050", 7: "0612101530",
		11: "000321", 12: "101530", 13: "0612", 14: "2812", 18: "5411", 22: "051",
		32: "123456", 37: "415910000321", 41: "TERM0001", 42: "MERCHANT0000001",
		43: "ANTACA TEST SHOP         BERLIN       DE", 49: "978",
	}
}

func TestWireFollowsTheDocument(t *testing.T) {
	var (
		mu   sync.Mutex
		last *authz.Request
	)
	auth := &fakeAuthorizer{authorize: func(_ context.Context, req *authz.Request) authz.Decision {
		mu.Lock()
		last = req
		mu.Unlock()
		if req.Kind == authz.KindReversal {
			return authz.Decision{Reason: authz.ReasonReversalAccepted}
		}
		return approve()
	}}
	for _, profile := range []string{iso.ProfileCMF, iso.ProfileISO87} {
		t.Run(profile, func(t *testing.T) {
			ts := startServer(t, iso.Config{Profile: mustProfile(t, profile)}, auth)
			p := ts.profile
			de39 := len(p.Codes[authz.ReasonApproved])
			conn := ts.rawDial(t)

			t.Run("0100 with a primary bitmap only", func(t *testing.T) {
				req := docBuild(t, "0100", docRequest())
				if req[4] >= '8' {
					t.Fatalf("request bitmap %q has bit 1 set", req[4:20])
				}
				mti, secondary, f, err := docParse(docExchange(t, conn, req), de39)
				if err != nil {
					t.Fatal(err)
				}
				if mti != "0110" || secondary {
					t.Errorf("MTI %s, secondary bitmap %v; want 0110 without", mti, secondary)
				}
				want := map[int]string{
					39: p.Codes[authz.ReasonApproved], 38: "A1B2C3", 11: "000321", 37: "415910000321",
					2: "5412751234567890", 4: "000000001050", 41: "TERM0001", 54: "0002978C000000098950",
				}
				for id, w := range want {
					if f[id] != w {
						t.Errorf("DE%d %q, want %q", id, f[id], w)
					}
				}
			})

			t.Run("0400 with a secondary bitmap (DE90, DE95)", func(t *testing.T) {
				fields := docRequest()
				fields[11], fields[37] = "000322", "415910000322"
				fields[90] = "0100" + "000321" + "0612101530" + "00000123456" + "00000000000"
				fields[95] = "000000000500" + strings.Repeat("0", 30)
				req := docBuild(t, "0400", fields)
				if req[4] < '8' {
					t.Fatalf("request bitmap %q lacks bit 1", req[4:20])
				}
				mti, _, f, err := docParse(docExchange(t, conn, req), de39)
				if err != nil {
					t.Fatal(err)
				}
				if mti != "0410" || f[39] != p.Codes[authz.ReasonReversalAccepted] || f[11] != "000322" {
					t.Errorf("answer %s DE39 %q DE11 %q, want 0410 %q 000322", mti, f[39], f[11], p.Codes[authz.ReasonReversalAccepted])
				}
				mu.Lock()
				r := last
				mu.Unlock()
				if r.Original == nil || r.Original.STAN != "000321" || r.Original.TransmissionTime != "0612101530" || r.Original.AcquirerID != "123456" {
					t.Errorf("DE90 read as %+v", r.Original)
				}
				if r.ReplacementAmount == nil || *r.ReplacementAmount != 500 {
					t.Errorf("DE95 read as %v, want 500", r.ReplacementAmount)
				}
			})

			t.Run("0800 answered with a secondary bitmap (DE70)", func(t *testing.T) {
				req := docBuild(t, "0800", map[int]string{7: "0612101530", 11: "000323", 70: "301"})
				if string(req[4:36]) != "82200000000000000400000000000000" {
					t.Fatalf("bitmaps %q", req[4:36])
				}
				answer := docExchange(t, conn, req)
				mti, secondary, f, err := docParse(answer, de39)
				if err != nil {
					t.Fatal(err)
				}
				if mti != "0810" || !secondary || f[70] != "301" || f[39] != p.Codes[authz.ReasonNetworkAccepted] {
					t.Errorf("answer %q", answer)
				}
				// The exact bytes: MTI, both bitmaps (DE1 bit 1, DE7,
				// DE11, DE39; DE70), fields in order.
				want := "0810" + "8220000002000000" + "0400000000000000" + "0612101530" + "000323" + p.Codes[authz.ReasonNetworkAccepted] + "301"
				if string(answer) != want {
					t.Errorf("answer %q, want %q", answer, want)
				}
			})

			t.Run("a format error reads as a format error", func(t *testing.T) {
				fields := docRequest()
				fields[11], fields[41] = "000324", strings.Repeat("\x00", 8)
				answer := docExchange(t, conn, docBuild(t, "0100", fields))
				mti, secondary, f, err := docParse(answer, de39)
				if err != nil {
					t.Fatalf("a document parser cannot read the answer %q: %v", answer, err)
				}
				if mti != "0110" || secondary {
					t.Errorf("MTI %s secondary %v", mti, secondary)
				}
				if f[39] != p.Codes[authz.ReasonFormatError] || f[44] != "041" || f[11] != "000324" {
					t.Errorf("DE39 %q DE44 %q DE11 %q; want %q, 041, 000324 (answer %q)", f[39], f[44], f[11], p.Codes[authz.ReasonFormatError], answer)
				}
				if _, ok := f[41]; ok {
					t.Error("the bad DE41 was echoed")
				}
				if _, ok := f[38]; ok {
					t.Error("a format error carries an approval code")
				}
			})

			t.Run("the old 32-character bitmap is refused", func(t *testing.T) {
				doc := docBuild(t, "0100", map[int]string{11: "000325", 37: "415910000325", 49: "978"})
				// Widen the primary bitmap to 32 characters without
				// setting bit 1, as the switch used to expect.
				old := append(append(append([]byte{}, doc[:20]...), "0000000000000000"...), doc[20:]...)
				mti, _, f, err := docParse(docExchange(t, conn, old), de39)
				if err != nil {
					t.Fatal(err)
				}
				if mti != "0110" || f[39] != p.Codes[authz.ReasonFormatError] {
					t.Errorf("answer %s DE39 %q, want 0110 %q", mti, f[39], p.Codes[authz.ReasonFormatError])
				}
			})
		})
	}
}

// TestREADMEWireExamples sends every request of the document's "Wire
// examples" (lines starting "> ") to a switch in profile cmf and compares
// the answer with the line after it ("< "), byte for byte.
func TestREADMEWireExamples(t *testing.T) {
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "### Wire examples")
	if start < 0 {
		t.Fatal(`README.md has no "### Wire examples" section`)
	}
	section := text[start+len("### Wire examples"):]
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	lines := strings.Split(section, "\n")
	ts := startServer(t, iso.Config{}, &countingAuthorizer{})
	conn := ts.rawDial(t)
	pairs := 0
	for i, line := range lines {
		if !strings.HasPrefix(line, "> ") {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "< ") {
			t.Fatalf("request %q has no answer line after it", line)
		}
		req := strings.ReplaceAll(line[2:], " ", "")
		want := strings.ReplaceAll(lines[i+1][2:], " ", "")
		if got := string(docExchange(t, conn, []byte(req))); got != want {
			t.Errorf("request %s\nanswer %s\nREADME %s", req, got, want)
		}
		pairs++
	}
	if pairs < 4 {
		t.Errorf("README.md has %d example pairs, want at least 4", pairs)
	}
}

// TestBitmapEdges: a lower-case bitmap is read, bit 1 with an empty
// secondary bitmap is accepted, and a third bitmap (bit 65) is a format
// error naming the bitmap.
func TestBitmapEdges(t *testing.T) {
	ts := startServer(t, iso.Config{}, &countingAuthorizer{})
	conn := ts.rawDial(t)
	echo := "0612101530" + "000401" + "301"
	req := docBuild(t, "0100", docRequest())
	lower := string(req[:4]) + strings.ToLower(string(req[4:20])) + string(req[20:])
	if lower == string(req) {
		t.Fatal("the request's bitmap has no letter")
	}
	for _, tt := range []struct {
		name, req, code, de44 string
	}{
		{"upper case", "0800" + "8220000000000000" + "0400000000000000" + echo, "8000", ""},
		{"lower case", lower, "0000", ""},
		// Read, then refused only because the 0800 lacks DE70.
		{"empty secondary bitmap", "0800" + "8220000000000000" + "0000000000000000" + "0612101530" + "000401", "9100", "070"},
		{"third bitmap", "0800" + "8220000000000000" + "8400000000000000" + "0000000000000000" + echo, "9100", "001"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			answer := docExchange(t, conn, []byte(tt.req))
			_, _, f, err := docParse(answer, 4)
			if err != nil {
				t.Fatalf("answer %q: %v", answer, err)
			}
			if f[39] != tt.code || f[44] != tt.de44 {
				t.Errorf("DE39 %q DE44 %q, want %q %q (answer %q)", f[39], f[44], tt.code, tt.de44, answer)
			}
		})
	}
}
