package api

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/api/jwe"
)

// maxBody bounds every request body (and a JWE payload's plaintext).
const maxBody = 64 << 10

// channel is how a route authenticates its caller.
type channel int

const (
	public     channel = iota
	customerCh         // /customers/me: customer session token
	partnerCh          // /secure: partner client certificate
	adminCh            // /admin: admin session token and role
)

// route is one row of the route table (routes.go).
type route struct {
	pattern string
	ch      channel
	roles   []Role // admin channel: the roles allowed
	jwe     bool   // encryption required (README.md, "Routes": JWE)
	create  bool   // creates a resource: Idempotency-Key makes retries safe
	h       handlerFunc
	params  []string // the pattern's path parameters (set by wrap)
}

// handlerFunc serves one call; it returns the status and the body to send
// (nil for none), or an error that errors.go translates.
type handlerFunc func(c *call) (int, any, error)

// call is one request on its way through a route.
type call struct {
	s   *Server
	r   *http.Request
	ctx context.Context
	rt  *route

	body      []byte         // request body, decrypted when it was a JWE
	clientKey *rsa.PublicKey // set on encrypted requests: answers go to it

	partnerID  string     // partner channel (certificate CN) or customer channel (session)
	customerID string     // customer channel (session)
	admin      *adminUser // admin channel
	token      string     // customer and admin channels: the bearer token
	retryAfter time.Duration
}

// rawBody is a non-JSON response body.
type rawBody struct {
	contentType string
	data        []byte
}

func (s *Server) wrap(rt route) http.Handler {
	rt.params = pathParams(rt.pattern)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{s: s, r: r, ctx: r.Context(), rt: &rt}
		status, body, err := s.serve(w, c)
		if err != nil {
			s.fail(w, c, err)
			return
		}
		s.reply(w, c, status, body)
	})
}

// serve authenticates, authorises, checks the parameters, reads, checks
// and (for JWE routes) decrypts the body, then runs the handler. The checks
// of input.go run here, for every route, before any handler sees the input.
func (s *Server) serve(w http.ResponseWriter, c *call) (int, any, error) {
	if c.rt.ch != public && s.cfg.Ready != nil && !s.cfg.Ready(c.ctx) {
		return 0, nil, errNotReady
	}
	if err := s.authenticate(c); err != nil {
		return 0, nil, err
	}
	if err := checkParams(c); err != nil {
		return 0, nil, err
	}
	if c.r.ContentLength > maxBody {
		return 0, nil, errTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, c.r.Body, maxBody))
	if err != nil {
		return 0, nil, err
	}
	c.body = body
	if len(bytes.TrimSpace(body)) > 0 {
		if err := checkContentType(c.r); err != nil {
			return 0, nil, err
		}
		if err := checkJSONText(body); err != nil {
			return 0, nil, err
		}
	}
	if err := s.openJWE(c); err != nil {
		return 0, nil, err
	}
	if c.rt.create {
		return s.idempotentCreate(w, c)
	}
	return c.rt.h(c)
}

// openJWE enforces the route's encryption rule and decrypts the body.
func (s *Server) openJWE(c *call) error {
	encrypted := strings.EqualFold(strings.TrimSpace(c.r.Header.Get(jwe.HeaderEncrypted)), "true")
	if !c.rt.jwe {
		if encrypted {
			return errEncryptionNotOffered
		}
		return nil
	}
	if !encrypted {
		return errEncryptionRequired
	}
	pub, err := jwe.ParsePublicKey(c.r.Header.Get(jwe.HeaderPublicKey))
	if err != nil {
		return errInvalidPublicKey
	}
	c.clientKey = pub
	if len(bytes.TrimSpace(c.body)) == 0 || c.r.Method == http.MethodGet {
		c.body = nil // GET and body-less POST send only the headers
		return nil
	}
	plain, err := jwe.OpenEnvelope(c.body, s.cfg.Keys.JWEPrivateKey())
	switch {
	case errors.Is(err, jwe.ErrInvalidEnvelope):
		return errInvalidPayload
	case err != nil:
		return errCantDecrypt
	}
	if !json.Valid(plain) {
		return errInvalidPayload
	}
	if err := checkJSONText(plain); err != nil {
		return err
	}
	c.body = plain
	return nil
}

// reply writes a success: JSON, encrypted to the client's key when the
// request was encrypted (2xx with a body; 204 has none).
func (s *Server) reply(w http.ResponseWriter, c *call, status int, body any) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if body == nil || status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	if raw, ok := body.(rawBody); ok {
		h.Set("Content-Type", raw.contentType)
		h.Set("Cache-Control", "public, max-age=300")
		w.WriteHeader(status)
		_, _ = w.Write(raw.data)
		return
	}
	b, err := json.Marshal(body)
	if err == nil && c.clientKey != nil {
		b, err = jwe.SealEnvelope(b, c.clientKey)
	}
	if err != nil {
		s.fail(w, c, fmt.Errorf("encoding response: %w", err))
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// fail writes an error as plain JSON. Only internal errors are logged as
// errors; messages never carry card data, PINs, tokens or passwords (the
// domain's errors do not contain them, and request bodies are never logged).
func (s *Server) fail(w http.ResponseWriter, c *call, err error) {
	e, internal := toAPIError(err)
	if internal {
		s.log.ErrorContext(c.ctx, "request failed", "route", c.rt.pattern, "err", err)
	} else {
		s.log.DebugContext(c.ctx, "request refused", "route", c.rt.pattern, "status", e.Status, "code", e.Code)
	}
	if e.Status == http.StatusUnauthorized && (c.rt.ch == customerCh || c.rt.ch == adminCh) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="antaca"`)
	}
	if e.Status == http.StatusTooManyRequests && c.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(c.retryAfter.Seconds()+0.999)))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeError(w, e)
}

func writeError(w http.ResponseWriter, e *Error) {
	b, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}

// decode reads the JSON body into dst, a pointer to a struct. Unknown
// fields are allowed (README.md, "Errors": fields beyond the named ones are
// welcome); syntax errors, wrong types and trailing data are not.
func (c *call) decode(dst any) error {
	if len(bytes.TrimSpace(c.body)) == 0 {
		return errBodyRequired
	}
	return decodeJSON(c.body, dst)
}

// decodeOptional is decode for routes whose body may be absent.
func (c *call) decodeOptional(dst any) (present bool, err error) {
	if len(bytes.TrimSpace(c.body)) == 0 {
		return false, nil
	}
	return true, decodeJSON(c.body, dst)
}

func decodeJSON(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "" {
				return invalid("", "request body must be a JSON object")
			}
			return invalid(te.Field, fmt.Sprintf("%s must be %s", te.Field, jsonTypeName(te.Type)))
		}
		return errMalformedJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return errMalformedJSON
	}
	return nil
}

func jsonTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "of another type"
}
