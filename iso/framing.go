package iso

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// LengthHeader is the kind of length prefix that precedes every message.
type LengthHeader int

const (
	// Binary2 is a 2-byte big-endian binary length: the default.
	Binary2 LengthHeader = iota
	// ASCII4 is a 4-digit ASCII decimal length ("0123"), a configuration
	// option for processors that frame that way.
	ASCII4
)

func (h LengthHeader) String() string {
	switch h {
	case Binary2:
		return "binary2"
	case ASCII4:
		return "ascii4"
	}
	return fmt.Sprintf("header(%d)", int(h))
}

// headerLen is the number of bytes the header occupies on the wire.
func (h LengthHeader) headerLen() int {
	if h == ASCII4 {
		return 4
	}
	return 2
}

// maxEncodable is the largest length the header can express.
func (h LengthHeader) maxEncodable() int {
	if h == ASCII4 {
		return 9999
	}
	return 0xFFFF
}

// DefaultMaxFrameSize bounds a message when Framing.MaxSize is zero. An
// ISO 8583:1987 ASCII authorization is a few hundred bytes; 8 KiB leaves
// room for DE55-style payloads while keeping a hostile peer from making
// the server allocate 64 KiB per frame.
const DefaultMaxFrameSize = 8 << 10

// Framing describes how messages are delimited on the TCP stream. The zero
// value is the default of README.md ("Transport"): 2-byte binary length,
// 8 KiB limit.
type Framing struct {
	Header LengthHeader
	// MaxSize is the largest message (without header) accepted or sent;
	// 0 means DefaultMaxFrameSize. A larger frame closes the connection,
	// because after one the stream cannot be trusted to be in step.
	MaxSize int
}

// Framing errors. All of them mean the byte stream is out of step, so the
// server closes the connection on any of them.
var (
	ErrFrameTooLarge  = errors.New("frame larger than the maximum size")
	ErrEmptyFrame     = errors.New("frame of zero length")
	ErrBadLengthField = errors.New("length header is not a number")
)

// ParseFraming reads a framing name as used in configuration: "binary2"
// (or "binary", the default when empty) and "ascii4" (or "ascii").
func ParseFraming(name string) (Framing, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", "binary2", "binary":
		return Framing{Header: Binary2}, nil
	case "ascii4", "ascii":
		return Framing{Header: ASCII4}, nil
	}
	return Framing{}, fmt.Errorf("unknown framing %q (want binary2 or ascii4)", name)
}

func (f Framing) String() string { return fmt.Sprintf("%s/max %d", f.Header, f.maxSize()) }

func (f Framing) maxSize() int {
	m := f.MaxSize
	if m <= 0 {
		m = DefaultMaxFrameSize
	}
	return min(m, f.Header.maxEncodable())
}

func (f Framing) validate() error {
	switch f.Header {
	case Binary2, ASCII4:
	default:
		return fmt.Errorf("unknown length header %d", int(f.Header))
	}
	if f.MaxSize < 0 {
		return fmt.Errorf("negative maximum frame size %d", f.MaxSize)
	}
	return nil
}

// ReadLength reads one length header and checks it against the limits.
func (f Framing) ReadLength(r io.Reader) (int, error) {
	var hdr [4]byte
	h := hdr[:f.Header.headerLen()]
	if _, err := io.ReadFull(r, h); err != nil {
		return 0, err // io.EOF at a frame boundary is a clean close: keep it unwrapped
	}
	var n int
	switch f.Header {
	case ASCII4:
		for _, c := range h {
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("reading length header %q: %w", h, ErrBadLengthField)
			}
			n = n*10 + int(c-'0')
		}
	default:
		n = int(binary.BigEndian.Uint16(h))
	}
	if n == 0 {
		return 0, ErrEmptyFrame
	}
	if n > f.maxSize() {
		return 0, fmt.Errorf("reading length header: %d bytes: %w (%d)", n, ErrFrameTooLarge, f.maxSize())
	}
	return n, nil
}

// ReadFrame reads one length-prefixed message from r. The returned slice is
// freshly allocated and owned by the caller.
func (f Framing) ReadFrame(r io.Reader) ([]byte, error) {
	n, err := f.ReadLength(r)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading %d-byte frame: %w", n, err)
	}
	return buf, nil
}

// AppendFrame appends the header and payload to dst, so a whole frame can go
// out in one Write: concurrent writers never interleave inside a frame and a
// message costs one system call.
func (f Framing) AppendFrame(dst, payload []byte) ([]byte, error) {
	n := len(payload)
	if n == 0 {
		return dst, ErrEmptyFrame
	}
	if n > f.maxSize() {
		return dst, fmt.Errorf("framing %d bytes: %w (%d)", n, ErrFrameTooLarge, f.maxSize())
	}
	switch f.Header {
	case ASCII4:
		dst = fmt.Appendf(dst, "%04d", n)
	default:
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	}
	return append(dst, payload...), nil
}

// WriteFrame writes payload with its length header in a single Write.
func (f Framing) WriteFrame(w io.Writer, payload []byte) error {
	frame, err := f.AppendFrame(make([]byte, 0, f.Header.headerLen()+len(payload)), payload)
	if err != nil {
		return err
	}
	if _, err := w.Write(frame); err != nil {
		return fmt.Errorf("writing frame: %w", err)
	}
	return nil
}

// LengthReader adapts the framing to moov-io/iso8583-connection's
// MessageLengthReader, so clients built on that library frame like the
// server.
func (f Framing) LengthReader() func(r io.Reader) (int, error) {
	return f.ReadLength
}

// LengthWriter adapts the framing to moov-io/iso8583-connection's
// MessageLengthWriter. The library writes header and body in two Write
// calls under its own single writer, so that is safe there.
func (f Framing) LengthWriter() func(w io.Writer, length int) (int, error) {
	return func(w io.Writer, n int) (int, error) {
		if n <= 0 {
			return 0, ErrEmptyFrame
		}
		if n > f.maxSize() {
			return 0, fmt.Errorf("framing %d bytes: %w (%d)", n, ErrFrameTooLarge, f.maxSize())
		}
		var hdr []byte
		if f.Header == ASCII4 {
			hdr = []byte(strconv.Itoa(10000 + n)[1:])
		} else {
			hdr = binary.BigEndian.AppendUint16(nil, uint16(n))
		}
		return w.Write(hdr)
	}
}
