package api_test

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/api/apitest"
)

// TestMain adds one check after a run of the whole package: every
// documented operation answered 2xx to some test request that went
// through the validating transport, so no route is documented but never
// exercised against its description.
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	whole := flag.Lookup("test.run").Value.String() == "" && flag.Lookup("test.skip").Value.String() == ""
	if code == 0 && whole && !testing.Short() && fixture.validator != nil {
		if missing := fixture.validator.Untested(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: documented operations no test got a 2xx answer from:\n  %s\n", strings.Join(missing, "\n  "))
			code = 1
		}
	}
	os.Exit(code)
}

// TestRouteTableMatchesOpenAPI keeps routes.go and openapi.yaml in step:
// every route is documented with its channel, roles and encryption rule,
// and every documented operation is served.
func TestRouteTableMatchesOpenAPI(t *testing.T) {
	v, err := apitest.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	documented := v.Operations()
	served := map[string]bool{}
	for _, r := range api.Routes() {
		served[r.Pattern] = true
		op := documented[r.Pattern]
		if op == nil {
			t.Errorf("%s is served but not in openapi.yaml", r.Pattern)
			continue
		}
		if got := op.Extensions["x-channel"]; got != r.Channel {
			t.Errorf("%s: x-channel %v, route channel %s", r.Pattern, got, r.Channel)
		}
		idem := false
		for _, p := range op.Parameters {
			idem = idem || p.Value != nil && p.Value.Name == "Idempotency-Key"
		}
		if r.Create && (!idem || op.Responses.Status(409) == nil || op.Responses.Status(422) == nil) {
			t.Errorf("%s creates a resource: it must document the Idempotency-Key header, 409 and 422", r.Pattern)
		}
		jwe, _ := op.Extensions["x-jwe"].(bool)
		if jwe != r.Encrypted {
			t.Errorf("%s: x-jwe %v, route requires JWE: %v", r.Pattern, jwe, r.Encrypted)
		}
		var roles []string
		if list, ok := op.Extensions["x-roles"].([]any); ok {
			for _, x := range list {
				s, _ := x.(string)
				roles = append(roles, s)
			}
		}
		var want []string
		for _, role := range r.Roles {
			want = append(want, string(role))
		}
		if !slices.Equal(roles, want) {
			t.Errorf("%s: x-roles %v, route roles %v", r.Pattern, roles, want)
		}
		if r.Channel == "admin" && !strings.Contains(op.Description, "Roles: ") {
			t.Errorf("%s: description does not name the roles", r.Pattern)
		}
	}
	for p := range documented {
		if !served[p] {
			t.Errorf("%s is in openapi.yaml but not served", p)
		}
	}
}
