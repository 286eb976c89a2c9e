package api

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Hostile input is refused at the edge, before any handler runs, so that
// nothing the journal or Postgres cannot store (a NUL byte, invalid UTF-8)
// and nothing ambiguous (a key given twice) ever reaches the ledger.
//
//   - A request with a body must say Content-Type: application/json
//     (charset=utf-8 optional); anything else is 415 UNSUPPORTED_MEDIA_TYPE.
//   - Every string of a JSON body (object names too, and the plaintext of a
//     JWE request) must be valid UTF-8 without control characters: no C0
//     (U+0000-U+001F, so no tab or newline either), no DEL, no C1
//     (U+0080-U+009F), no line or paragraph separator (U+2028, U+2029).
//     No request field is multi-line text: names, e-mail addresses, postal
//     addresses and ids are single lines. Otherwise 400 INVALID_TEXT with
//     the field. encoding/json alone would turn invalid UTF-8 into U+FFFD
//     silently.
//   - An object may not name a member twice, at any depth, nor two that
//     differ only in letter case (encoding/json matches field names without
//     regard to case, so {"amount":1,"AMOUNT":2} is as ambiguous as
//     {"amount":1,"amount":2}): 400 DUPLICATE_KEY with the field.
//   - Path parameters and query parameters obey the same text rule
//     (400 INVALID_TEXT naming the parameter).
//
// Syntax errors are left to the handler's decoder (MALFORMED_JSON,
// INVALID_PAYLOAD for a JWE envelope), so their answers do not change.

var errUnsupportedMediaType = apiErr(http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE",
	"request bodies must be JSON: send Content-Type: application/json")

// checkContentType accepts application/json, optionally with
// charset=utf-8, for a request that carries a body.
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return errUnsupportedMediaType
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return errUnsupportedMediaType
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return errUnsupportedMediaType
		}
	}
	return nil
}

func invalidText(field, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "INVALID_TEXT", Message: msg, Field: field}
}

func duplicateKey(field string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "DUPLICATE_KEY", Field: field,
		Message: field + " is given more than once (names are matched without regard to case)"}
}

// textProblem describes what makes s unfit as request text, or "".
func textProblem(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return fmt.Sprintf("contains a control character (U+%04X)", r)
		}
	}
	return ""
}

// checkText applies the text rule to one named value.
func checkParamText(field, v string) error {
	if p := textProblem(v); p != "" {
		return invalidText(field, field+" "+p)
	}
	return nil
}

// checkParams applies the text rule to the route's path parameters and to
// every query parameter (name and value).
func checkParams(c *call) error {
	for _, name := range c.rt.params {
		if err := checkParamText(name, c.r.PathValue(name)); err != nil {
			return err
		}
	}
	if c.r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(c.r.URL.RawQuery)
	if err != nil {
		return invalidText("query", "the query string is not valid URL encoding")
	}
	for k, vs := range q {
		if err := checkParamText("query", k); err != nil {
			return err
		}
		for _, v := range vs {
			if err := checkParamText(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// pathParams lists the wildcards of a mux pattern ("POST /a/{id}/b" -> id).
func pathParams(pattern string) []string {
	var out []string
	for rest := pattern; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return out
		}
		name := strings.TrimSuffix(rest[i+1:i+j], "...")
		if name != "$" {
			out = append(out, name)
		}
		rest = rest[i+j+1:]
	}
}

// jsonFrame is one open object or array while checking a body.
type jsonFrame struct {
	object bool
	path   string          // the field path of the container
	index  int             // arrays: the next element's index
	member string          // objects: the path of the member being read
	inName bool            // objects: the member's name is read, its value not yet
	names  map[string]bool // objects: folded names seen
}

// checkJSONText walks a JSON body token by token and refuses invalid
// text and duplicate names, naming the field (e.g. deliveryAddress.line1,
// items[2].name). It stops quietly at the first syntax error: the decoder
// that reads the body reports it.
func checkJSONText(body []byte) error {
	// Invalid UTF-8 is let through the tokenizer so that this function,
	// not the tokenizer, finds it and names the field; duplicates too.
	dec := jsontext.NewDecoder(bytes.NewReader(body),
		jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true))
	var stack []*jsonFrame
	// valuePath is the path of the value about to be read.
	valuePath := func() string {
		if len(stack) == 0 {
			return ""
		}
		top := stack[len(stack)-1]
		if top.object {
			return top.member
		}
		return top.path + "[" + strconv.Itoa(top.index) + "]"
	}
	// valueDone advances the enclosing array past one element.
	valueDone := func() {
		if len(stack) > 0 && !stack[len(stack)-1].object {
			stack[len(stack)-1].index++
		}
	}
	for {
		kind := dec.PeekKind()
		if kind == 0 {
			return nil // end of input, or a syntax error for the decoder to report
		}
		if kind == '"' {
			raw, err := dec.ReadValue()
			if err != nil {
				return nil
			}
			s, uerr := jsontext.AppendUnquote(nil, raw)
			text := string(s)
			if top := topObject(stack); top != nil && !top.inName {
				// An object member's name.
				field := joinField(top.path, text)
				problem := textProblem(text)
				if uerr != nil {
					problem = "is not valid UTF-8"
				}
				if problem != "" {
					// Named with Go escapes: the name itself is the problem.
					field = joinField(top.path, strings.Trim(strconv.QuoteToASCII(text), `"`))
					return invalidText(field, "the field name "+field+" "+problem)
				}
				folded := foldName(text)
				if top.names[folded] {
					return duplicateKey(field)
				}
				top.names[folded] = true
				top.member, top.inName = field, true
				continue
			}
			field := valuePath()
			if uerr != nil {
				return invalidText(field, orBody(field)+" is not valid UTF-8")
			}
			if p := textProblem(text); p != "" {
				return invalidText(field, orBody(field)+" "+p)
			}
			endMember(stack)
			valueDone()
			continue
		}
		path := ""
		if kind == '{' || kind == '[' {
			path = valuePath()
		}
		tok, err := dec.ReadToken()
		if err != nil {
			return nil // a syntax error: the decoder reports it
		}
		switch tok.Kind() {
		case '{':
			stack = append(stack, &jsonFrame{object: true, path: path, names: map[string]bool{}})
		case '[':
			stack = append(stack, &jsonFrame{path: path})
		case '}', ']':
			stack = stack[:len(stack)-1]
			endMember(stack)
			valueDone()
		default: // number, true, false, null
			endMember(stack)
			valueDone()
		}
	}
}

func topObject(stack []*jsonFrame) *jsonFrame {
	if len(stack) == 0 || !stack[len(stack)-1].object {
		return nil
	}
	return stack[len(stack)-1]
}

// endMember marks the current object member as read: the next string is a name.
func endMember(stack []*jsonFrame) {
	if top := topObject(stack); top != nil {
		top.inName = false
	}
}

// foldName maps names that encoding/json would match to the same field
// (it compares them as bytes.EqualFold does: Unicode simple case folding)
// to one key: each rune becomes the smallest rune of its folding orbit.
func foldName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		b.WriteRune(low)
	}
	return b.String()
}

func joinField(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func orBody(field string) string {
	if field == "" {
		return "the request body"
	}
	return field
}
