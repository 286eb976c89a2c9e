// Package apitest checks HTTP traffic against the API's OpenAPI document
// (api/openapi.yaml), so that the document cannot drift from the server:
// tests send every request through Validator.Transport, which validates
// the request before sending it and the response after receiving it, and
// decrypted JWE plaintexts with ValidatePlaintext.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/antaca/antaca/api"
)

// Validator validates requests and responses against the document.
type Validator struct {
	doc    *openapi3.T
	router routers.Router

	mu      sync.Mutex
	answers map[string]map[int]int // "METHOD /template" -> status -> count
}

var registerDecoders sync.Once

// NewValidator loads and validates the embedded OpenAPI document.
func NewValidator() (*Validator, error) {
	registerDecoders.Do(func() {
		openapi3filter.RegisterBodyDecoder("application/x-pem-file", openapi3filter.PlainBodyDecoder)
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("loading openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi.yaml is not valid: %w", err)
	}
	// Match any host: tests run on random ports.
	routed := *doc
	routed.Servers = nil
	router, err := gorillamux.NewRouter(&routed)
	if err != nil {
		return nil, fmt.Errorf("routing openapi.yaml: %w", err)
	}
	return &Validator{doc: doc, router: router, answers: map[string]map[int]int{}}, nil
}

// Doc returns the parsed document.
func (v *Validator) Doc() *openapi3.T { return v.doc }

type skipKey struct{}

// WithoutRequestValidation marks a request as deliberately invalid (bad
// input tests): the transport sends it unchecked but still validates the
// response.
func WithoutRequestValidation(ctx context.Context) context.Context {
	return context.WithValue(ctx, skipKey{}, true)
}

func options() *openapi3filter.Options {
	return &openapi3filter.Options{
		AuthenticationFunc:                openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus:             true,
		RejectWhenRequestBodyNotSpecified: true,
		MultiError:                        true,
	}
}

// Transport wraps base; every problem found is passed to report (e.g.
// t.Errorf). Requests to paths the document does not describe are reported.
func (v *Validator) Transport(base http.RoundTripper, report func(format string, args ...any)) http.RoundTripper {
	return &transport{v: v, base: base, report: report}
}

type transport struct {
	v      *Validator
	base   http.RoundTripper
	report func(format string, args ...any)
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		var err error
		if reqBody, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	route, params, err := t.v.router.FindRoute(req)
	if err != nil {
		t.report("openapi: %s %s: %v", req.Method, req.URL.Path, err)
		return t.base.RoundTrip(req)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: options()}
	if skip, _ := req.Context().Value(skipKey{}).(bool); !skip {
		if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
			t.report("openapi: request %s %s does not match the document: %v", req.Method, req.URL.Path, err)
		}
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	t.v.record(route.Method+" "+route.Path, resp.StatusCode)
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(respBody)), Options: options(),
	}
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		t.report("openapi: response %d to %s %s does not match the document: %v (body %.300s)",
			resp.StatusCode, req.Method, req.URL.Path, err, respBody)
	}
	return resp, nil
}

// Operation finds the documented operation of method and path (a
// concrete path such as /customers/me/cards/crd_1).
func (v *Validator) Operation(method, path string) (*openapi3.Operation, error) {
	req, err := http.NewRequest(method, "https://api.test"+path, nil)
	if err != nil {
		return nil, err
	}
	route, _, err := v.router.FindRoute(req)
	if err != nil {
		return nil, err
	}
	return route.Operation, nil
}

// ValidatePlaintext checks the decrypted plaintext of a JWE request
// (request true, schema x-jwe-request) or response (x-jwe-response) of an
// operation against the schema the document names.
func (v *Validator) ValidatePlaintext(method, path string, request bool, plaintext []byte) error {
	op, err := v.Operation(method, path)
	if err != nil {
		return err
	}
	ext := "x-jwe-response"
	if request {
		ext = "x-jwe-request"
	}
	name, _ := op.Extensions[ext].(string)
	if name == "" {
		return fmt.Errorf("%s %s has no %s", method, path, ext)
	}
	ref := v.doc.Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		return fmt.Errorf("%s %s: %s names unknown schema %q", method, path, ext, name)
	}
	var value any
	if err := json.Unmarshal(plaintext, &value); err != nil {
		return fmt.Errorf("plaintext is not JSON: %w", err)
	}
	if err := ref.Value.VisitJSON(value, openapi3.MultiErrors()); err != nil {
		return fmt.Errorf("plaintext does not match %s: %w", name, err)
	}
	return nil
}

// Operations lists every documented operation as "METHOD /path".
func (v *Validator) Operations() map[string]*openapi3.Operation {
	out := map[string]*openapi3.Operation{}
	for path, item := range v.doc.Paths.Map() {
		for method, op := range item.Operations() {
			out[strings.ToUpper(method)+" "+path] = op
		}
	}
	return out
}

func (v *Validator) record(op string, status int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.answers[op] == nil {
		v.answers[op] = map[int]int{}
	}
	v.answers[op][status]++
}

// Untested lists the documented operations ("METHOD /path") that no
// request through Transport got a 2xx answer from, sorted.
func (v *Validator) Untested() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for op := range v.Operations() {
		ok := false
		for status := range v.answers[op] {
			ok = ok || status/100 == 2
		}
		if !ok {
			out = append(out, op)
		}
	}
	sort.Strings(out)
	return out
}
