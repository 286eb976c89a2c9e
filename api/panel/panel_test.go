package panel

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/api/jwe"
	"github.com/antaca/antaca/authz"
)

// The browser tests against a whole switch are in cmd/antaca/app
// (panel_test.go); these check the panel's own plumbing with a fake API.

func TestMoneyInAndOut(t *testing.T) {
	for _, c := range []struct {
		in, cur string
		want    int64
		bad     bool
	}{
		{"12.50", "EUR", 1250, false}, {"7", "EUR", 700, false}, {"1,000.5", "EUR", 100050, false},
		{".5", "EUR", 50, false}, {"500", "JPY", 500, false}, {"1.5", "JPY", 0, true},
		{"1.234", "EUR", 0, true}, {"-3", "EUR", 0, true}, {"0", "EUR", 0, true}, {"", "EUR", 0, true},
		{"1e3", "EUR", 0, true}, {"12.", "EUR", 0, true}, {"99999999999999", "EUR", 0, true},
	} {
		got, err := parseMoney(c.in, c.cur)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("parseMoney(%q, %s) = %d, %v; want %d, bad %v", c.in, c.cur, got, err, c.want, c.bad)
		}
	}
	for in, want := range map[[2]any]string{
		{int64(123456789), "EUR"}: "1,234,567.89 EUR", {int64(5), "EUR"}: "0.05 EUR",
		{int64(-1250), "EUR"}: "−12.50 EUR", {int64(1500), "JPY"}: "1,500 JPY",
	} {
		if got := formatMoney(in[0].(int64), in[1].(string)); got != want {
			t.Errorf("formatMoney(%v) = %q, want %q", in, got, want)
		}
	}
}

// fakeAPI answers the panel's /admin calls and records them. Like the
// API, it refuses a route to a role its route table (api.Routes) does not
// name; it keeps a partner's programs and a card's controls (programs.go)
// and issues cards under a program, answering in JWE like the API.
type fakeAPI struct {
	mu      sync.Mutex
	calls   []string // with the plaintext of an encrypted body
	expired bool
	role    string // the signed-in admin's role; Employee when empty
	// programs of the partner acme, and the own controls of card crd_1
	// (nil: none, its program's apply).
	programs     map[string]authz.Program
	cardControls *authz.Controls
	// issued are the cards issued through the fake, after crd_1.
	issued []map[string]any
	// refuse holds error answers ready for "METHOD path", as the API
	// sends them.
	refuse map[string]string
}

// fakeKey is the fake API's JWE key (the API's GET /public-key).
var fakeKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/public-key" {
		der, _ := x509.MarshalPKIXPublicKey(&fakeKey().PublicKey)
		_, _ = w.Write(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		return
	}
	if r.Header.Get(jwe.HeaderEncrypted) == "true" && len(body) > 0 {
		plain, err := jwe.OpenEnvelope(body, fakeKey())
		if err != nil {
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"code":"CANT_DECRYPT_PAYLOAD","message":"the payload cannot be decrypted"}`))
			return
		}
		body = plain
	}
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(body))
	expired, role, refusal := f.expired, f.role, f.refuse[r.Method+" "+r.URL.Path]
	f.mu.Unlock()
	if role == "" {
		role = "Employee"
	}
	w.Header().Set("Content-Type", "application/json")
	if expired {
		w.WriteHeader(401)
		_, _ = w.Write([]byte(`{"code":"SESSION_EXPIRED","message":"the session has expired"}`))
		return
	}
	for _, rt := range api.Routes() {
		if rt.Channel == "admin" && matches(rt.Pattern, r.Method+" "+r.URL.Path) && !slices.Contains(rt.Roles, api.Role(role)) {
			w.WriteHeader(403)
			_, _ = w.Write([]byte(`{"code":"FORBIDDEN","message":"your role does not allow this operation"}`))
			return
		}
	}
	if refusal != "" {
		w.WriteHeader(400)
		_, _ = w.Write([]byte(refusal))
		return
	}
	if f.programsAndControls(w, r, body) {
		return
	}
	switch r.URL.Path {
	case "/admin/session":
		_ = json.NewEncoder(w).Encode(map[string]any{"username": "desk", "role": role, "expiresAt": time.Now().Add(time.Hour)})
	case "/admin/bureau/orders":
		_, _ = w.Write([]byte(`{"orders":[{"id":"crd_9","type":"PHYSICAL","status":"ORDERED","last4":"4242","expiry":"2030-01",` +
			`"partnerId":"acme","blank":false,"deliveryAddress":{"line1":"1 Main St","city":"Warsaw","postalCode":"00-001","country":"PL"},` +
			`"orderedAt":"2030-01-01T10:00:00Z"}]}`))
	case "/admin/cards/crd_1/unlock":
		w.WriteHeader(403)
		_, _ = w.Write([]byte(`{"code":"FORBIDDEN","message":"your role does not allow this operation"}`))
	default:
		_, _ = w.Write([]byte(`{}`))
	}
}

func (f *fakeAPI) called(prefix string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			return c
		}
	}
	return ""
}

func TestHeadersCSRFAndDispatch(t *testing.T) {
	api := &fakeAPI{}
	p, err := New(Config{API: api})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := noFollow.Get(srv.URL + "/panel/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
		!strings.Contains(csp, "frame-ancestors 'none'") || h.Get("X-Frame-Options") != "DENY" ||
		h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("security headers: %v", h)
	}

	resp, _ = noFollow.Get(srv.URL + "/panel/")
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/panel/login" {
		t.Fatalf("no session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	post := func(path string, form url.Values) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "tok-1"})
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post("/panel/cards/crd_1/lock", url.Values{"reason": {"2"}}); r.StatusCode != http.StatusForbidden || api.called("POST /admin/cards") != "" {
		t.Fatalf("without CSRF token: %d, API called: %q", r.StatusCode, api.called("POST /admin/cards"))
	}
	if r := post("/panel/cards/crd_1/lock", url.Values{"reason": {"2"}, "csrf": {csrfToken("another-session")}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("another session's CSRF token: %d", r.StatusCode)
	}
	r := post("/panel/cards/crd_1/lock", url.Values{"reason": {"2"}, "csrf": {csrfToken("tok-1")}})
	if r.StatusCode != http.StatusSeeOther || !strings.HasSuffix(r.Header.Get("Location"), "/panel/cards/crd_1?done=lock") {
		t.Fatalf("lock: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if got := api.called("POST /admin/cards/crd_1/lock"); got != `POST /admin/cards/crd_1/lock Bearer tok-1 {"reason":2}` {
		t.Fatalf("the panel sent %q to the API", got)
	}
	// The API's refusal is the panel's: 403 for a role that may not.
	if r := post("/panel/cards/crd_1/unlock", url.Values{"csrf": {csrfToken("tok-1")}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("unlock refused by the API: %d", r.StatusCode)
	}

	api.mu.Lock()
	api.expired = true
	api.mu.Unlock()
	req, _ := http.NewRequest("GET", srv.URL+"/panel/customers", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "tok-1"})
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/panel/signed-out?why=expired" {
		t.Fatalf("expired session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c := resp.Cookies(); len(c) != 1 || c[0].Name != sessionCookie || c[0].MaxAge >= 0 || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie not cleared as it should be: %+v", c)
	}
}

// The bureau's machine account lands on the bureau's queue and sees only
// that: the dashboard's reads are not for its role.
func TestBureauAccount(t *testing.T) {
	api := &fakeAPI{role: "Bureau"}
	p, err := New(Config{API: api})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	get := func(path string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "tok-b"})
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, _ := get("/panel/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/panel/bureau" {
		t.Fatalf("the bureau on the dashboard: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if api.called("GET /admin/authorizations/stats") != "" || api.called("GET /admin/summaries") != "" {
		t.Fatal("the dashboard read what the Bureau role may not")
	}
	resp, body := get("/panel/bureau")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="order-crd_9"`) || !strings.Contains(body, "Warsaw") ||
		!strings.Contains(body, `action="/panel/bureau/crd_9/personalised"`) {
		t.Fatalf("bureau page: %d %s", resp.StatusCode, body)
	}
	for _, hidden := range []string{`href="/panel/customers"`, `href="/panel/partners"`, `href="/panel/users"`, `href="/panel/cards/crd_9"`} {
		if strings.Contains(body, hidden) {
			t.Errorf("the bureau's page links to %s", hidden)
		}
	}
}

// Cursor pages: the links carry the cursors of the pages seen, so
// "Previous" goes back exactly; without them the way back is "Newest".
func TestCursorLinks(t *testing.T) {
	at := func(link string) cursor {
		t.Helper()
		r := httptest.NewRequest("GET", link, nil)
		return readCursor(r)
	}
	c := at("/panel/cards/crd_1")
	page, prev, next, first := c.links("/panel/cards/crd_1", "#t", "txn_A", true)
	if page != 1 || prev != "" || first != "" || next != "/panel/cards/crd_1?after=txn_A&back=-#t" {
		t.Fatalf("first page: %d %q %q %q", page, prev, next, first)
	}
	c = at(strings.TrimSuffix(next, "#t"))
	page, prev, next, _ = c.links("/panel/cards/crd_1", "#t", "txn_B", true)
	if page != 2 || prev != "/panel/cards/crd_1#t" || next != "/panel/cards/crd_1?after=txn_B&back=-%2Ctxn_A#t" {
		t.Fatalf("second page: %d %q %q", page, prev, next)
	}
	c = at(strings.TrimSuffix(next, "#t"))
	page, prev, next, _ = c.links("/panel/cards/crd_1", "#t", "txn_C", false)
	if page != 3 || prev != "/panel/cards/crd_1?after=txn_A&back=-#t" || next != "" {
		t.Fatalf("third page: %d %q %q", page, prev, next)
	}
	// A link without its trail, or with something else in it.
	for _, link := range []string{"/x?after=txn_B", "/x?after=txn_B&back=a%3Cb", "/x?after=txn_B&back=-%2C%2C"} {
		c = at(link)
		page, prev, _, first = c.links("/x", "", "txn_C", true)
		if c.after != "txn_B" || page != 0 || prev != "" || first != "/x" {
			t.Errorf("%s: page %d prev %q first %q", link, page, prev, first)
		}
	}
	if c = at("/x?after=%3Cscript%3E"); c.after != "" {
		t.Fatalf("a cursor that is no id: %+v", c)
	}
}

// A hold's history: what was held after each event, in words.
func TestTransactionHistory(t *testing.T) {
	at := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	tx := transaction{Transaction: api.Transaction{Type: "authorization", Status: "partially_captured", Currency: "EUR", ApprovedAmount: 4_000, CapturedAmount: 2_000, ReleasedAmount: 2_000,
		Events: []api.TxnEvent{{Type: "authorized", Amount: 4_000, At: at}, {Type: "reversed", Amount: 1_500, At: at}, {Type: "captured", Amount: 2_000, At: at}}}}
	h := tx.history()
	var got []string
	for _, e := range h {
		got = append(got, fmt.Sprintf("%s %s%d held %d", e.Title, e.Sign, e.Amount, e.Held))
	}
	want := []string{"Authorization approved +4000 held 4000", "Partial reversal −1500 held 2500", "Captured in part 2000 held 0"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("history:\n got %q\nwant %q", got, want)
	}
	if !strings.Contains(h[2].Explain, "5.00 EUR") || tx.Open() != 0 {
		t.Fatalf("capture explained %q, open %d", h[2].Explain, tx.Open())
	}
	exp := transaction{Transaction: api.Transaction{Type: "authorization", Status: "expired", Currency: "EUR", ApprovedAmount: 900, ReleasedAmount: 900,
		Events: []api.TxnEvent{{Type: "authorized", Amount: 900, At: at}, {Type: "expired", Amount: 900, At: at}}}}
	if h := exp.history(); h[1].Title != "Expired" || h[1].Held != 0 {
		t.Fatalf("expiry: %+v", h[1])
	}
	open := transaction{Transaction: api.Transaction{Type: "authorization", Status: "partially_reversed", ApprovedAmount: 1_000, ReleasedAmount: 400}}
	if open.Open() != 600 {
		t.Fatalf("still held %d, want 600", open.Open())
	}
}

// programsAndControls serves the routes of programs and spend controls
// for the partner acme and the card crd_1, checking bodies as the API
// does (authz's Validate); it reports whether it answered.
func (f *fakeAPI) programsAndControls(w http.ResponseWriter, r *http.Request, body []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.programs == nil {
		f.programs = map[string]authz.Program{"prg_acme": {ID: "prg_acme", PartnerID: "acme", Name: "Acme", Currency: "EUR",
			Ranges: []authz.BINRange{{From: "52000000", To: "52000000"}}, StandIn: authz.StandIn{Policy: "decline"},
			Controls: authz.Controls{MCCBlock: []string{"7995"}}}}
	}
	answer := func(status int, v any) bool {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
		return true
	}
	// invalid answers a validation error as the API does (api/programs.go,
	// programErr): with the field an authz.FieldError names, under the
	// prefix of the body's part it is in ("controls" for a replay's).
	invalid := func(err error, under ...string) bool {
		var fe *authz.FieldError
		field := ""
		if errors.As(err, &fe) {
			field = fe.Field
		}
		if len(under) > 0 {
			field = strings.TrimSuffix(under[0]+"."+field, ".")
		}
		e := map[string]string{"code": "VALIDATION_ERROR", "message": err.Error()}
		if field != "" {
			e["field"] = field
		}
		return answer(400, e)
	}
	view := func(c authz.Controls, source, program string) map[string]any {
		usage := []authz.WindowUsage{}
		for _, l := range c.Limits {
			spent, n := int64(500), int64(1)
			u := authz.WindowUsage{Interval: l.Interval, Window: "d20300101", Spent: spent, Count: n, Amount: l.Amount, CountLimit: l.Count}
			if l.Count > 0 {
				left := l.Count - n
				u.RemainingCount = &left
			}
			usage = append(usage, u)
		}
		return map[string]any{"controls": c, "source": source, "programId": program, "usage": usage}
	}
	source := func(c authz.Controls, own string) string {
		if c.IsZero() && own != "card" {
			return "none"
		}
		return own
	}
	const prgs = "/admin/partners/acme/programs"
	path, m := r.URL.Path, r.Method
	switch {
	case path == "/admin/partners/acme" || path == "/admin/partners":
		acme := map[string]string{"id": "acme", "name": "Acme Pay", "bin": "52000000", "currency": "EUR", "fundingModel": "DEPOSIT"}
		if path == "/admin/partners" {
			return answer(200, map[string]any{"partners": []any{acme}})
		}
		return answer(200, acme)
	case path == "/admin/partners/acme/balances":
		return answer(200, map[string]any{"balances": []any{}})
	case path == prgs && m == "GET":
		var out []authz.Program
		for _, id := range slices.Sorted(func(yield func(string) bool) {
			for id := range f.programs {
				if !yield(id) {
					return
				}
			}
		}) {
			pr := f.programs[id]
			pr.RemoteSecret = ""
			out = append(out, pr)
		}
		return answer(200, map[string]any{"programs": out})
	case path == prgs && m == "POST":
		var pr authz.Program
		if err := json.Unmarshal(body, &pr); err != nil {
			return invalid(err)
		}
		pr.PartnerID = "acme"
		if len(pr.Ranges) == 0 {
			return answer(400, map[string]string{"code": "VALIDATION_ERROR", "message": "a program needs at least one BIN range", "field": "binRanges"})
		}
		if err := pr.Validate(); err != nil {
			return invalid(err)
		}
		if _, ok := f.programs[pr.ID]; ok {
			return answer(409, map[string]string{"code": "ALREADY_EXISTS", "message": "already exists"})
		}
		if pr.RemoteURL != "" {
			pr.RemoteSecret = "rsec_made_once_for_the_test"
		}
		f.programs[pr.ID] = pr
		return answer(201, pr)
	case strings.HasPrefix(path, prgs+"/"):
		id, rest, _ := strings.Cut(strings.TrimPrefix(path, prgs+"/"), "/")
		pr, ok := f.programs[id]
		if !ok {
			return answer(404, map[string]string{"code": "PROGRAM_NOT_FOUND", "message": "program not found"})
		}
		switch m + " " + rest {
		case "GET ":
			pr.RemoteSecret = ""
			return answer(200, pr)
		case "PUT ":
			var in authz.Program
			if err := json.Unmarshal(body, &in); err != nil {
				return invalid(err)
			}
			in.ID, in.PartnerID, in.Currency, in.Controls = pr.ID, pr.PartnerID, pr.Currency, pr.Controls
			if err := in.Validate(); err != nil {
				return invalid(err)
			}
			f.programs[id] = in
			return answer(200, in)
		case "GET controls":
			return answer(200, view(pr.Controls, source(pr.Controls, "program"), id))
		case "PUT controls":
			var c authz.Controls
			if err := json.Unmarshal(body, &c); err != nil {
				return invalid(err)
			}
			c.Normalize()
			if err := c.Validate(); err != nil {
				return invalid(err)
			}
			pr.Controls = c
			f.programs[id] = pr
			return answer(200, view(c, source(c, "program"), id))
		case "POST controls/replay":
			var in struct {
				Controls *authz.Controls
				Since    string
			}
			if err := json.Unmarshal(body, &in); err != nil || in.Controls == nil {
				return answer(400, map[string]string{"code": "VALIDATION_ERROR", "message": "controls are required", "field": "controls"})
			}
			in.Controls.Normalize()
			if err := in.Controls.Validate(); err != nil {
				return invalid(err, "controls")
			}
			if in.Since != "720h" {
				return answer(400, map[string]string{"code": "VALIDATION_ERROR", "message": "the test expects 720h", "field": "since"})
			}
			return answer(200, authz.ReplayReport{Since: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2030, 1, 31, 0, 0, 0, 0, time.UTC),
				Evaluated: authz.ReplayCount{Count: 3, Amount: 4_500}, NewlyDeclined: authz.ReplayCount{Count: 1, Amount: 1_999},
				ByReason: map[authz.Reason]authz.ReplayCount{"CONTROL_MCC_BLOCKED": {Count: 1, Amount: 1_999}},
				TopCards: []authz.ReplayTop{{Key: "crd_1", Count: 1, Amount: 1_999}}, TopMCCs: []authz.ReplayTop{{Key: "5411", Count: 1, Amount: 1_999}},
				SkippedCards: 2})
		}
		return answer(404, map[string]string{"code": "NOT_FOUND", "message": "no such route"})
	case path == "/admin/cards/crd_1/status":
		return answer(200, map[string]any{"id": "crd_1", "type": "VIRTUAL", "status": "ACTIVE", "last4": "4242", "expiry": "2030-01",
			"balanceId": "bal_1", "programId": "prg_acme", "customerId": "cus_1"})
	case path == "/admin/customers/cus_1":
		return answer(200, map[string]any{"id": "cus_1", "partnerId": "acme", "firstName": "Ada", "lastName": "Lovelace", "kycStatus": "VERIFIED"})
	case path == "/admin/customers/cus_1/balances":
		return answer(200, map[string]any{"balances": []any{
			map[string]any{"id": "bal_1", "customerId": "cus_1", "currency": "EUR", "available": 10_000, "held": 0, "state": "ACTIVE"},
			map[string]any{"id": "bal_2", "customerId": "cus_1", "currency": "USD", "available": 0, "held": 0, "state": "ACTIVE"}}})
	case path == "/admin/customers/cus_1/cards":
		cards := []any{map[string]any{"id": "crd_1", "type": "VIRTUAL", "status": "ACTIVE", "last4": "4242", "expiry": "2030-01",
			"balanceId": "bal_1", "programId": "prg_acme", "customerId": "cus_1", "partnerId": "acme", "first6": "520000", "currency": "EUR"}}
		for _, c := range f.issued {
			cards = append(cards, c)
		}
		return answer(200, map[string]any{"cards": cards})
	case m == "POST" && (path == "/admin/customers/cus_1/cards/virtual" || path == "/admin/customers/cus_1/cards/physical"):
		return f.issue(w, r, path, body)
	case strings.HasPrefix(path, "/admin/cards/") && strings.HasSuffix(path, "/transactions"):
		return answer(200, map[string]any{"data": []any{}, "has_more": false})
	case path == "/admin/cards/crd_1/controls":
		switch m {
		case "PUT":
			var c authz.Controls
			if err := json.Unmarshal(body, &c); err != nil {
				return invalid(err)
			}
			c.Normalize()
			if err := c.Validate(); err != nil {
				return invalid(err)
			}
			f.cardControls = &c
		case "DELETE":
			f.cardControls = nil
		}
		if f.cardControls != nil {
			return answer(200, view(*f.cardControls, "card", "prg_acme"))
		}
		pc := f.programs["prg_acme"].Controls
		return answer(200, view(pc, source(pc, "program"), "prg_acme"))
	}
	// The cards issued through the fake: their status, and their
	// program's controls.
	for _, c := range f.issued {
		base := "/admin/cards/" + c["id"].(string)
		prg := c["programId"].(string)
		switch {
		case path == base+"/status":
			return answer(200, c)
		case path == base+"/controls" && m == "GET":
			pc := f.programs[prg].Controls
			return answer(200, view(pc, source(pc, "program"), prg))
		}
	}
	return false
}

// issue serves POST .../cards/virtual and .../cards/physical for the
// customer cus_1 as the API does (authz/issuing: the program named, else
// the partner's default, must issue the card type, and a program named
// must be in the balance's currency), answering the card in JWE.
func (f *fakeAPI) issue(w http.ResponseWriter, r *http.Request, path string, body []byte) bool {
	refuse := func(status int, code, msg string) bool {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
		return true
	}
	var in struct{ BalanceID, ProgramID string }
	if err := json.Unmarshal(body, &in); err != nil || in.BalanceID == "" {
		w.WriteHeader(400)
		_, _ = w.Write([]byte(`{"code":"VALIDATION_ERROR","message":"balanceId is required","field":"balanceId"}`))
		return true
	}
	currency := map[string]string{"bal_1": "EUR", "bal_2": "USD"}[in.BalanceID]
	if currency == "" {
		return refuse(404, "BALANCE_NOT_FOUND", "balance not found")
	}
	typ := authz.CardVirtual
	if strings.HasSuffix(path, "/physical") {
		typ = authz.CardPhysical
	}
	pr, ok := f.programs[authz.ProgramOfCard("acme", in.ProgramID)]
	switch {
	case !ok:
		return refuse(404, "PROGRAM_NOT_FOUND", "program not found")
	case !pr.Issues(typ):
		return refuse(409, "CARD_TYPE_NOT_IN_PROGRAM", "the program does not issue this card type")
	case in.ProgramID != "" && pr.Currency != currency:
		return refuse(409, "PROGRAM_CURRENCY_MISMATCH", "the balance is not in the program's currency")
	}
	// The card view names the program, the default one too.
	c := map[string]any{"id": fmt.Sprintf("crd_%d", len(f.issued)+2), "type": string(typ), "status": "ACTIVE", "last4": "1881",
		"expiry": "2031-01", "balanceId": in.BalanceID, "customerId": "cus_1", "programId": pr.ID, "partnerId": "acme",
		"first6": "499900", "currency": currency}
	if typ == authz.CardPhysical {
		c["status"] = "ORDERED"
	}
	f.issued = append(f.issued, c)
	pub, err := jwe.ParsePublicKey(r.Header.Get(jwe.HeaderPublicKey))
	if err != nil {
		return refuse(400, "INVALID_PUBLIC_KEY", err.Error())
	}
	sealed, err := jwe.SealEnvelope(must(json.Marshal(c)), pub)
	if err != nil {
		return refuse(500, "INTERNAL", err.Error())
	}
	w.WriteHeader(201)
	_, _ = w.Write(sealed)
	return true
}

// panelClient signs in to the panel under test with a session cookie and
// does not follow redirects.
type panelClient struct {
	t   *testing.T
	url string
}

func (c panelClient) do(method, path string, form url.Values) (status int, body, location string) {
	c.t.Helper()
	var rd io.Reader
	if form != nil {
		form.Set("csrf", csrfToken("tok-1"))
		rd = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, c.url+path, rd)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "tok-1"})
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Location")
}

func newPanelServer(t *testing.T, fake *fakeAPI) panelClient {
	t.Helper()
	p, err := New(Config{API: fake, ActionCode: func(r authz.Reason) string {
		return map[authz.Reason]string{"CONTROL_MCC_BLOCKED": "1019"}[r]
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return panelClient{t: t, url: srv.URL}
}

// state reads the fake's programs and controls.
func (f *fakeAPI) state(read func() bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return read()
}

func (f *fakeAPI) setRole(role string) {
	f.mu.Lock()
	f.role = role
	f.mu.Unlock()
}

// lastCall is the newest call the API received with the prefix.
func (f *fakeAPI) lastCall(prefix string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.calls) - 1; i >= 0; i-- {
		if strings.HasPrefix(f.calls[i], prefix) {
			return f.calls[i]
		}
	}
	return ""
}

// callBody decodes the JSON body of a recorded call.
func callBody(t *testing.T, call string, v any) {
	t.Helper()
	_, js, ok := strings.Cut(call, " {")
	if !ok {
		t.Fatalf("no JSON body in %q", call)
	}
	if err := json.Unmarshal([]byte("{"+js), v); err != nil {
		t.Fatalf("body of %q: %v", call, err)
	}
}

func contains(t *testing.T, what, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

func lacks(t *testing.T, what, body string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(body, w) {
			t.Errorf("%s shows %q", what, w)
		}
	}
}

// An Admin lists a partner's programs and creates one with its first
// controls (a refusal shows next to its field; the remote-decision secret
// shows once); a Manager reads the program and its controls with no form
// to change them, has a change posted by hand refused by the API, and
// replays controls on past traffic; an Employee has no programs.
func TestProgramPages(t *testing.T) {
	fake := &fakeAPI{role: "Admin"}
	c := newPanelServer(t, fake)

	st, body, _ := c.do("GET", "/panel/partners", nil)
	if st != 200 {
		t.Fatalf("partners: %d", st)
	}
	contains(t, "partners page", body, `href="/panel/partners/acme/programs"`)
	st, body, _ = c.do("GET", "/panel/partners/acme/programs", nil)
	if st != 200 {
		t.Fatalf("programs: %d %s", st, body)
	}
	contains(t, "programs page", body, `id="program-prg_acme"`, "Acme", "52000000", "MCC 7995", `id="program-new-form"`,
		`<label for="npc-mcc_block">`, `<label for="np-binRanges">`)

	form := url.Values{"id": {"gold"}, "name": {"Gold"}, "currency": {"eur"}, "binRanges": {"49990000-49990099"},
		"cardTypes": {"VIRTUAL"}, "standIn": {"decline"}, "per_transaction_max": {"50"}, "mcc_block": {"7995, 54x1"},
		"day_amount": {"100"}, "day_count": {"5"}, "channels_block": {"atm"}, "remoteUrl": {"https://partner.example/decide"}}
	// The API refuses an MCC that is not four digits: the refusal stands
	// next to the MCC field, with what was typed kept.
	st, body, _ = c.do("POST", "/panel/partners/acme/programs", form)
	if st != http.StatusBadRequest {
		t.Fatalf("creation with a bad MCC: %d", st)
	}
	contains(t, "refused creation", body, `id="npc-mcc_block-error">MCC &#34;54X1&#34; is not four digits.`, `value="7995, 54x1"`,
		`id="np-name" name="name" maxlength="200" required value="Gold"`, `aria-describedby="npc-mcc_block-help npc-mcc_block-error" aria-invalid="true"`)
	// An amount the panel cannot read never reaches the API.
	before := fake.lastCall("POST /admin/partners/acme/programs")
	form.Set("mcc_block", "7995")
	form.Set("per_transaction_max", "fifty")
	st, body, _ = c.do("POST", "/panel/partners/acme/programs", form)
	if st != http.StatusBadRequest || fake.lastCall("POST /admin/partners/acme/programs") != before {
		t.Fatalf("unreadable amount: %d, or sent to the API", st)
	}
	contains(t, "unreadable amount", body, `id="npc-per_transaction_max-error">Enter the most one transaction may be as an amount such as 25 or 12.50 (in EUR)`)
	form.Set("per_transaction_max", "50")
	st, body, _ = c.do("POST", "/panel/partners/acme/programs", form)
	if st != http.StatusCreated {
		t.Fatalf("creation: %d %s", st, body)
	}
	var sent struct {
		ID, Currency string
		Controls     authz.Controls
		BinRanges    []authz.BINRange
		CardTypes    []string
	}
	callBody(t, fake.lastCall("POST /admin/partners/acme/programs"), &sent)
	want := authz.Controls{PerTransactionMax: 5000, Limits: []authz.Limit{{Interval: "day", Amount: 10_000, Count: 5}},
		MCCBlock: []string{"7995"}, ChannelsBlock: []string{"atm"}}
	if got, _ := json.Marshal(sent.Controls); string(got) != string(must(json.Marshal(want))) || sent.ID != "gold" || sent.Currency != "EUR" ||
		len(sent.BinRanges) != 1 || sent.BinRanges[0] != (authz.BINRange{From: "49990000", To: "49990099"}) || !slices.Equal(sent.CardTypes, []string{"VIRTUAL"}) {
		t.Fatalf("the panel sent %+v", sent)
	}
	contains(t, "page after creation", body, `id="secret-box"`, `value="rsec_made_once_for_the_test"`, "The program was created.",
		"Per transaction", "at most 50.00 EUR", "at most 100.00 EUR and 5 authorizations", "ATM (cash withdrawals)")

	st, body, _ = c.do("GET", "/panel/partners/acme/programs/gold", nil)
	if st != 200 {
		t.Fatalf("program page: %d", st)
	}
	lacks(t, "program page read again", body, "rsec_made_once_for_the_test", `id="secret-box"`)
	contains(t, "Admin's program page", body, `id="program-form"`, `id="controls-form"`, `id="replay-form"`, `value="50.00"`)

	// The Admin changes the controls: the PUT carries the form.
	st, _, loc := c.do("POST", "/panel/partners/acme/programs/gold/controls", url.Values{"mcc_block": {"5411"}, "countries_block": {"kp"}})
	if st != http.StatusSeeOther || loc != "/panel/partners/acme/programs/gold?done=pcontrols" {
		t.Fatalf("controls saved: %d %s", st, loc)
	}
	if got := fake.lastCall("PUT /admin/partners/acme/programs/gold/controls"); !strings.HasSuffix(got, `{"mcc_block":["5411"],"countries_block":["KP"]}`) {
		t.Fatalf("the panel sent %q", got)
	}

	fake.setRole("Manager")
	st, body, _ = c.do("GET", "/panel/partners/acme/programs", nil)
	if st != 200 {
		t.Fatalf("Manager on programs: %d", st)
	}
	lacks(t, "Manager's programs page", body, `id="program-new-form"`)
	st, body, _ = c.do("GET", "/panel/partners/acme/programs/gold", nil)
	if st != 200 {
		t.Fatalf("Manager on the program: %d", st)
	}
	contains(t, "Manager's program page", body, `id="controls-read-only"`, "MCC 5411", "KP", `id="replay-form"`)
	lacks(t, "Manager's program page", body, `id="program-form"`, `id="controls-form"`, `action="/panel/partners/acme/programs/gold/controls"`)
	// Posted by hand all the same: the API refuses the Manager.
	st, body, _ = c.do("POST", "/panel/partners/acme/programs/gold/controls", url.Values{"per_transaction_max": {"1"}})
	if st != http.StatusForbidden || !strings.Contains(body, "Your role (Manager) does not allow this") {
		t.Fatalf("Manager's controls posted by hand: %d %s", st, body)
	}
	if got := fake.lastCall("PUT /admin/partners/acme/programs/gold/controls"); !strings.Contains(got, "Bearer tok-1 {\"per_transaction_max\":100}") {
		t.Fatalf("the refused request: %q", got)
	}
	if fake.state(func() bool { return fake.programs["gold"].Controls.PerTransactionMax != 0 }) {
		t.Fatal("a refused change changed the controls")
	}
	if st, _, _ := c.do("POST", "/panel/partners/acme/programs", url.Values{"name": {"Sneaky"}, "currency": {"EUR"}, "binRanges": {"48880000"}}); st != http.StatusForbidden {
		t.Fatalf("Manager's program posted by hand: %d", st)
	}
	// The replay: the API's answer in words, with the action code.
	st, body, _ = c.do("POST", "/panel/partners/acme/programs/gold/replay", url.Values{"since": {"720h"}, "mcc_block": {"5411"}})
	if st != 200 {
		t.Fatalf("replay: %d %s", st, body)
	}
	contains(t, "replay result", body, `id="replay-result"`, `id="replay-evaluated">3<`, `id="replay-declined">1<`, "19.99 EUR",
		"CONTROL_MCC_BLOCKED</td><td class=\"mono\">1019", `href="/panel/cards/crd_1"`, "2 cards have controls of their own",
		`<option value="720h" selected>`)
	st, body, _ = c.do("POST", "/panel/partners/acme/programs/gold/replay", url.Values{"since": {"24h"}, "day_count": {"x"}})
	if st != http.StatusBadRequest {
		t.Fatalf("replay with an unreadable count: %d", st)
	}
	contains(t, "replay refused", body, `id="rp-day_count-error">Enter a whole number of authorizations`, `<option value="24h" selected>`)

	fake.setRole("Employee")
	if st, _, _ := c.do("GET", "/panel/partners/acme/programs/gold", nil); st != http.StatusForbidden {
		t.Fatalf("Employee on a program: %d", st)
	}
}

// A card's spend controls: where they come from and the current windows
// for every staff role; an Employee sees no form and is refused by the API
// when posting one by hand; a Manager sets the card's own controls (a
// refusal next to its field) and hands the card back to its program's
// after a confirmation.
func TestCardSpendControls(t *testing.T) {
	fake := &fakeAPI{role: "Employee"}
	c := newPanelServer(t, fake)

	st, body, _ := c.do("GET", "/panel/cards/crd_1", nil)
	if st != 200 {
		t.Fatalf("card page: %d %s", st, body)
	}
	contains(t, "Employee's card page", body, `id="controls"`, `data-source="program"`, "MCC 7995", `id="controls-read-only"`)
	lacks(t, "Employee's card page", body, `id="card-controls-form"`, `id="controls-reset"`, `id="program-link"`)
	st, body, _ = c.do("POST", "/panel/cards/crd_1/controls", url.Values{"per_transaction_max": {"1"}})
	if st != http.StatusForbidden || !strings.Contains(body, "Your role (Employee) does not allow this") {
		t.Fatalf("Employee's controls posted by hand: %d %s", st, body)
	}
	if fake.lastCall("PUT /admin/cards/crd_1/controls") == "" || fake.state(func() bool { return fake.cardControls != nil }) {
		t.Fatal("the API was not asked, or the controls changed")
	}

	fake.setRole("Manager")
	st, body, _ = c.do("GET", "/panel/cards/crd_1", nil)
	if st != 200 {
		t.Fatalf("Manager's card page: %d", st)
	}
	contains(t, "Manager's card page", body, `id="card-controls-form"`, `href="/panel/partners/acme/programs/prg_acme"`,
		`<label for="cc-per_transaction_max">`, `id="cc-mcc_block" name="mcc_block" autocomplete="off" value="7995"`)
	lacks(t, "Manager's card page", body, `id="controls-reset"`) // nothing of its own to drop

	// A country that is no alpha-2 code: the API's refusal by its field.
	st, body, _ = c.do("POST", "/panel/cards/crd_1/controls", url.Values{"countries_block": {"Poland"}})
	if st != http.StatusBadRequest {
		t.Fatalf("bad country: %d", st)
	}
	contains(t, "refused controls", body, `id="cc-countries_block-error">Country &#34;POLAND&#34; is not an ISO 3166-1 alpha-2 code.`,
		`value="Poland"`, `<details id="controls-edit" open>`)
	lacks(t, "refused controls", body, `id="action-error"`)

	st, _, loc := c.do("POST", "/panel/cards/crd_1/controls", url.Values{"per_transaction_max": {"10"}, "day_count": {"3"}, "channels_block": {"ecommerce"}})
	if st != http.StatusSeeOther || loc != "/panel/cards/crd_1?done=controls" {
		t.Fatalf("controls saved: %d %s", st, loc)
	}
	if got := fake.lastCall("PUT /admin/cards/crd_1/controls"); !strings.HasSuffix(got,
		`{"per_transaction_max":1000,"limits":[{"interval":"day","count":3}],"channels_block":["ecommerce"]}`) {
		t.Fatalf("the panel sent %q", got)
	}
	st, body, _ = c.do("GET", "/panel/cards/crd_1?done=controls", nil)
	if st != 200 {
		t.Fatalf("card page: %d", st)
	}
	contains(t, "card with its own controls", body, `data-source="card"`, "The card&#39;s own spend controls were saved", "at most 10.00 EUR",
		`id="controls-usage"`, "2 authorizations", `id="controls-reset"`, "E-commerce")

	// Back to the program's: a confirmation first, then DELETE.
	st, _, loc = c.do("POST", "/panel/cards/crd_1/controls/reset", url.Values{})
	if st != http.StatusSeeOther || loc != "/panel/cards/crd_1/controls/reset" || fake.lastCall("DELETE") != "" {
		t.Fatalf("reset without confirmation: %d %s", st, loc)
	}
	st, body, _ = c.do("GET", "/panel/cards/crd_1/controls/reset", nil)
	if st != 200 {
		t.Fatalf("confirmation: %d", st)
	}
	contains(t, "confirmation", body, `id="confirm-controls-reset"`, "at most 10.00 EUR", "The program's controls, which will apply", "MCC 7995")
	st, _, loc = c.do("POST", "/panel/cards/crd_1/controls/reset", url.Values{"confirm": {"yes"}})
	if st != http.StatusSeeOther || loc != "/panel/cards/crd_1?done=controlsreset" || fake.lastCall("DELETE /admin/cards/crd_1/controls") == "" || fake.state(func() bool { return fake.cardControls != nil }) {
		t.Fatalf("reset: %d %s", st, loc)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A refusal of a form stands next to the field the API's error names
// (its "field"), whatever its message says; without a field, or with one
// the form does not show, it stands at the form's top.
func TestFieldErrorsPlacedByField(t *testing.T) {
	fake := &fakeAPI{role: "Admin"}
	c := newPanelServer(t, fake)

	// The card's controls: a count over the API's cap is refused with
	// field "limits", which the form shows at its limits.
	st, body, _ := c.do("POST", "/panel/cards/crd_1/controls", url.Values{"day_count": {"2000000000"}})
	if st != http.StatusBadRequest {
		t.Fatalf("a count over the cap: %d", st)
	}
	contains(t, "limits refused", body, `id="cc-limits-error">Limit day: amount must be 0 to `,
		`<fieldset class="group" aria-invalid="true" aria-describedby="cc-limits-error">`, `value="2000000000"`)
	lacks(t, "limits refused", body, `id="card-controls-error"`, `id="cc-day_amount-error"`, `id="cc-day_count-error"`)

	// The field decides, not the message.
	for _, tc := range []struct {
		name, answer string
		want         string // the error's element and text
		unwanted     []string
	}{
		{"a field the message does not name", `{"code":"VALIDATION_ERROR","message":"not accepted here","field":"mcc_allow"}`,
			`id="cc-mcc_allow-error">Not accepted here.</p>`, []string{`id="card-controls-error"`}},
		{"a message naming another field", `{"code":"VALIDATION_ERROR","message":"invalid controls: country \"XX\" is unknown","field":"per_transaction_max"}`,
			`id="cc-per_transaction_max-error">Country &#34;XX&#34; is unknown.</p>`, []string{`id="cc-countries_block-error"`, `id="card-controls-error"`}},
		{"no field", `{"code":"VALIDATION_ERROR","message":"invalid controls: per_transaction_max must be 0 to 999"}`,
			`id="card-controls-error">Invalid controls: per_transaction_max must be 0 to 999.</p>`, []string{`id="cc-per_transaction_max-error"`}},
		{"a field the form does not show", `{"code":"VALIDATION_ERROR","message":"colour must be blue","field":"colour"}`,
			`id="card-controls-error">Colour must be blue.</p>`, nil},
	} {
		fake.mu.Lock()
		fake.refuse = map[string]string{"PUT /admin/cards/crd_1/controls": tc.answer}
		fake.mu.Unlock()
		st, body, _ := c.do("POST", "/panel/cards/crd_1/controls", url.Values{"per_transaction_max": {"5"}, "countries_block": {"XX"}})
		if st != http.StatusBadRequest {
			t.Fatalf("%s: %d", tc.name, st)
		}
		contains(t, tc.name, body, tc.want)
		lacks(t, tc.name, body, tc.unwanted...)
	}
	fake.mu.Lock()
	fake.refuse = nil
	fake.mu.Unlock()

	// A program's fields and its nested controls ("controls.limits").
	form := url.Values{"name": {"Silver"}, "currency": {"EUR"}, "binRanges": {"49980000"}, "standIn": {"approve"}}
	st, body, _ = c.do("POST", "/panel/partners/acme/programs", form)
	if st != http.StatusBadRequest {
		t.Fatalf("stand-in approve without an amount: %d", st)
	}
	contains(t, "stand-in refused", body, `id="np-standIn-error">StandIn approve needs an amount of 1 to `, `<details open>`)
	lacks(t, "stand-in refused", body, `id="program-new-error"`)
	form.Set("standIn", "decline")
	form.Set("week_count", "2000000000")
	st, body, _ = c.do("POST", "/panel/partners/acme/programs", form)
	if st != http.StatusBadRequest {
		t.Fatalf("program with a count over the cap: %d", st)
	}
	contains(t, "program limits refused", body, `id="npc-limits-error">Limit week: amount must be 0 to `)
	lacks(t, "program limits refused", body, `id="program-new-error"`)
	form.Del("week_count")
	form.Set("binRanges", "")
	if st, body, _ = c.do("POST", "/panel/partners/acme/programs", form); st != http.StatusBadRequest {
		t.Fatalf("program without a range: %d", st)
	}
	contains(t, "program without a range", body, `id="np-binRanges-error">A program needs at least one BIN range.`)

	// The replay's controls are nested too; "controls" alone is the form's top.
	st, body, _ = c.do("POST", "/panel/partners/acme/programs/prg_acme/replay", url.Values{"since": {"720h"}, "month_count": {"2000000000"}})
	if st != http.StatusBadRequest {
		t.Fatalf("replay with a count over the cap: %d", st)
	}
	contains(t, "replay refused", body, `id="rp-limits-error">Limit month: amount must be 0 to `)
	fake.mu.Lock()
	fake.refuse = map[string]string{"POST /admin/partners/acme/programs/prg_acme/controls/replay": `{"code":"VALIDATION_ERROR","message":"controls are required","field":"controls"}`}
	fake.mu.Unlock()
	st, body, _ = c.do("POST", "/panel/partners/acme/programs/prg_acme/replay", url.Values{"since": {"720h"}})
	if st != http.StatusBadRequest {
		t.Fatalf("replay refused as a whole: %d", st)
	}
	contains(t, "replay refused as a whole", body, `id="replay-error">Controls are required.</p>`)
}

// The issuing forms of a customer's page offer the partner's programs
// to a role that may list them; the card goes to the API under the one
// chosen (none: the default program), the card page names its program,
// and a refusal of the program stands next to its select in words. An
// Employee, who may not list programs, orders under the default program.
func TestIssueUnderProgram(t *testing.T) {
	fake := &fakeAPI{role: "Manager", programs: map[string]authz.Program{
		"prg_acme": {ID: "prg_acme", PartnerID: "acme", Name: "Acme", Currency: "EUR", Ranges: []authz.BINRange{{From: "52000000", To: "52000000"}}},
		"gold": {ID: "gold", PartnerID: "acme", Name: "Gold debit", Currency: "EUR", Ranges: []authz.BINRange{{From: "49990000", To: "49990099"}},
			CardTypes: []authz.CardType{authz.CardVirtual}},
	}}
	c := newPanelServer(t, fake)

	st, body, _ := c.do("GET", "/panel/customers/cus_1", nil)
	if st != 200 {
		t.Fatalf("customer page: %d %s", st, body)
	}
	for _, id := range []string{"virt-program", "phys-program"} {
		contains(t, "Manager's customer page", body, `<label for="`+id+`">Program</label>`,
			`<option value="">The partner&#39;s default program (Acme)</option>`,
			`<option value="gold">Gold debit (gold) · EUR · virtual cards only</option>`)
	}
	lacks(t, "Manager's customer page", body, `<option value="prg_acme"`)

	// Under the program chosen; the card page names it.
	st, _, loc := c.do("POST", "/panel/customers/cus_1/cards/virtual", url.Values{"balanceId": {"bal_1"}, "programId": {"gold"}})
	if st != http.StatusSeeOther || loc != "/panel/cards/crd_2?done=virtual" {
		t.Fatalf("virtual card under gold: %d %s", st, loc)
	}
	if got := fake.lastCall("POST /admin/customers/cus_1/cards/virtual"); !strings.HasSuffix(got, `{"balanceId":"bal_1","programId":"gold"}`) {
		t.Fatalf("the panel sent %q", got)
	}
	st, body, _ = c.do("GET", "/panel/cards/crd_2", nil)
	if st != 200 {
		t.Fatalf("the new card's page: %d %s", st, body)
	}
	contains(t, "card of gold", body, `<dd id="card-program"><a href="/panel/partners/acme/programs/gold" class="mono" id="card-program-link">gold</a></dd>`)
	// Without a choice: no programId, the partner's default program.
	if st, _, _ := c.do("POST", "/panel/customers/cus_1/cards/virtual", url.Values{"balanceId": {"bal_1"}, "programId": {""}}); st != http.StatusSeeOther {
		t.Fatalf("virtual card under the default program: %d", st)
	}
	if got := fake.lastCall("POST /admin/customers/cus_1/cards/virtual"); !strings.HasSuffix(got, `{"balanceId":"bal_1"}`) {
		t.Fatalf("the panel sent %q", got)
	}
	_, body, _ = c.do("GET", "/panel/cards/crd_3", nil)
	contains(t, "card of the default program", body, `id="card-program-link">prg_acme</a> <span class="muted">(the partner's default program)</span>`)

	// The API's refusals, next to the select, with what was chosen kept.
	addr := url.Values{"balanceId": {"bal_1"}, "programId": {"gold"}, "line1": {"1 Main St"}, "city": {"Warsaw"}, "postalCode": {"00-001"}, "country": {"pl"}}
	st, body, _ = c.do("POST", "/panel/customers/cus_1/cards/physical", addr)
	if st != http.StatusConflict {
		t.Fatalf("physical card under a virtual-only program: %d", st)
	}
	contains(t, "card type refused", body,
		`id="phys-program-error">The program Gold debit (gold) does not issue physical cards; it issues virtual cards only. Choose a program that issues them.</p>`,
		`aria-describedby="phys-program-help phys-program-error" aria-invalid="true"`, `<option value="gold" selected>`, `value="Warsaw"`)
	lacks(t, "card type refused", body, `id="physical-error"`, `id="virt-program-error"`)

	st, body, _ = c.do("POST", "/panel/customers/cus_1/cards/virtual", url.Values{"balanceId": {"bal_2"}, "programId": {"gold"}})
	if st != http.StatusConflict {
		t.Fatalf("a USD balance under a EUR program: %d", st)
	}
	contains(t, "currency refused", body,
		`id="virt-program-error">The program Gold debit (gold) issues cards in EUR, and the balance bal_2 is in USD. Choose a balance in EUR, or a program in USD.</p>`,
		`<option value="bal_2" selected>`)

	st, body, _ = c.do("POST", "/panel/customers/cus_1/cards/virtual", url.Values{"balanceId": {"bal_1"}, "programId": {"platinum"}})
	if st != http.StatusNotFound {
		t.Fatalf("a program the partner does not have: %d", st)
	}
	contains(t, "unknown program", body, `id="virt-program-error">This partner has no program “platinum”. Choose one from the list.</p>`)
	if n := len(fake.issued); n != 2 {
		t.Fatalf("%d cards issued, want 2 (the refusals issue none)", n)
	}

	// An Employee may not list programs: no select, the default applies.
	fake.setRole("Employee")
	before := fake.lastCall("GET /admin/partners/acme/programs")
	st, body, _ = c.do("GET", "/panel/customers/cus_1", nil)
	if st != 200 {
		t.Fatalf("Employee's customer page: %d", st)
	}
	contains(t, "Employee's customer page", body, `id="physical-form"`)
	lacks(t, "Employee's customer page", body, `name="programId"`, `id="virt-program"`)
	if fake.lastCall("GET /admin/partners/acme/programs") != before {
		t.Fatal("the panel asked for the programs for a role that may not list them")
	}
	st, body, _ = c.do("GET", "/panel/cards/crd_2", nil)
	if st != 200 {
		t.Fatalf("Employee on the card of gold: %d", st)
	}
	contains(t, "Employee's card page", body, `<dd id="card-program"><span class="mono">gold</span></dd>`)
	lacks(t, "Employee's card page", body, `id="card-program-link"`)
	// Posted by hand with a program all the same: the API's refusal at
	// the form's top, as there is no select to stand by.
	st, body, _ = c.do("POST", "/panel/customers/cus_1/cards/physical", addr)
	if st != http.StatusConflict {
		t.Fatalf("Employee's physical card under gold: %d", st)
	}
	contains(t, "Employee's refusal", body, `id="physical-error">The program does not issue this card type.</p>`)
}
