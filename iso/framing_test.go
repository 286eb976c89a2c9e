package iso

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestFramingRoundTrip(t *testing.T) {
	for _, f := range []Framing{{Header: Binary2}, {Header: ASCII4}, {Header: Binary2, MaxSize: 100}} {
		t.Run(f.String(), func(t *testing.T) {
			var buf bytes.Buffer
			msgs := [][]byte{[]byte("0800"), bytes.Repeat([]byte("x"), 100), []byte("0100abc")}
			for _, m := range msgs {
				if err := f.WriteFrame(&buf, m); err != nil {
					t.Fatalf("WriteFrame(%d bytes): %v", len(m), err)
				}
			}
			for _, want := range msgs {
				got, err := f.ReadFrame(&buf)
				if err != nil {
					t.Fatalf("ReadFrame: %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("got %q, want %q", got, want)
				}
			}
			if _, err := f.ReadFrame(&buf); !errors.Is(err, io.EOF) {
				t.Errorf("at end: %v, want io.EOF", err)
			}
		})
	}
}

func TestFramingHeaders(t *testing.T) {
	var buf bytes.Buffer
	if err := (Framing{}).WriteFrame(&buf, bytes.Repeat([]byte("a"), 258)); err != nil {
		t.Fatal(err)
	}
	if got := buf.Bytes()[:2]; !bytes.Equal(got, []byte{0x01, 0x02}) {
		t.Errorf("binary2 header % x, want 01 02", got)
	}
	buf.Reset()
	if err := (Framing{Header: ASCII4}).WriteFrame(&buf, bytes.Repeat([]byte("a"), 187)); err != nil {
		t.Fatal(err)
	}
	if got := string(buf.Bytes()[:4]); got != "0187" {
		t.Errorf("ascii4 header %q, want 0187", got)
	}
	// The connection-library adapters write the same headers.
	buf.Reset()
	if _, err := (Framing{Header: ASCII4}).LengthWriter()(&buf, 42); err != nil || buf.String() != "0042" {
		t.Errorf("LengthWriter ascii4: %q, %v", buf.String(), err)
	}
	buf.Reset()
	if _, err := (Framing{}).LengthWriter()(&buf, 42); err != nil || !bytes.Equal(buf.Bytes(), []byte{0, 42}) {
		t.Errorf("LengthWriter binary2: % x, %v", buf.Bytes(), err)
	}
	if n, err := (Framing{}).LengthReader()(bytes.NewReader([]byte{0, 42})); err != nil || n != 42 {
		t.Errorf("LengthReader binary2: %d, %v", n, err)
	}
}

func TestFramingRejects(t *testing.T) {
	tests := []struct {
		name  string
		f     Framing
		input []byte
		want  error
	}{
		{"zero length", Framing{}, []byte{0, 0}, ErrEmptyFrame},
		{"over default max", Framing{}, []byte{0x20, 0x01}, ErrFrameTooLarge},
		{"over configured max", Framing{MaxSize: 10}, []byte{0, 11}, ErrFrameTooLarge},
		{"ascii zero", Framing{Header: ASCII4}, []byte("0000"), ErrEmptyFrame},
		{"ascii not digits", Framing{Header: ASCII4}, []byte("01a0"), ErrBadLengthField},
		{"ascii over max", Framing{Header: ASCII4}, []byte("9999"), ErrFrameTooLarge},
		{"truncated body", Framing{}, []byte{0, 10, '0', '1'}, io.ErrUnexpectedEOF},
		{"truncated header", Framing{}, []byte{0}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.f.ReadFrame(bytes.NewReader(tt.input))
			if !errors.Is(err, tt.want) {
				t.Errorf("ReadFrame = %v, want %v", err, tt.want)
			}
		})
	}
	if err := (Framing{MaxSize: 3}).WriteFrame(io.Discard, []byte("0100")); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("WriteFrame oversize = %v", err)
	}
	if err := (Framing{}).WriteFrame(io.Discard, nil); !errors.Is(err, ErrEmptyFrame) {
		t.Errorf("WriteFrame empty = %v", err)
	}
}

func TestParseFraming(t *testing.T) {
	for in, want := range map[string]LengthHeader{"": Binary2, "binary2": Binary2, "ASCII4": ASCII4, "ascii": ASCII4} {
		f, err := ParseFraming(in)
		if err != nil || f.Header != want {
			t.Errorf("ParseFraming(%q) = %v, %v; want %v", in, f, err, want)
		}
	}
	if _, err := ParseFraming("bcd"); err == nil || !strings.Contains(err.Error(), "bcd") {
		t.Errorf("ParseFraming(bcd) = %v", err)
	}
}

func TestMaskPAN(t *testing.T) {
	for in, want := range map[string]string{
		"5412751234567890":    "541275******7890",
		"4111111111111111111": "411111*********1111",
		"4111111111111":       "411111***1111",
		"123456789012":        "********9012",
		"1234567":             "*******",
		"":                    "",
	} {
		got := MaskPAN(in)
		if got != want {
			t.Errorf("MaskPAN(%q) = %q, want %q", in, got, want)
		}
		if len(in) >= 8 && strings.Contains(got, in[:7]) {
			t.Errorf("MaskPAN(%q) shows more than 6 leading digits", in)
		}
	}
}

func TestLogSampler(t *testing.T) {
	s := newLogSampler(time.Second)
	t0 := time.Unix(1000, 0)
	if ok, n := s.allow(t0); !ok || n != 0 {
		t.Fatalf("first line: %v, %d", ok, n)
	}
	for i := range 5 {
		if ok, _ := s.allow(t0.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Fatal("line within the interval let through")
		}
	}
	if ok, n := s.allow(t0.Add(time.Second)); !ok || n != 5 {
		t.Errorf("after the interval: %v, suppressed %d, want true, 5", ok, n)
	}
}
