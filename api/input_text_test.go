package api

import (
	"net/http/httptest"
	"slices"
	"testing"
)

// TestCheckJSONText: the body scanner names the field at fault and lets
// syntax errors through to the decoder.
func TestCheckJSONText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body  string
		code, field string // "" for accepted
	}{
		{"plain", `{"firstName":"Zoë","lastName":"O'Brien","n":1,"ok":true,"x":null}`, "", ""},
		{"escaped NUL", `{"firstName":"a\u0000b","lastName":"x"}`, "INVALID_TEXT", "firstName"},
		{"raw NUL: not JSON, MALFORMED_JSON from the decoder", "{\"lastName\":\"a\x00b\"}", "", ""},
		{"newline", `{"name":"a\nb"}`, "INVALID_TEXT", "name"},
		{"tab", `{"name":"a\tb"}`, "INVALID_TEXT", "name"},
		{"DEL", "{\"name\":\"a\x7fb\"}", "INVALID_TEXT", "name"},
		{"C1 control", `{"name":"a\u0085b"}`, "INVALID_TEXT", "name"},
		{"line separator", `{"name":"a\u2028b"}`, "INVALID_TEXT", "name"},
		{"raw invalid UTF-8", "{\"name\":\"a\xffb\"}", "INVALID_TEXT", "name"},
		{"truncated UTF-8", "{\"name\":\"a\xc3\"}", "INVALID_TEXT", "name"},
		{"lone surrogate escape", `{"name":"a\ud800b"}`, "INVALID_TEXT", "name"},
		{"nested", `{"balanceId":"b","deliveryAddress":{"line1":"x","city":"a\u0001"}}`, "INVALID_TEXT", "deliveryAddress.city"},
		{"in an array", `{"items":[{"a":"ok"},{"a":"\u0000"}]}`, "INVALID_TEXT", "items[1].a"},
		{"top-level string", `"\u0000"`, "INVALID_TEXT", ""},
		{"NUL in a name", `{"a\u0000":1}`, "INVALID_TEXT", `a\x00`},
		{"invalid UTF-8 in a nested name", "{\"o\":{\"a\xff\":1}}", "INVALID_TEXT", `o.a\ufffd`},
		{"valid pair surrogate", `{"name":"\ud83d\ude00"}`, "", ""},
		{"duplicate", `{"amount":1,"amount":2}`, "DUPLICATE_KEY", "amount"},
		{"duplicate by case", `{"amount":1,"AMOUNT":2}`, "DUPLICATE_KEY", "AMOUNT"},
		{"duplicate by Unicode folding", `{"status":"PENDING","ſtatus":"VERIFIED"}`, "DUPLICATE_KEY", "ſtatus"},
		{"nested duplicate", `{"deliveryAddress":{"line1":"a","city":"b","line1":"c"}}`, "DUPLICATE_KEY", "deliveryAddress.line1"},
		{"duplicate in array element", `{"x":[{"a":1},{"a":1,"a":2}]}`, "DUPLICATE_KEY", "x[1].a"},
		{"same name in sibling objects", `{"a":{"k":1},"b":{"k":2},"k":3}`, "", ""},
		{"empty name then value", `{"":"x","y":"z"}`, "", ""},
		{"syntax error left to the decoder", `{"amount": 10`, "", ""},
		{"not JSON", `eyJhbGciOi.x.y`, "", ""},
		{"problem after a syntax error is not reached", `{"a" 1, "b":"\u0000"}`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkJSONText([]byte(tt.body))
			if tt.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			e, ok := err.(*Error)
			if !ok || e.Code != tt.code || e.Field != tt.field || e.Status != 400 {
				t.Fatalf("got %#v, want 400 %s field %q", err, tt.code, tt.field)
			}
		})
	}
}

func TestCheckContentType(t *testing.T) {
	t.Parallel()
	for ct, ok := range map[string]bool{
		"application/json":                  true,
		"application/json; charset=utf-8":   true,
		"Application/JSON; Charset=UTF-8":   true,
		"":                                  false,
		"text/plain":                        false,
		"application/x-www-form-urlencoded": false,
		"application/json; charset=latin1":  false,
		"application/json; boundary=x":      false,
		"application/jsonx":                 false,
		"application/json;;":                false,
	} {
		r := httptest.NewRequest("POST", "/", nil)
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		if err := checkContentType(r); (err == nil) != ok {
			t.Errorf("%q: err %v, want accepted %t", ct, err, ok)
		}
	}
}

func TestPathParams(t *testing.T) {
	t.Parallel()
	got := pathParams("POST /secure/customers/{customerId}/cards/{cardId}/lock")
	if !slices.Equal(got, []string{"customerId", "cardId"}) {
		t.Errorf("got %v", got)
	}
	if got := pathParams("GET /openapi.yaml"); len(got) != 0 {
		t.Errorf("got %v", got)
	}
}
