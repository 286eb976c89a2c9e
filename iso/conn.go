package iso

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/antaca/antaca/authz"
)

// aLongTimeAgo is a read deadline in the past: setting it wakes a blocked
// Read at once, which is how a drain stops reading.
var aLongTimeAgo = time.Unix(1, 0)

// maxLinger bounds the wait for the peer to close after we half-closed.
const maxLinger = time.Second

// serverConn is one processor link. One goroutine reads frames; each
// message is handled in its own goroutine (at most MaxInFlightPerConn at
// once); answers go out under one write lock as soon as they are ready.
type serverConn struct {
	srv  *Server
	raw  net.Conn   // the TCP connection
	addr netip.Addr // its source address, for the per-address limit
	nc   net.Conn   // raw, or the TLS connection on top of it
	br   *bufio.Reader
	log  *slog.Logger

	slots    chan struct{}
	inflight sync.WaitGroup

	rmu         sync.Mutex // guards readStopped against a racing SetReadDeadline
	readStopped bool

	wmu      sync.Mutex
	wbuf     []byte // framed answers waiting for the writer
	wspare   []byte // the buffer of the last write, reused
	writing  bool   // a writer is in a system call
	writeErr error

	closeOnce sync.Once
	echoSTAN  int // server-originated STANs; used by the reader goroutine only
}

func newServerConn(s *Server, raw net.Conn) *serverConn {
	nc := raw
	if s.cfg.TLSConfig != nil {
		nc = tls.Server(raw, s.cfg.TLSConfig)
	}
	return &serverConn{
		srv:   s,
		raw:   raw,
		nc:    nc,
		br:    bufio.NewReaderSize(nc, 4096),
		log:   s.log.With("remote", raw.RemoteAddr().String()),
		slots: make(chan struct{}, s.cfg.MaxInFlightPerConn),
	}
}

// serve runs the connection to its end: handshake, read loop, then wait
// for every dispatched request to be answered before closing.
func (c *serverConn) serve() {
	graceful := true
	defer c.srv.removeConn(c)
	defer func() {
		c.inflight.Wait()
		if graceful {
			c.closeGracefully()
		}
		c.closeNow()
	}()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in connection reader", "panic", r, "stack", string(debug.Stack()))
			graceful = false
		}
	}()

	if tc, ok := c.nc.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.log.Warn("TLS handshake failed", "err", err)
			graceful = false
			return
		}
	}
	c.log.Info("connection opened")
	why := c.readLoop()
	c.log.Info("connection closing", "why", why)
}

// readLoop reads frames until the peer goes away, the stream breaks, the
// idle probe goes unanswered or the server drains. It returns why.
func (c *serverConn) readLoop() string {
	cfg := &c.srv.cfg
	echoPending := false
	for {
		// Wait for the first byte of the next frame under the idle
		// deadline, so that silence (probe it) is told apart from a
		// frame that stalls halfway (the stream is broken).
		var deadline time.Time
		switch {
		case echoPending:
			deadline = time.Now().Add(cfg.EchoTimeout)
		case cfg.ReadTimeout > 0:
			deadline = time.Now().Add(cfg.ReadTimeout)
		}
		if !c.setReadDeadline(deadline) {
			return "draining"
		}
		if _, err := c.br.Peek(1); err != nil {
			switch {
			case c.isReadStopped():
				return "draining"
			case isTimeout(err) && echoPending:
				return "no answer to echo test"
			case isTimeout(err):
				if err := c.sendEcho(); err != nil {
					return fmt.Sprintf("sending echo test: %v", err)
				}
				echoPending = true
				continue
			case errors.Is(err, io.EOF):
				return "closed by peer"
			}
			return fmt.Sprintf("reading: %v", err)
		}

		if !c.setReadDeadline(time.Now().Add(cfg.EchoTimeout)) {
			return "draining"
		}
		frame, err := cfg.Framing.ReadFrame(c.br)
		if err != nil {
			switch {
			case c.isReadStopped():
				return "draining"
			case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrEmptyFrame), errors.Is(err, ErrBadLengthField):
				c.srv.m.formatErrors.WithLabelValues("frame").Inc()
				c.log.Warn("bad frame; closing connection", "field", "frame", "err", err)
				return "bad frame"
			}
			return fmt.Sprintf("reading frame: %v", err)
		}
		received := time.Now()
		echoPending = false // any message proves the peer alive

		if len(frame) < 4 || !isDigits(string(frame[:4])) {
			// Without an MTI there is nothing to answer with, and the
			// stream is likely out of step: give up on this link.
			c.srv.m.formatErrors.WithLabelValues("0").Inc()
			c.log.Warn("message without a readable MTI; closing connection", "field", "0", "bytes", len(frame))
			return "unreadable MTI"
		}

		// A frame once read is always handled, draining or not. With
		// every slot taken the reader waits, and TCP pushes back on the
		// peer, until a request in flight on this link is answered. That
		// wait is not bounded by RequestTimeout: a decision is cut off at
		// its deadline, but writing its answer (WriteTimeout per write)
		// and undoing an approval that could not be sent come on top. The
		// deadline of this frame runs from received, so one that waited
		// past it is answered issuer unavailable.
		c.slots <- struct{}{}
		c.inflight.Add(1)
		c.srv.m.inflight.Inc()
		go c.handle(frame, received)
	}
}

func (c *serverConn) setReadDeadline(t time.Time) bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.readStopped {
		return false
	}
	_ = c.nc.SetReadDeadline(t)
	return true
}

func (c *serverConn) isReadStopped() bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.readStopped
}

// stopReading makes the reader stop at the next frame boundary (or abandon
// a frame it is in the middle of); requests already read are still
// answered.
func (c *serverConn) stopReading() {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if !c.readStopped {
		c.readStopped = true
		_ = c.nc.SetReadDeadline(aLongTimeAgo)
	}
}

// closeGracefully half-closes and waits briefly for the peer to close.
// Closing a socket that still has unread input makes the kernel send a
// reset, and a reset can destroy answers the peer has not read yet; during
// a drain the processor may well still be sending.
func (c *serverConn) closeGracefully() {
	if tc, ok := c.nc.(*tls.Conn); ok {
		_ = tc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		_ = tc.CloseWrite()
	}
	tcp, ok := c.raw.(*net.TCPConn)
	if !ok {
		return
	}
	if err := tcp.CloseWrite(); err != nil {
		return
	}
	_ = tcp.SetReadDeadline(time.Now().Add(min(maxLinger, c.srv.cfg.EchoTimeout)))
	_, _ = io.Copy(io.Discard, io.LimitReader(tcp, 1<<20))
}

func (c *serverConn) closeNow() {
	c.closeOnce.Do(func() { _ = c.raw.Close() })
}

// write sends one message. Answers that become ready while another one is
// being written are combined: the writer in progress takes them all in its
// next system call, so N answers ready together cost one write, not N,
// and a lone answer is written at once. A failed or timed-out write closes
// the connection: the peer is gone or not reading, and the reader must stop
// taking requests it cannot answer. A caller whose message was taken by
// another writer returns before it is written; a failure is reported by
// the writer that saw it.
func (c *serverConn) write(payload []byte) error {
	c.wmu.Lock()
	if c.writeErr != nil {
		err := c.writeErr
		c.wmu.Unlock()
		return err
	}
	frame, err := c.srv.cfg.Framing.AppendFrame(c.wbuf, payload)
	if err != nil {
		c.wmu.Unlock()
		return fmt.Errorf("framing response: %w", err)
	}
	c.wbuf = frame
	if c.writing {
		c.wmu.Unlock()
		return nil
	}
	c.writing = true
	for len(c.wbuf) > 0 && c.writeErr == nil {
		out := c.wbuf
		c.wbuf = c.wspare[:0]
		c.wmu.Unlock()
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		_, err := c.nc.Write(out)
		c.srv.m.writes.Inc()
		c.wmu.Lock()
		c.wspare = out[:0]
		if err != nil {
			c.writeErr = fmt.Errorf("writing response: %w", err)
			c.closeNow()
		}
	}
	c.writing = false
	err = c.writeErr
	c.wmu.Unlock()
	return err
}

// sendEcho probes a silent peer with an 0800 echo test.
func (c *serverConn) sendEcho() error {
	c.echoSTAN = c.echoSTAN%999999 + 1
	msg, err := NewNetworkRequest(c.srv.cfg.Profile, NetworkEcho, fmt.Sprintf("%06d", c.echoSTAN), time.Now())
	if err != nil {
		return err
	}
	packed, err := msg.Pack()
	if err != nil {
		return fmt.Errorf("packing echo test: %w", err)
	}
	c.log.Debug("idle; sending echo test")
	return c.write(packed)
}

// handle answers one message. Whatever happens, including a panic, a
// request MTI gets an answer.
func (c *serverConn) handle(frame []byte, received time.Time) {
	mti := string(frame[:4])
	var msg *iso8583.Message
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic while handling message", "mti", mti, "panic", r, "stack", string(debug.Stack()))
			c.answerSafely(mti, msg, authz.Decision{Reason: authz.ReasonSystemError}, received)
		}
		c.srv.m.inflight.Dec()
		<-c.slots
		c.inflight.Done()
	}()

	if isResponseMTI(mti) {
		// Answers to our echo tests, or strays: nothing to answer.
		if mti != mtiNetworkResponse {
			c.log.Warn("unexpected response message dropped", "mti", mti)
		}
		return
	}

	p := c.srv.cfg.Profile
	var err error
	msg, err = unpackFrame(p, frame)
	if err != nil {
		field := formatErrorLabel(p, err)
		c.srv.m.formatErrors.WithLabelValues(field).Inc()
		if ok, suppressed := c.srv.rejectedLog.allow(received); ok {
			c.log.Warn("message does not unpack; answering format error",
				"mti", mti, "field", field, "err", safeUnpackError(err, field), "suppressed", suppressed)
		}
		c.answer(mti, msg, authz.Decision{Reason: authz.ReasonFormatError}, received, nil, FaultField(err))
		return
	}

	if isNetworkRequest(mti) {
		reason, err := NetworkReason(msg)
		code := fields{msg}.str(70)
		if err != nil {
			field := formatErrorLabel(p, err)
			c.srv.m.formatErrors.WithLabelValues(field).Inc()
			if ok, suppressed := c.srv.rejectedLog.allow(received); ok {
				c.log.Warn("network management message rejected", "field", field, "err", err, "suppressed", suppressed)
			}
		} else {
			c.log.Info("network management", "code", code, "function", networkCodes[code])
		}
		c.answer(mti, msg, authz.Decision{Reason: reason}, received, nil, FaultField(err))
		return
	}

	if fu, ok := c.srv.auth.(FileUpdater); ok && isFileUpdateRequest(mti) {
		c.handleFileUpdate(mti, msg, received, fu)
		return
	}

	req, err := ParseRequest(msg)
	if err != nil {
		c.reject("message rejected", mti, msg, received, err)
		return
	}
	req.ReceivedAt = received
	if (req.Kind == authz.KindAuthorization || req.Kind == authz.KindFinancial) && !req.Repeat {
		// Reversals, advices and repeats are always admitted: the network
		// repeats them until answered, and reversals give money back.
		budget := time.Until(received.Add(c.srv.cfg.RequestTimeout))
		tk, ok := c.srv.adm.admit(budget)
		if !ok {
			c.srv.m.shed.Inc()
			if ok, suppressed := c.srv.timeoutLog.allow(time.Now()); ok {
				c.log.Warn("overloaded: answering issuer unavailable without deciding",
					"mti", req.MTI, "stan", req.STAN, "suppressed", suppressed)
			}
			c.answer(mti, msg, authz.Decision{Reason: authz.ReasonIssuerUnavailable}, received, req, -1)
			return
		}
		c.answer(mti, msg, c.decide(req, received, func() { c.srv.adm.done(tk, time.Now()) }), received, req, -1)
		return
	}
	c.answer(mti, msg, c.decide(req, received, nil), received, req, -1)
}

// decide asks the Authorizer under the request deadline. The call runs in
// its own goroutine so that an Authorizer ignoring ctx still cannot hold
// the answer past the deadline.
//
// finished, when set, is called when the Authorizer returns, which may be
// after the deadline: work the stores still do counts as load.
func (c *serverConn) decide(req *authz.Request, received time.Time, finished func()) authz.Decision {
	ctx, cancel := context.WithDeadline(c.srv.baseCtx, received.Add(c.srv.cfg.RequestTimeout))
	defer cancel()

	type result struct {
		d        authz.Decision
		panicked any
		stack    []byte
	}
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if finished != nil {
				finished()
			}
			if r := recover(); r != nil {
				ch <- result{panicked: r, stack: debug.Stack()}
			}
		}()
		ch <- result{d: c.srv.auth.Authorize(ctx, req)}
	}()

	select {
	case r := <-ch:
		if r.panicked != nil {
			c.log.Error("panic in Authorizer", "mti", req.MTI, "stan", req.STAN, "panic", r.panicked, "stack", string(r.stack))
			return authz.Decision{Reason: authz.ReasonSystemError}
		}
		return r.d
	case <-ctx.Done():
		c.srv.m.timeouts.Inc()
		if ok, suppressed := c.srv.timeoutLog.allow(time.Now()); ok {
			c.log.Warn("decision missed its deadline; answering issuer unavailable",
				"mti", req.MTI, "stan", req.STAN, "rrn", req.RRN, "pan", MaskPAN(req.PAN),
				"timeout", c.srv.cfg.RequestTimeout, "suppressed", suppressed)
		}
		go func() {
			if r := <-ch; r.panicked == nil && r.d.Approved() {
				c.log.Warn("late approval discarded after timeout answer",
					"mti", req.MTI, "stan", req.STAN, "rrn", req.RRN, "reason", r.d.Reason, "hold", r.d.HoldID)
				// The processor was told issuer unavailable: let the
				// engine undo what the approval reserved.
				c.abandon(req, r.d)
			}
		}()
		return authz.Decision{Reason: authz.ReasonIssuerUnavailable}
	}
}

// reject answers a message whose fields do not make a request with the
// reason err stands for (a format error names the field at fault in DE44,
// the log and the metric).
func (c *serverConn) reject(what, mti string, msg *iso8583.Message, received time.Time, err error) {
	reason := ReasonForError(err)
	field := ""
	if reason == authz.ReasonFormatError {
		field = formatErrorLabel(c.srv.cfg.Profile, err)
		c.srv.m.formatErrors.WithLabelValues(field).Inc()
	}
	if ok, suppressed := c.srv.rejectedLog.allow(received); ok {
		c.log.Warn(what, "mti", mti, "reason", reason, "field", field, "err", err, "suppressed", suppressed)
	}
	c.answer(mti, msg, authz.Decision{Reason: reason}, received, nil, FaultField(err))
}

// abandon lets the engine undo an approval the network was not told of.
func (c *serverConn) abandon(req *authz.Request, d authz.Decision) {
	if ab, ok := c.srv.auth.(Abandoner); ok {
		actx, cancel := context.WithTimeout(context.WithoutCancel(c.srv.baseCtx), 5*time.Second)
		ab.Abandon(actx, req, d)
		cancel()
	}
}

// answer builds, counts, logs and writes the response to msg. A format
// error names the data element at fault (fault, see FaultField) in DE44;
// more sets further fields of the answer.
func (c *serverConn) answer(mti string, msg *iso8583.Message, d authz.Decision, received time.Time, req *authz.Request, fault int, more ...func(*iso8583.Message) error) {
	p := c.srv.cfg.Profile
	resp, err := BuildResponse(p, msg, d)
	if err == nil {
		err = setFaultField(resp, d.Reason, fault)
	}
	for _, set := range more {
		if err == nil {
			err = set(resp)
		}
	}
	if err != nil {
		c.log.Error("building response failed; answering system error", "mti", mti, "reason", d.Reason, "err", err)
		if d.Approved() && req != nil {
			// The network is told "system error": what the approval
			// moved must not stay (a decline with a live hold).
			c.abandon(req, d)
		}
		d = authz.Decision{Reason: authz.ReasonSystemError}
		resp, err = BuildResponse(p, msg, d)
	}
	var packed []byte
	if err == nil {
		packed, err = resp.Pack()
	}
	if err != nil {
		// The echoed fields themselves do not pack: answer with what
		// the processor needs to match and nothing else.
		c.log.Error("packing response failed; answering a minimal response", "mti", mti, "err", err)
		packed, err = minimalResponse(p, mti, msg, d.Reason)
		if err != nil {
			c.log.Error("no response possible", "mti", mti, "err", err)
			return
		}
	}
	code, known := p.Code(d.Reason)
	c.srv.m.decisionSeconds.Observe(time.Since(received).Seconds())
	c.srv.m.requests.WithLabelValues(mtiLabel(mti), code).Inc()
	reason := string(d.Reason)
	if !known {
		reason = "other" // label values stay a bounded set
	}
	c.srv.m.decisions.WithLabelValues(reason).Inc()

	if err := c.write(packed); err != nil {
		c.log.Warn("response not delivered", "mti", mti, "reason", d.Reason, "err", err)
		return
	}
	// Every decision is logged with its machine-readable reason: declines
	// at info (they are what operators are asked about), approvals at
	// debug (they are in the journal and the metrics, and the busiest line).
	level := slog.LevelDebug
	if !d.Reason.Approved() {
		level = slog.LevelInfo
	}
	if c.log.Enabled(context.Background(), level) {
		attrs := []slog.Attr{
			slog.String("mti", mti), slog.String("reason", string(d.Reason)), slog.String("code", code),
			slog.Duration("elapsed", time.Since(received)), slog.String("card", d.CardID),
		}
		if req != nil {
			attrs = append(attrs, slog.String("stan", req.STAN), slog.String("rrn", req.RRN),
				slog.String("pan", MaskPAN(req.PAN)), slog.Int64("amount", req.Amount), slog.String("currency", req.Currency))
		}
		c.log.LogAttrs(context.Background(), level, "answered", attrs...)
	}
}

// answerSafely is answer for the panic path: if answering panics again,
// the request is logged as unanswered instead of crashing the process.
func (c *serverConn) answerSafely(mti string, msg *iso8583.Message, d authz.Decision, received time.Time) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic while answering after a panic; request unanswered", "mti", mti, "panic", r)
		}
	}()
	if msg == nil {
		msg = iso8583.NewMessage(c.srv.cfg.Profile.Spec)
		msg.MTI(mti)
	}
	c.answer(mti, msg, d, received, nil, -1)
}

// minimalResponse is the last resort: response MTI, DE39 and, when they
// pack, DE11 and DE37 so the processor can still match it.
func minimalResponse(p *Profile, mti string, req *iso8583.Message, reason authz.Reason) ([]byte, error) {
	respMTI, err := ResponseMTI(mti)
	if err != nil {
		return nil, err
	}
	code, ok := p.Code(reason)
	if !ok {
		code = p.Codes[authz.ReasonSystemError]
	}
	build := func(echo []int) ([]byte, error) {
		m := iso8583.NewMessage(p.Spec)
		m.MTI(respMTI)
		if req != nil {
			if err := copyFields(m, req, echo); err != nil {
				return nil, err
			}
		}
		if err := m.Field(39, code); err != nil {
			return nil, err
		}
		return m.Pack()
	}
	if b, err := build([]int{11, 37}); err == nil {
		return b, nil
	}
	return build(nil)
}

// keepReadable drops from msg the field at fault (FaultField) and every
// field after it, keeping the ones read before it for the echo in the
// format-error answer. When the layout is intact (data trailing a complete
// message, fields with characters outside their set) only the bad fields
// are dropped; when the fault is unknown, every field is.
func keepReadable(msg *iso8583.Message, err error) {
	if errors.Is(err, ErrTrailingData) {
		return
	}
	var fe *FieldError
	if errors.As(err, &fe) && fe.intact {
		for _, id := range fe.Fields {
			msg.UnsetField(id)
		}
		return
	}
	failed := max(FaultField(err), 2)
	for id := range msg.GetFields() {
		if id >= failed {
			msg.UnsetField(id)
		}
	}
}

// sensitiveFields are never quoted in logs, not even through an error
// text: PAN, expiry, track 2, track 1, PIN block.
var sensitiveFields = map[string]bool{"2": true, "14": true, "35": true, "45": true, "52": true}

// safeUnpackError returns err's text unless it concerns a sensitive field,
// whose decoding errors can quote the offending characters.
func safeUnpackError(err error, field string) string {
	if sensitiveFields[field] {
		return "field " + field + " is malformed"
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
